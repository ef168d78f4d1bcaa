"""Feedback on Kafka: publishes every event to ``consultation.feedback.v1`` (via the relay),
without personal data or confidential text; answers, feedback, topic results and
post-evaluations of public matters to ``consultation.outcomes.v1``; learns topics and
sessions from the catalog's and sessions' topics (``TopicBook``); and follows every
service's topic into the trace."""

from shared.config import SERVICE_TOPICS

from services.feedback.projections import TopicBook, Trace

TOPIC = SERVICE_TOPICS["feedback"]
KAFKA_PROJECTIONS = (TopicBook, Trace)
