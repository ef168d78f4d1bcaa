"""Sessions on Kafka: publishes every event to ``consultation.sessions.v1`` (via the relay),
``SessionHeld`` and ``ReportSubmitted`` to ``consultation.outcomes.v1``, and learns
approved plans from ``consultation.catalog.v1`` (``PlanBook``) and published opinions
from ``consultation.feedback.v1`` (``OpinionBook``)."""

from shared.config import SERVICE_TOPICS

from services.sessions.projections import OpinionBook, PlanBook

TOPIC = SERVICE_TOPICS["sessions"]
KAFKA_PROJECTIONS = (PlanBook, OpinionBook)
