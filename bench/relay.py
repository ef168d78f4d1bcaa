"""2. Relay: a store's events published to Kafka by the outbox relay, against raw aiokafka
``send`` of the same payloads to the same broker, 500 to a batch as the relay reads them,
waiting for every acknowledgement of a batch before the next. Target: at least 60 %."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from bench.common import Result, broker, fresh_settings
from services.catalog.application import CatalogApplication
from services.catalog.domain import Topic
from shared.config import SERVICE_TOPICS
from shared.kafka import ensure_topics, kafka_options, make_broker
from shared.relay import Relay

TARGET = 0.6
BATCH = 500


def _fill(app: CatalogApplication, events: int) -> None:
    for start in range(0, events, 2_000):
        app.save(*(Topic(title=f"议题{i}", description="说明" * 20, source="npc", proposer="县人大常委会",
                         content_type="livelihood") for i in range(start, min(events, start + 2_000))))


async def _relay(app: CatalogApplication, settings, events: int) -> float:  # noqa: ANN001
    kafka = make_broker(settings, "bench-relay")
    await kafka.start()
    relay = Relay(app, settings, kafka)
    start = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while await relay.position() < events:
        await asyncio.sleep(0.01)
    await relay.settle()  # and how far it got is written down
    elapsed = time.perf_counter() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await relay.probe.close()
    relay.close()
    await kafka.stop()
    return events / elapsed


async def _raw(settings, payloads: list[tuple[bytes, bytes]]) -> float:  # noqa: ANN001
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all",
                                max_request_size=settings.kafka_max_message_bytes)
    await producer.start()
    topic = settings.topic("bench.raw.v1")
    await ensure_topics(settings, [topic.removeprefix(settings.topic_prefix)])
    start = time.perf_counter()
    for i in range(0, len(payloads), BATCH):
        futures = [await producer.send(topic, value, key=key, headers=[("content-type", b"application/cloudevents+json")])
                   for key, value in payloads[i:i + BATCH]]
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await producer.stop()
    return len(payloads) / elapsed


def run(store: str, sizes: list[int]) -> list[Result]:
    """A store of each size relayed whole (growth: the cost per event as the history grows)."""
    return [result for events in sizes for result in _run(store, events)]


def _run(store: str, events: int) -> list[Result]:
    with broker() as bootstrap, fresh_settings(store, kafka_bootstrap_servers=bootstrap, kafka_idempotence=False,
                                                relay_enabled=True) as settings:
        app = CatalogApplication(settings)
        _fill(app, events)
        payloads = [(e.subject.encode(), e.to_bytes()) for e in app.envelopes(app.notifications(0, events))]
        asyncio.run(ensure_topics(settings))
        product = asyncio.run(_relay(app, settings, events))
        baseline = asyncio.run(_raw(settings, payloads))
        app.close()
    return [Result("relay (store to Kafka)", store, events, product, baseline, TARGET,
                   {"topic": SERVICE_TOPICS["catalog"], "bytes": sum(len(v) for _, v in payloads) // events})]
