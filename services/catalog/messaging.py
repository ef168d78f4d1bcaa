"""Catalog on Kafka: publishes every event to ``consultation.catalog.v1`` (via the relay)
and ``PlanPublished`` to ``consultation.outcomes.v1``. It consumes nothing yet."""

from shared.config import SERVICE_TOPICS

TOPIC = SERVICE_TOPICS["catalog"]
KAFKA_PROJECTIONS: tuple = ()
