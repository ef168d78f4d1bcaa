"""The one way events are consumed from Kafka into read models.

At-least-once delivery (never FastStream's default ACK_FIRST), earliest offset
for new groups, exactly-once effect through the projection's tracking record,
and a dead-letter topic for what cannot be processed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from shared.config import DEADLETTER_TOPIC, SERVICE_TOPICS, Settings
from shared.envelope import CloudEvent, origin_problem
from shared.logs import bind, get_logger
from shared.projection import UNUSABLE, ViewProjection
from shared.reactions import Reaction


async def send_dead_letter(
    broker: KafkaBroker, topic: str, value: bytes, key: bytes | None, *, reason: str, consumer: str,
    origin: dict[str, str], headers: dict[str, str] | None = None,
) -> None:
    """Put a message on the dead-letter topic with why and where from; wait for the broker's ack.

    Every dead letter carries ``deadletter-reason``, ``deadletter-consumer`` and the
    ``deadletter-*`` fields of ``origin`` (topic, partition, offset, position, ...).
    """
    marked = dict(headers or {})
    marked.update({"deadletter-reason": reason[:2000], "deadletter-consumer": consumer})
    marked.update({f"deadletter-{k}": v for k, v in origin.items()})
    await broker.publish(value, topic, key=key, headers=marked)


async def dead_letter(
    broker: KafkaBroker, topic: str, record: ConsumerRecord, consumer: str, reason: str
) -> None:
    """Park a consumed message with the reason, keeping its own headers."""
    await send_dead_letter(
        broker, topic, record.value or b"", record.key, reason=reason, consumer=consumer,
        origin={"topic": record.topic, "partition": str(record.partition), "offset": str(record.offset)},
        headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
    )


#: Most events a view applies in one transaction; and how long an idle batch consumer
#: waits for messages (FastStream sleeps as long again after an empty wait, so this
#: bounds what batching adds to an event's way into a view).
BATCH_RECORDS = 500
BATCH_WAIT_MS = 20


def subscribe(broker: KafkaBroker, settings: Settings, topics: tuple[str, ...], group_id: str,
              batch: bool = False) -> Any:
    """A consumer-group subscriber as every consumer here needs it: earliest offset for a
    new group, and an offset committed only after the handler returned (a handler that
    raises gets the message again), never FastStream's at-most-once default. A ``batch``
    subscriber's handler gets what the broker had, up to ``BATCH_RECORDS`` messages."""
    options: dict[str, Any] = {"batch": True, "max_records": BATCH_RECORDS,
                               "batch_timeout_ms": BATCH_WAIT_MS} if batch else {}
    return broker.subscriber(
        *(settings.topic(t) for t in topics),
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(250, settings.kafka_session_timeout_ms // 4),
        max_poll_interval_ms=60_000,
        title=group_id,
        decoder=_undecoded,
        **options,
    )


async def _undecoded(message: Any) -> bytes:
    """The body as received: every handler here reads it itself, and answers for what it
    cannot read. FastStream's own decoder parses any body without a content type as JSON
    before the handler runs, and lets a body nested too deep (RecursionError), or one that
    says JSON and is not, escape as an error: the message would come again for ever and
    hold up its partition."""
    return message.body


def attach(
    broker: KafkaBroker, settings: Settings, projection: ViewProjection | Reaction, group_id: str
) -> Any:
    """Subscribe ``projection`` (a view, or a reaction) to its Kafka topics in consumer
    group ``group_id``.

    A view takes what the broker has in batches, one transaction each (under load, one
    transaction per event left the trace minutes behind); a reaction, which issues a
    command per event, takes them one by one. Returns the subscriber, whose state
    ``health`` reports.
    """
    log = get_logger("consumer", projection=projection.name, group=group_id)
    deadletters = settings.topic(DEADLETTER_TOPIC)
    services = frozenset(SERVICE_TOPICS)
    publisher_of = {settings.topic(topic): service for service, topic in SERVICE_TOPICS.items()}
    batched = isinstance(projection, ViewProjection)
    subscriber = subscribe(broker, settings, projection.kafka_topics, group_id, batch=batched)

    async def genuine(record: ConsumerRecord) -> CloudEvent | None:
        """The record's event, or None once it is on the dead-letter topic with the reason."""
        try:
            event = CloudEvent.model_validate_json(record.value or b"")
        except ValidationError as error:
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'envelope'}: {e['msg']}"
                for e in error.errors()
            )
            log.warning("invalid envelope sent to dead letters", reason=reason, offset=record.offset)
            await dead_letter(broker, deadletters, record, group_id, f"invalid CloudEvent: {reason}")
            return None
        problem = origin_problem(event, services, publisher_of.get(record.topic))
        if problem is not None:
            log.warning("message of unknown origin sent to dead letters", reason=problem, offset=record.offset)
            await dead_letter(broker, deadletters, record, group_id, f"not a genuine event: {problem}")
            return None
        return event

    async def one(record: ConsumerRecord, event: CloudEvent, correlation_id: str | None) -> None:
        with bind(event_id=event.id, notification_id=event.sequence, correlation_id=correlation_id):
            try:
                applied = await asyncio.to_thread(projection.handle, event)
            except UNUSABLE as error:
                log.warning("unprocessable event sent to dead letters", reason=str(error))
                await dead_letter(broker, deadletters, record, group_id, f"{event.type}: {error}")
                return
            except Exception:
                # Store trouble: do not commit the offset; the message comes again.
                log.exception("projection failed; message will be redelivered")
                await asyncio.sleep(0.5)
                raise
            if not applied:
                log.debug("duplicate ignored", type=event.type)

    if not batched:
        @subscriber
        async def consume(message: KafkaMessage) -> None:
            record: ConsumerRecord = message.raw_message  # type: ignore[assignment]
            event = await genuine(record)
            if event is not None:
                await one(record, event, message.correlation_id)

        return subscriber

    view: ViewProjection = projection  # type: ignore[assignment]

    @subscriber
    async def consume_batch(message: KafkaMessage) -> None:
        records: tuple[ConsumerRecord, ...] = message.raw_message  # type: ignore[assignment]
        events = [(record, event) for record in records if (event := await genuine(record)) is not None]
        if not events:
            return
        try:
            applied = await asyncio.to_thread(view.handle_many, [event for _, event in events])
        except Exception:
            log.exception("projection failed; the batch will be redelivered")
            await asyncio.sleep(0.5)
            raise
        if applied is None:
            # A duplicate or an unusable event in the batch: event by event, exactly as alone.
            for record, event in events:
                await one(record, event, message.correlation_id)

    return subscriber


def consuming(subscriber: Any) -> bool:
    """A subscriber with a consumer whose consume task still runs (a restart that failed
    half-way leaves none; an error FastStream's loop does not catch ends the task)."""
    return (bool(getattr(subscriber, "running", False)) and getattr(subscriber, "consumer", None) is not None
            and all(not t.done() for t in getattr(subscriber, "tasks", [])))


def consumer_state(subscriber: Any, projection: Any, group_id: str) -> dict[str, Any]:
    """One Kafka consumer (a view, a reaction, the inbound intake) as ``health`` shows it."""
    consumer = getattr(subscriber, "consumer", None)
    return {
        "projection": projection.name,
        "group": group_id,
        "running": consuming(subscriber),
        "assigned_partitions": len(consumer.assignment()) if consumer is not None else 0,
        "applied": projection.applied,
    }
