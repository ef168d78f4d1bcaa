"""How the relays put events on Kafka: record batches per partition (``shared.kafka.RecordBatches``).

The batches must land each message where aiokafka's own ``send`` would (the same
partition for the same key, so a subject keeps its order however it was sent),
report each message's own offset, and refuse what ``send`` refuses.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from shared.envelope import _ID_NAMESPACE, CloudEvent, event_id
from shared.kafka import (
    BrokerProbe,
    RecordBatches,
    ensure_topics,
    kafka_options,
    make_broker,
    murmur2,
)
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import read_topic


def test_murmur2_is_kafkas() -> None:
    for length in [*range(80), 300, 1_000]:
        for _ in range(20):
            data = os.urandom(length)
            assert murmur2(data) == aiokafka_murmur2(data), length


def test_event_ids_are_uuid5_of_what_identifies_the_event() -> None:
    for form in (1, 2, 3):
        subject = str(uuid.uuid4())
        suffix = f"/v{form}" if form > 1 else ""
        assert event_id("feedback", subject, 7, form) == str(
            uuid.uuid5(_ID_NAMESPACE, f"feedback/{subject}/7{suffix}"))


def _event(subject: str, text: str = "说明") -> CloudEvent:
    return CloudEvent(id=event_id("catalog", subject, 1), source="/consultation/catalog",
                      type="consultation.catalog.TopicProposed.v1", subject=subject,
                      time=datetime.now(UTC), data={"title": text}, sequence=1, version=1)


def test_batches_land_where_send_would_with_their_own_offsets(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None, kafka_max_message_bytes=20_000)
    asyncio.run(ensure_topics(settings))
    batched, single = settings.topic("consultation.catalog.v1"), settings.topic("consultation.sessions.v1")
    subjects = [str(uuid.uuid4()) for _ in range(300)]

    async def publish() -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        broker = make_broker(settings, "test-batches")
        await broker.start()
        batches = RecordBatches(broker)
        receipts = {s: await batches.add(batched, _event(s, "说明" * 200)) for s in subjects}
        with pytest.raises(MessageSizeTooLargeError):
            await batches.add(batched, _event(str(uuid.uuid4()), "过大" * 10_000))
        await batches.flush()
        acked = {}
        for subject, receipt in receipts.items():
            outcome = receipt.outcome()
            assert not isinstance(outcome, BaseException), outcome
            acked[subject] = (outcome.partition, outcome.offset)
        await broker.stop()
        producer = AIOKafkaProducer(**kafka_options(settings))
        await producer.start()
        futures = [await producer.send(single, b"x", key=s.encode()) for s in subjects]
        by_send = {s: (await f).partition for s, f in zip(subjects, futures, strict=True)}
        await producer.stop()
        return acked, by_send

    acked, by_send = asyncio.run(publish())
    assert {s: p for s, (p, _) in acked.items()} == by_send
    assert len(set(by_send.values())) == settings.kafka_partitions  # the keys spread
    on_kafka = {(r.partition, r.offset): r.key.decode() for r in read_topic(settings.kafka_bootstrap_servers, batched)}
    assert len(on_kafka) == len(subjects)  # the oversized one never left
    assert {on_kafka[where]: where for where in on_kafka} == acked


def test_a_topic_created_over_records_taken_before_it_existed_is_created_again(
        tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """A broker that restarted empty gets a producer's retry before anyone created its topics.

    The embedded broker takes such records; once the topic is created it lists them
    (ListOffsets) but fetches none, and what is produced afterwards is lost. The
    topic's creation must leave it readable (Kafka refuses the early records instead).
    """
    settings = make_settings("sqlite", tmp_path, kafka, None)
    topic = settings.topic("consultation.catalog.v1")

    async def run() -> list[str]:
        producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
        await producer.start()
        try:
            client = producer.client
            # What the retry of a batch in flight does: straight to the partition, no metadata asked.
            early = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                              producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
            for i in range(10):
                early.append(i, timestamp=None, key=b"k", value=b"early", headers=[])
            node = next(iter(client.cluster.brokers())).nodeId
            await client.send(node, ProduceRequest(transactional_id=None, required_acks=-1, timeout=10_000,
                                                   topics=[(topic, [(0, bytes(early.build()))])]))
            probe = BrokerProbe(settings)
            try:
                created = await probe.ensure_topics(["consultation.catalog.v1"])
            finally:
                await probe.close()
            await producer.send_and_wait(topic, b"after", key=b"k", partition=0)
            return created
        finally:
            await producer.stop()

    assert asyncio.run(run()) == [topic]
    assert [r.value for r in read_topic(settings.kafka_bootstrap_servers, topic)] == [b"after"]


def test_end_offsets_are_where_a_reader_stops(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """``BrokerProbe.end_offsets`` (how far behind health says a consumer is, whether a broker
    lost what it acknowledged) is each partition's true end. The embedded broker's ListOffsets
    stops at the start of a partition's last batch: 1 for a partition holding one batch."""
    settings = make_settings("sqlite", tmp_path, kafka, None)
    asyncio.run(ensure_topics(settings, ["consultation.catalog.v1"]))
    topic = settings.topic("consultation.catalog.v1")

    async def publish_and_look() -> dict[tuple[str, int], int]:
        broker = make_broker(settings, "test-ends")
        await broker.start()
        batches = RecordBatches(broker)
        for _ in range(300):
            await batches.add(topic, _event(str(uuid.uuid4()), "说明"))
        await batches.flush()
        await broker.stop()
        probe = BrokerProbe(settings)
        try:
            return await probe.end_offsets([topic])
        finally:
            await probe.close()

    ends = asyncio.run(publish_and_look())
    read: dict[tuple[str, int], int] = {}
    for record in read_topic(settings.kafka_bootstrap_servers, topic):
        read[(topic, record.partition)] = max(read.get((topic, record.partition), 0), record.offset + 1)
    assert sum(read.values()) == 300
    assert {k: n for k, n in ends.items() if n} == read


def test_an_acknowledgement_below_one_given_before_publishes_the_store_again(
        tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """A broker that lost its log gives offsets it gave before. The relay keeps, per partition,
    an offset the broker must have reached; a round acknowledged below it is the sign, seen
    at once, without waiting for the periodic check: everything stored is published again."""
    from services.catalog.application import CatalogApplication
    from services.catalog.domain import Topic
    from shared.relay import Relay

    settings = make_settings("sqlite", tmp_path, kafka, None, broker_check_interval=3600.0)
    asyncio.run(ensure_topics(settings))
    app = CatalogApplication(settings)

    def propose(count: int) -> None:
        app.save(*(Topic(title=f"议题{i}", description="说明", source="npc", proposer="县人大常委会",
                         content_type="livelihood") for i in range(count)))

    async def relay_through_a_lost_log() -> tuple[int, int]:
        broker = make_broker(settings, "test-reused")
        await broker.start()
        relay = Relay(app, settings, broker)
        task = asyncio.create_task(relay.run())
        try:
            propose(5)
            while await relay.position() < 5:
                await asyncio.sleep(0.05)
            await relay.settle()
            # As if an earlier log had gone 1,000 further on every partition, then been lost.
            relay._offsets = {key: offset + 1_000 for key, offset in relay._offsets.items()}  # noqa: SLF001
            republished = relay._republish_until  # noqa: SLF001
            propose(5)
            for _ in range(200):  # the next round sees it, then publishes the store again
                await asyncio.sleep(0.05)
                if relay._republish_until == 0 and await relay.position() == 10:  # noqa: SLF001
                    break
            return republished, await relay.position()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await relay.probe.close()
            relay.close()
            await broker.stop()

    try:
        republished_before, position = asyncio.run(relay_through_a_lost_log())
        stored = [e.id for e in app.envelopes(app.notifications(0, 100))]
    finally:
        app.close()
    assert republished_before == 0 and position == 10
    copies = collections.Counter(json.loads(r.value)["id"]
                                 for r in read_topic(settings.kafka_bootstrap_servers,
                                                     settings.topic("consultation.catalog.v1")))
    # The first five once before and once again; the last five in the round that saw the
    # reused offsets, and again in the republication.
    assert copies == {event: 2 for event in stored}, copies
