"""`python -m services.feedback`: run this service alone."""

import sys

from shared.cli import run_service

sys.exit(run_service("feedback"))
