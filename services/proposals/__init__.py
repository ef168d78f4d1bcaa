"""Proposals: proposals (提案), suggestions (建议), key-proposal digests and members' duty records."""

from shared.service import ServiceSpec

from services.proposals.api import routes
from services.proposals.application import ProposalsApplication
from services.proposals.messaging import KAFKA_PROJECTIONS, REACTIONS
from services.proposals.projections import ProposalViews
from services.proposals.scheduler import deadline_scheduler

SPEC = ServiceSpec(
    name="proposals",
    application=ProposalsApplication,
    routes=routes,
    own_projections=(ProposalViews,),
    kafka_projections=KAFKA_PROJECTIONS,
    reactions=REACTIONS,
    jobs=(deadline_scheduler,),
)
