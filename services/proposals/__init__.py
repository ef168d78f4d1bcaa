"""Proposals: proposals (提案) and suggestions (建议)."""

from shared.service import ServiceSpec

from services.proposals.api import routes
from services.proposals.application import ProposalsApplication
from services.proposals.messaging import KAFKA_PROJECTIONS

SPEC = ServiceSpec(
    name="proposals",
    application=ProposalsApplication,
    routes=routes,
    kafka_projections=KAFKA_PROJECTIONS,
)
