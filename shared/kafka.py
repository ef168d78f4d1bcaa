"""Kafka plumbing shared by relays and consumers: brokers, topics, publication."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import struct
import weakref
from collections.abc import Iterable
from typing import Any

import aiokafka.admin.client
import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.config import ALL_TOPICS, HISTORY_TOPICS, Settings
from shared.envelope import CONTENT_TYPE, CloudEvent
from shared.logs import get_logger

log = get_logger("kafka")

# Topics are created by the services, with the configured partitions, never by a
# producer's metadata request: a broker that restarted empty would otherwise
# auto-create a topic with its own default partition count the moment a relay
# publishes, and the relay could not tell the new log from the old one. aiokafka
# always asks for auto-creation and has no setting for it, so its metadata request
# is built with the flag off (brokers honour it from metadata v4 on).
_NO_AUTO_CREATE = functools.partial(MetadataRequest, allow_auto_topic_creation=False)
aiokafka.client.MetadataRequest = _NO_AUTO_CREATE  # type: ignore[misc]
aiokafka.admin.client.MetadataRequest = _NO_AUTO_CREATE  # type: ignore[misc]

_creation_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


def _creation_lock() -> asyncio.Lock:
    """One lock per event loop (an asyncio lock belongs to the loop that first uses it)."""
    loop = asyncio.get_running_loop()
    lock = _creation_locks.get(loop)
    if lock is None:
        lock = _creation_locks[loop] = asyncio.Lock()
    return lock


#: Topic → how many times this process deleted it and created it again
#: (``BrokerProbe._recreate_unreadable``). A consumer that read some of the old log would
#: wait beyond the new one's end; ``shared.watchdog`` has it read the new log from its start.
recreations: collections.Counter[str] = collections.Counter()

#: An offset no log reaches: a fetch there asks only for the partition's watermark.
_FAR = 1 << 62

#: Broker refusals that no retry can fix: the message itself is the problem.
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class Broker(KafkaBroker):
    """A FastStream Kafka broker whose subscribers join their groups at the same time.

    FastStream starts subscribers one after another, and each waits for its group's
    first assignment: a few seconds per consumer group on a fresh group, which added
    up to most of a service's start. Started together, they wait once.
    """

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """The cluster's security settings (SASL/SCRAM, TLS) as FastStream takes them."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol in ("SSL", "SASL_SSL")
    context = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    ) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    user = settings.kafka_sasl_username or ""
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    sasl = {"SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512,
            "PLAIN": SASLPlaintext}[settings.kafka_sasl_mechanism]
    return sasl(user, password, ssl_context=context, use_ssl=tls)


def kafka_options(settings: Settings) -> dict[str, Any]:
    """What every aiokafka client here is given: the servers and the security settings."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers,
            **parse_security(kafka_security(settings))}


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    """A FastStream broker whose producer waits for every in-sync replica.

    Idempotence is on for real clusters and off for the embedded broker, which
    rejects idempotent producers.
    """
    return Broker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        max_request_size=settings.kafka_max_message_bytes,
        # Record batches of up to 256 KB (Kafka's default is 16 KB): a relay publishing a
        # store sends a batch per partition per 500 events, not one per 22 events.
        max_batch_size=min(262_144, settings.kafka_max_message_bytes),
        request_timeout_ms=15_000,
        metadata_max_age_ms=5_000,
        logger=None,
        graceful_timeout=10.0,
        security=kafka_security(settings),
    )


class BrokerProbe:
    """What a relay asks the broker between publications, over connections kept open.

    Which topics exist (creating the contract's missing ones with the configured
    partitions) and how far each partition's log reaches. Any failure closes the
    connections, so the next call starts afresh against a broker that came back.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _open(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            options = kafka_options(self.settings)
            admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
            consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, request_timeout_ms=10_000)
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await admin.close()
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def ensure_topics(self, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
        """Create the contract's topics that do not exist; returns those created.

        One creation at a time in this process: the services of ``consult up`` all
        notice a fresh broker at once, and the embedded broker accepts a second
        creation of a topic it is still creating.
        """
        try:
            async with _creation_lock():
                created = await self._create_missing(topics)
                await self._recreate_unreadable(created)
                return created
        except BaseException:
            await self.close()
            raise

    async def _create_missing(self, topics: Iterable[str]) -> list[str]:
        admin, _ = await self._open()
        existing = set(await admin.list_topics())
        missing = [t for t in (self.settings.topic(t) for t in topics) if t not in existing]
        if missing:
            await self._create(admin, missing)
            log.info("topics created", topics=missing)
        return missing

    async def _create(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        history = {self.settings.topic(t) for t in HISTORY_TOPICS}
        kept = {"retention.ms": str(self.settings.kafka_event_retention_ms)}
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([
                NewTopic(t, self.settings.kafka_partitions, self.settings.kafka_replication,
                         topic_configs=kept if t in history else {}) for t in topics
            ])

    async def short_retention(self) -> dict[str, int]:
        """The history topics (``HISTORY_TOPICS``) that keep events for less time than
        ``KAFKA_EVENT_RETENTION_MS`` asks: topic → its ``retention.ms``.

        A topic made before the setting existed, or by hand, has the cluster's default
        (Kafka's: 7 days). Events older than that are gone from it: a Kafka-fed view (the
        trace) could not be rebuilt, a new subscriber would start a week ago, and
        ``audit replay --from-kafka`` would report every older event missing. Nothing is
        lost from the stores; the topics' configuration is the operator's to change
        (``deploy/SCALING.md``). Empty when the broker cannot describe its topics.
        """
        wanted = self.settings.kafka_event_retention_ms
        topics = [self.settings.topic(t) for t in HISTORY_TOPICS]
        try:
            admin, _ = await self._open()
            answers = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        except BaseException:
            await self.close()
            raise
        short: dict[str, int] = {}
        for answer in answers:
            for resource in answer.to_object()["resources"]:
                if resource["error_code"]:
                    continue
                for entry in resource["config_entries"]:
                    if entry["config_names"] != "retention.ms" or entry["config_value"] is None:
                        continue
                    kept = int(entry["config_value"])
                    if kept != -1 and (wanted == -1 or kept < wanted):
                        short[resource["resource_name"]] = kept
        return short

    async def _recreate_unreadable(self, created: list[str]) -> None:
        """A topic just created over records the broker took before it existed is
        deleted and created again, empty.

        The embedded broker takes records for a topic that does not exist (a
        producer's retry reaching it the moment it restarted, before anyone created
        its topics). Once the topic is created, it answers ListOffsets from those
        records and Fetch from the new, empty log: readers wait for ever, and records
        produced later are lost. Deleting and creating the topic clears both; the
        relays then find the offsets they were given gone and publish again. Only
        at its creation can a topic come to this, so only the topics created here
        are looked at, and only they are ever deleted.
        """
        suspects = await self._unreadable(created)
        for attempt in range(5):
            if not suspects:
                return
            await asyncio.sleep(0.2)  # a second look: a leader's watermark may trail for a moment
            suspects = await self._unreadable(suspects)
            if not suspects:
                return
            log.error("the broker cannot serve the records it holds for topics it just created; "
                      "creating them again", topics=suspects, attempt=attempt + 1)
            admin, _ = await self._open()
            await admin.delete_topics(suspects)
            await self._wait_until_gone(admin, suspects)
            await self._create(admin, suspects)
            recreations.update(suspects)
            suspects = await self._unreadable(suspects)
        if suspects:
            log.error("the broker cannot serve these topics", topics=suspects)

    async def _wait_until_gone(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        for _ in range(50):
            if not set(topics) & set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)

    async def _unreadable(self, topics: list[str]) -> list[str]:
        """Those of ``topics`` with a partition that lists an end no fetch can reach."""
        if not topics:
            return []
        for _ in range(20):  # a topic just created may take a moment to show its partitions
            listed, readable = await self._ends(topics)
            if {t for t, _ in listed} >= set(topics):
                break
            await asyncio.sleep(0.1)
        return sorted({t for (t, p), n in listed.items() if readable.get((t, p), n) < n})

    async def end_offsets(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """How far a reader can read each partition of ``topics`` (as named on the broker).

        Retention deletes old messages but never moves an end offset back, so an end
        offset below one the broker acknowledged to us means it lost its log.
        """
        try:
            listed, readable = await self._ends(topics)
        except BaseException:
            await self.close()
            raise
        return {**listed, **readable}

    async def _ends(self, topics: Iterable[str]) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """Each partition's end as ListOffsets lists it, and its high watermark as a fetch
        reports it, where the broker reports one.

        On Kafka the two are the same, and a fetch far beyond the end is answered
        OFFSET_OUT_OF_RANGE without a watermark. The embedded broker lists the start of
        its last batch + 1, below the true end, and answers that fetch with the true
        watermark and nothing else; except for a topic created over records it took
        while the topic did not exist: those it lists but never fetches (watermark 0).
        """
        _, consumer = await self._open()
        client = consumer._client  # noqa: SLF001 - a fetch of watermarks only, no consumer state
        await client.force_metadata_update()
        wanted = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not wanted:
            return {}, {}
        listed = {(tp.topic, tp.partition): n for tp, n in (await consumer.end_offsets(wanted)).items()}
        by_leader: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
        for tp in wanted:
            leader = client.cluster.leader_for_partition(tp)
            if leader is not None and leader >= 0:
                by_leader.setdefault(leader, {}).setdefault(tp.topic, []).append((tp.partition, _FAR, 1))
        readable: dict[tuple[str, int], int] = {}
        for leader, asked in by_leader.items():
            # A wait of 1 ms: with none at all, the embedded broker answers with no topics.
            response = await client.send(leader, FetchRequest(1, 0, 1 << 16, 0, list(asked.items())))
            for topic, partitions in response.topics:
                for partition, error_code, highwater, *_ in partitions:
                    if error_code == 0 and highwater >= 0 and (topic, partition) in listed:
                        readable[(topic, partition)] = highwater
        return listed, readable

    async def cluster_id(self) -> str | None:
        """The broker's cluster id: a new one means a new cluster, whose logs begin empty."""
        try:
            admin, _ = await self._open()
            return (await admin.describe_cluster()).get("cluster_id")
        except BaseException:
            await self.close()
            raise

    async def committed(self, group_id: str, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The offsets consumer group ``group_id`` committed on ``partitions``.

        The partitions are named: asked for all of a group's, the embedded broker
        answers with a message aiokafka cannot read.
        """
        try:
            admin, _ = await self._open()
            offsets = await admin.list_consumer_group_offsets(
                group_id, partitions=[TopicPartition(t, p) for t, p in partitions])
            return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
                    if meta.offset >= 0}
        except BaseException:
            await self.close()
            raise


async def ensure_topics(settings: Settings, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the contract's topics where they do not exist (a fresh broker has none)."""
    probe = BrokerProbe(settings)
    try:
        return await probe.ensure_topics(topics)
    finally:
        await probe.close()


async def publish(
    broker: KafkaBroker, topic: str, event: CloudEvent, *, correlation_id: str | None = None
) -> asyncio.Future:
    """Queue one event in structured mode; the returned future resolves on broker ack.

    The relays publish tens of thousands of events in a row, each keyed by its subject
    (FastStream's ``publish_batch`` takes no key per message). FastStream's ``publish``
    costs about three times aiokafka's ``send`` per message (middlewares, a command
    object, header encoding), so the event goes straight to the aiokafka producer
    FastStream connected, with the same headers FastStream would set; without one (a
    test broker), through FastStream.
    """
    correlation = correlation_id or event.id
    producer = _aiokafka_producer(broker)
    if producer is None:
        return await broker.publish(event.to_bytes(), topic, key=event.subject.encode(),
                                    headers={"content-type": CONTENT_TYPE}, correlation_id=correlation,
                                    no_confirm=True)
    return await producer.send(topic, event.to_bytes(), key=event.subject.encode(),
                               headers=[("content-type", _CONTENT_TYPE), ("correlation_id", correlation.encode())])


_CONTENT_TYPE = CONTENT_TYPE.encode()


def _aiokafka_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The connected aiokafka producer inside FastStream's broker (faststream 0.7), if any."""
    producer = getattr(getattr(getattr(broker.config, "producer", None), "_producer", None), "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None


_M = 0x5BD1E995
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``, aiokafka's ``murmur2``), the hash
    its default partitioner puts a key's messages in a partition by. The same numbers as
    aiokafka's, in a third of the time: the words unpacked at once, fewer masks."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in (_WORDS[words] if words < 64 else struct.Struct(f"<{words}I")).unpack_from(data):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        rest = length & ~3
        if tail == 3:
            h ^= data[rest + 2] << 16
        if tail >= 2:
            h ^= data[rest + 1] << 8
        h = ((h ^ data[rest]) * _M) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def lowest_offsets(results: Iterable[Any]) -> dict[tuple[str, int], int]:
    """The lowest offset per (topic, partition) among the broker's acknowledgements in
    ``results`` (anything else in it is passed over)."""
    lowest: dict[tuple[str, int], int] = {}
    for meta in results:
        if isinstance(meta, RecordMetadata):
            key = (meta.topic, meta.partition)
            if meta.offset < lowest.get(key, meta.offset + 1):
                lowest[key] = meta.offset
    return lowest


class Receipt:
    """What became of one message sent through :class:`RecordBatches`, known after ``flush``."""

    __slots__ = ("_batch", "_future", "_offset")

    def __init__(self, batch: _Batch | None, offset: int, future: asyncio.Future[Any] | None = None):
        self._batch, self._offset, self._future = batch, offset, future

    def outcome(self) -> RecordMetadata | BaseException:
        """The broker's acknowledgement (topic, partition, offset), or why it did not come."""
        if self._future is not None:
            return self._future.exception() or self._future.result()
        batch = self._batch
        assert batch is not None and batch.future is not None and batch.future.done()
        error = batch.future.exception()
        if error is not None:
            return error
        base: RecordMetadata = batch.future.result()
        if not self._offset:
            return base
        # The tuple made directly: namedtuple's _replace cost more than the rest of this.
        return tuple.__new__(RecordMetadata, (base.topic, base.partition, base.topic_partition,
                                              base.offset + self._offset, *base[4:]))


class _Batch:
    __slots__ = ("builder", "future")

    def __init__(self, builder: BatchBuilder):
        self.builder = builder
        #: Set when the batch is handed to the producer: the broker's answer for all of it.
        self.future: asyncio.Future[Any] | None = None


class RecordBatches:
    """Messages gathered into one aiokafka record batch per partition, sent a batch at a time.

    The relays publish every event of a store. aiokafka's ``send`` costs about 17 µs a
    message here (a metadata wait, the partition lists rebuilt, a future and a log call
    per message); appending to a batch of the partition and sending whole batches costs
    about 10 µs, partitioning included. A message goes to the partition the producer's own
    partitioner gives its key, as ``send`` would, so a subject keeps its partition however
    it was sent; a message larger than the producer's ``max_request_size`` is refused at
    once, as ``send`` refuses it. Without a connected aiokafka producer (FastStream's test
    broker) each message goes through ``publish``.
    """

    def __init__(self, broker: KafkaBroker):
        self.broker = broker
        self.producer = _aiokafka_producer(broker)
        self._open: dict[tuple[str, int], _Batch] = {}
        self._submitted: list[_Batch] = []
        self._singles: list[asyncio.Future[Any]] = []
        self._partitions: dict[str, list[int]] = {}
        partitioner = getattr(self.producer, "_partitioner", None)
        #: The producer's partitioner, unless it is Kafka's default (then the faster murmur2 here).
        self._partitioner = None if isinstance(partitioner, DefaultPartitioner) else partitioner

    async def add(self, topic: str, event: CloudEvent) -> Receipt:
        key, value = event.subject.encode(), event.to_bytes()
        producer = self.producer
        if producer is None:
            future = await publish(self.broker, topic, event)
            self._singles.append(future)
            return Receipt(None, 0, future)
        headers = [("content-type", _CONTENT_TYPE), ("correlation_id", event.id.encode())]
        # The exact estimate only near the limit: a record's overhead is well under 1 KB.
        if len(value) + len(key) + 1024 > producer._max_request_size and (
                size := DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        ) > producer._max_request_size:
            raise MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized, larger than the producer's "
                f"max_request_size ({producer._max_request_size})")
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
        if self._partitioner is None:
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        else:
            partition = self._partitioner(key, partitions, partitions)
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[(topic, partition)] = _Batch(producer.create_batch())
        metadata = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        if metadata is None:  # full: send it, and start the partition's next batch
            await self._submit(topic, partition, batch)
            batch = self._open[(topic, partition)] = _Batch(producer.create_batch())
            metadata = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        return Receipt(batch, metadata.offset)

    async def _submit(self, topic: str, partition: int, batch: _Batch) -> None:
        self._submitted.append(batch)
        try:
            batch.future = await self.producer.send_batch(batch.builder, topic, partition=partition)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - each message of the batch answers for it
            batch.future = asyncio.get_running_loop().create_future()
            batch.future.set_exception(error)

    async def flush(self) -> dict[tuple[str, int], int] | None:
        """Send what is gathered and wait until every message is acknowledged or has failed.

        When every batch was acknowledged, returns the lowest offset acknowledged per
        (topic, partition), so a caller need not read every receipt; else None (each
        receipt then says what became of its message).
        """
        for (topic, partition), batch in list(self._open.items()):
            await self._submit(topic, partition, batch)
        self._open.clear()
        waiting = [b.future for b in self._submitted if b.future is not None] + self._singles
        results = await asyncio.gather(*waiting, return_exceptions=True)
        singles, self._submitted, self._singles = self._singles, [], []
        if singles or any(isinstance(r, BaseException) for r in results):
            return None
        return lowest_offsets(results)
