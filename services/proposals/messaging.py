"""Proposals on Kafka: publishes its events to ``consultation.proposals.v1`` through the relay."""

from shared.config import SERVICE_TOPICS

TOPIC = SERVICE_TOPICS["proposals"]
KAFKA_PROJECTIONS: tuple = ()
