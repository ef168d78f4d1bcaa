"""Sessions: consultation sessions (协商活动), reports (协商报告) and leaders' instructions (批示)."""

from shared.service import ServiceSpec

from services.sessions.api import routes
from services.sessions.application import SessionsApplication
from services.sessions.messaging import KAFKA_PROJECTIONS
from services.sessions.projections import SessionViews
from services.sessions.scheduler import deadline_scheduler

SPEC = ServiceSpec(
    name="sessions",
    application=SessionsApplication,
    routes=routes,
    own_projections=(SessionViews,),
    kafka_projections=KAFKA_PROJECTIONS,
    jobs=(deadline_scheduler,),
)
