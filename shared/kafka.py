"""Kafka plumbing shared by relays and consumers: brokers, topics, publication."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from shared.config import ALL_TOPICS, Settings
from shared.envelope import CONTENT_TYPE, CloudEvent
from shared.logs import get_logger

log = get_logger("kafka")


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    """A FastStream broker whose producer waits for every in-sync replica.

    Idempotence is on for real clusters and off for the embedded broker, which
    rejects idempotent producers.
    """
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=15_000,
        metadata_max_age_ms=5_000,
        logger=None,
        graceful_timeout=10.0,
    )


async def ensure_topics(settings: Settings, topics: Iterable[str] = ALL_TOPICS) -> None:
    """Create the contract's topics where they do not exist (a fresh broker has none)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic(t) for t in topics]
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(t, settings.kafka_partitions, settings.kafka_replication)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("topics created", topics=missing)
    finally:
        await admin.close()


async def topic_is_empty(settings: Settings, topic: str) -> bool:
    """True when ``topic`` (as named on the broker) never held a message (end offsets all 0).

    Retention deletes old messages but never rewinds end offsets, so an empty
    topic under a relay that has published before means the broker lost its data.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(20):
            if partitions:
                break
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.1)
        if not partitions:
            return True
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return all(offset == 0 for offset in ends.values())
    finally:
        await consumer.stop()


async def publish(
    broker: KafkaBroker, topic: str, event: CloudEvent, *, correlation_id: str | None = None
) -> asyncio.Future:
    """Queue one event in structured mode; the returned future resolves on broker ack."""
    return await broker.publish(
        event.to_bytes(),
        topic,
        key=event.subject.encode(),
        headers={"content-type": CONTENT_TYPE},
        correlation_id=correlation_id or event.id,
        no_confirm=True,
    )
