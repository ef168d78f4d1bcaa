"""Feedback: opinions, answers, feedback, evaluation, and the trace of every topic."""

from shared.service import ServiceSpec

from services.feedback.api import routes
from services.feedback.application import FeedbackApplication
from services.feedback.messaging import KAFKA_PROJECTIONS

SPEC = ServiceSpec(
    name="feedback",
    application=FeedbackApplication,
    routes=routes,
    kafka_projections=KAFKA_PROJECTIONS,
)
