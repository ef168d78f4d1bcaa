"""`python -m services.proposals`: run this service alone."""

import sys

from shared.cli import run_service

sys.exit(run_service("proposals"))
