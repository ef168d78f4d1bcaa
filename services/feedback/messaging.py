"""Feedback on Kafka: consumes every service topic into the trace; publishes its own
events to ``consultation.feedback.v1`` through the relay."""

from shared.config import SERVICE_TOPICS

from services.feedback.projections import Trace

TOPIC = SERVICE_TOPICS["feedback"]
KAFKA_PROJECTIONS = (Trace,)
