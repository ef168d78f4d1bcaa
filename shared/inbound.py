"""Commands from the e-government bus (政务服务总线), taken in from ``consultation.inbound.v1``.

Hotlines and grassroots platforms push commands as CloudEvents: submit an opinion,
propose a topic (public solicitation), escalate a grassroots item (开单). Each is
checked with the same model and the same rules as its HTTP route, and every one is
answered on ``consultation.inbound.replies.v1``: accepted with the id of what it
created or changed, or refused with the rule, correlated by the inbound event's id.

Applied once, however often delivered: a command creates its aggregate under an id
derived from the CloudEvent's ``source`` + ``id`` (or, when it changes one, the
aggregate remembers the pair), so the event store itself is the durable record of
what was taken in. A redelivered command finds its work done and is answered again
with the same id. A refusal changes nothing and is worked out afresh each time.

Each command belongs to one service (``COMMANDS``), which takes it in its own
consumer group; the feedback service is the front desk (``DESK``): it answers what
no service claims, and puts what cannot even be read (not JSON, or no ``source`` and
``id`` to answer to) on the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import ConsumerRecord
from eventsourcing.persistence import RecordConflictError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.config import DEADLETTER_TOPIC, INBOUND_REPLIES_TOPIC, INBOUND_TOPIC, Settings
from shared.consumer import dead_letter, subscribe
from shared.domain import EventTooLarge, NotFound, Refused
from shared.envelope import CONTENT_TYPE
from shared.http import field_error
from shared.logs import bind, get_logger

#: Every command the bus may send, and the service that takes it in.
COMMANDS: dict[str, str] = {
    "SubmitOpinion": "feedback",
    "ProposeTopic": "catalog",
    "EscalateItem": "feedback",
}
#: The service that answers what no service claims.
DESK = "feedback"
TYPE_PATTERN = re.compile(r"^consultation\.inbound\.([A-Za-z]+)\.v1$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REPLY_NAMESPACE = uuid.UUID("0b8f9a7e-3c55-4d0e-8f3a-9d1c2b7e6a41")

#: The longest sender (``source``) or message ``id`` taken from the bus.
SENDER_MAX = 200


def command_type(name: str) -> str:
    return f"consultation.inbound.{name}.v1"


class InboundEnvelope(BaseModel):
    """A command as the bus sends it: CloudEvents 1.0, structured JSON mode."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=SENDER_MAX, pattern=r"^[^\x00-\x1f\x7f]+$",
                    description="unique per sender; a repeated (source, id) is the same command")
    source: str = Field(min_length=1, max_length=SENDER_MAX, pattern=r"^[^\x00-\x1f\x7f\s]+$",
                        description="the sender on the bus, e.g. /gov/hotline/12345: recorded as "
                                    "who submitted it")
    type: str = Field(description="consultation.inbound.<Command>.v1")
    time: datetime | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


@dataclass(frozen=True)
class Sender:
    """Who on the bus sent a command, and the command's id there."""

    source: str
    id: str


@dataclass(frozen=True)
class InboundCommand:
    """How one service takes in one command.

    ``model`` checks ``data`` (the HTTP route's own body model, or one built on it).
    ``created`` gives the id a command from this sender would create, when it creates
    one: if it exists, the command was taken in before. ``apply(service, body, sender)``
    runs the command (in a worker thread) and returns the id of what it created or changed.
    """

    model: type[BaseModel]
    apply: Callable[[Any, Any, Sender], str]
    created: Callable[[Sender], uuid.UUID] | None = None
    summary: str = ""


class ReplyData(BaseModel):
    """The answer to one inbound command."""

    inbound_id: str
    inbound_source: str
    inbound_type: str | None
    status: Literal["accepted", "refused"]
    id: str | None = Field(None, description="accepted: what the command created or changed")
    rule: str | None = Field(None, description="refused: the rule, as the HTTP route names it")
    message: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="refused: each field and its rule")


class InboundReply(BaseModel):
    """A reply on ``consultation.inbound.replies.v1`` (CloudEvents 1.0, structured mode).

    Its ``subject`` and ``inboundid`` are the inbound command's id; its own ``id`` is
    derived from the command and the answer, so the same answer sent again has the same id.
    """

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = Field(pattern=r"^/consultation/[a-z]+$")
    type: Literal["consultation.inbound.CommandAccepted.v1", "consultation.inbound.CommandRefused.v1"]
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    inboundid: str
    data: ReplyData


def reply(service: str, inbound: dict[str, Any], status: str, **answer: Any) -> InboundReply:
    kind = inbound.get("type")
    data = ReplyData(inbound_id=inbound["id"], inbound_source=inbound["source"],
                     inbound_type=kind[:SENDER_MAX] if isinstance(kind, str) else None,
                     status=status, **answer)
    key = f"{data.inbound_source}\n{data.inbound_id}\n{status}\n{data.id or data.rule}"
    return InboundReply(
        id=str(uuid.uuid5(_REPLY_NAMESPACE, key)), source=f"/consultation/{service}",
        type="consultation.inbound.CommandAccepted.v1" if status == "accepted"
        else "consultation.inbound.CommandRefused.v1",
        subject=data.inbound_id, time=datetime.now(UTC), inboundid=data.inbound_id, data=data,
    )


def _refusal(error: ValidationError, prefix: str) -> dict[str, Any]:
    errors = [field_error(e) for e in error.errors()]
    for e in errors:
        e["field"] = f"{prefix}.{e['field']}" if e["field"] != "body" else prefix
    return {"rule": errors[0]["rule"], "errors": errors,
            "message": "; ".join(f"{e['field']}: {e['message']}" for e in errors)}


class Intake:
    """One service's consumer of the inbound topic (see the module's description)."""

    def __init__(self, service: Any, commands: dict[str, InboundCommand]):
        unknown = {n for n in commands if COMMANDS.get(n) != service.name}
        if unknown:
            raise TypeError(f"{service.name} takes in commands not registered to it in COMMANDS: {unknown}")
        self.running, self.app, self.commands = service, service.app, commands
        self.service = service.name
        self.name = "inbound"
        self.kafka_topics = (INBOUND_TOPIC,)
        self.desk = self.service == DESK
        #: Commands answered (accepted or refused) by this service: for health.
        self.applied = 0
        self.log = get_logger("inbound", service=self.service)

    def answer(self, value: bytes) -> InboundReply | str | None:
        """The reply to one message; a reason string for a dead letter; None if not ours."""
        try:
            raw = json.loads(value)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            return f"not JSON: {str(error)[:200]}" if self.desk else None
        if not isinstance(raw, dict) or not all(
                isinstance(raw.get(k), str) and raw.get(k) for k in ("source", "id")):
            return ("no 'source' and 'id' to answer to (a CloudEvent needs both)"
                    if self.desk else None)
        if any(len(raw[k]) > SENDER_MAX or _CONTROL.search(raw[k]) for k in ("source", "id")):
            # Echoed in the reply's key and headers: an answer could not be sent safely.
            return (f"'source' or 'id' longer than {SENDER_MAX} characters or with control characters"
                    if self.desk else None)
        match = TYPE_PATTERN.match(raw["type"]) if isinstance(raw.get("type"), str) else None
        name = match.group(1) if match else None
        owner = COMMANDS.get(name) if name else None
        if owner != self.service and not (owner is None and self.desk):
            return None
        if name not in self.commands:
            known = ", ".join(command_type(n) for n in COMMANDS)
            return reply(self.service, raw, "refused", rule="unknown_type",
                         message=f"type: {str(raw.get('type'))[:SENDER_MAX]!r} is no command this "
                                 f"system takes; it takes {known}")
        try:
            envelope = InboundEnvelope.model_validate(raw)
        except ValidationError as error:
            return reply(self.service, raw, "refused", **_refusal(error, "envelope"))
        return self._run(raw, self.commands[name], envelope)

    def _run(self, raw: dict[str, Any], command: InboundCommand, envelope: InboundEnvelope) -> InboundReply:
        sender = Sender(envelope.source, envelope.id)
        done = self._done(command, sender)
        if done:
            return reply(self.service, raw, "accepted", id=done)
        try:
            body = command.model.model_validate(envelope.data)
        except ValidationError as error:
            return reply(self.service, raw, "refused", **_refusal(error, "data"))
        try:
            made = command.apply(self.running, body, sender)
        except Refused as refused:
            return reply(self.service, raw, "refused", rule=refused.rule, message=refused.message)
        except NotFound as missing:
            return reply(self.service, raw, "refused", rule="not_found", message=str(missing))
        except EventTooLarge as large:
            return reply(self.service, raw, "refused", rule="event_too_large", message=str(large))
        except (KeyError, TypeError, ValueError) as error:
            # A fault of this code, not of the store: answered, never retried without end.
            self.log.exception("inbound command could not be applied", inbound_id=envelope.id)
            return reply(self.service, raw, "refused", rule="unprocessable",
                         message=f"The command could not be applied ({type(error).__name__}); "
                                 "nothing was stored. Operators see it in the service's log.")
        except RecordConflictError:
            # The same command, delivered twice at once: the other delivery stored it.
            done = self._done(command, sender)
            if not done:
                raise
            made = done
        return reply(self.service, raw, "accepted", id=made)

    def _done(self, command: InboundCommand, sender: Sender) -> str | None:
        if command.created is None:
            return None
        made = command.created(sender)
        return str(made) if self.app.recorder.select_events(made, lte=1) else None


def attach_intake(broker: KafkaBroker, settings: Settings, intake: Intake, group_id: str) -> Any:
    """Subscribe ``intake`` to the inbound topic; every answer is acknowledged by the broker
    before the message's offset is committed (a crash in between answers again)."""
    log = intake.log.bind(group=group_id)
    replies, deadletters = settings.topic(INBOUND_REPLIES_TOPIC), settings.topic(DEADLETTER_TOPIC)
    subscriber = subscribe(broker, settings, intake.kafka_topics, group_id)

    @subscriber
    async def consume(message: KafkaMessage) -> None:
        record: ConsumerRecord = message.raw_message  # type: ignore[assignment]
        with bind(offset=record.offset, partition=record.partition):
            try:
                answer = await asyncio.to_thread(intake.answer, record.value or b"")
            except Exception:
                log.exception("inbound command failed; it will be delivered again")
                await asyncio.sleep(0.5)
                raise
            if answer is None:
                return
            if isinstance(answer, str):
                log.warning("unreadable inbound message sent to dead letters", reason=answer)
                await dead_letter(broker, deadletters, record, group_id, f"inbound: {answer}")
                return
            await broker.publish(answer.model_dump_json(exclude_none=True).encode(), replies,
                                 key=answer.subject.encode(), headers={"content-type": CONTENT_TYPE},
                                 correlation_id=answer.inboundid)
            intake.applied += 1
            log.info("inbound command answered", inbound_id=answer.inboundid,
                     inbound_type=answer.data.inbound_type, status=answer.data.status,
                     rule=answer.data.rule, id=answer.data.id)

    return subscriber
