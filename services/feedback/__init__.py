"""Feedback: opinions (意见建议), answers, feedback (反馈), decisions, evaluation (评议), the trace."""

from shared.service import ServiceSpec

from services.feedback.api import routes
from services.feedback.application import FeedbackApplication
from services.feedback.messaging import KAFKA_PROJECTIONS, REACTIONS, INBOUND
from services.feedback.projections import FeedbackViews
from services.feedback.scheduler import deadline_scheduler

SPEC = ServiceSpec(
    name="feedback",
    application=FeedbackApplication,
    routes=routes,
    own_projections=(FeedbackViews,),
    kafka_projections=KAFKA_PROJECTIONS,
    reactions=REACTIONS,
    jobs=(deadline_scheduler,),
    inbound=INBOUND,
)
