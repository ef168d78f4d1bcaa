"""Sessions on Kafka: publishes its events to ``consultation.sessions.v1`` through the relay."""

from shared.config import SERVICE_TOPICS

TOPIC = SERVICE_TOPICS["sessions"]
KAFKA_PROJECTIONS: tuple = ()
