"""The eventsourcing Application every service builds on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (InterfaceError, Mapper, OperationalError, RecordConflictError, Recording,
                                       StoredEvent, Transcoder)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import resolve_topic, retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel

from shared import idempotency
from shared.access import stamp
from shared.clock import Clock
from shared.config import Settings
from shared.domain import EventTooLarge, NotFound
from shared.envelope import CloudEvent, event_id
from shared.groupcommit import RECORDERS
from shared.stores import one_statement, store_env
from shared.transcoder import NESTED, OrjsonTranscoder, Wide, read_marked

T = TypeVar("T", bound=Aggregate)

_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic",
                    # who acted: the envelope's ``actor``, not part of the event's data
                    "principal"}


class BoundedMapper(Mapper[UUID]):
    """Refuses, before anything is written, an event too large to ever reach Kafka.

    An event that the broker refuses would otherwise sit in the store forever,
    unpublished; the field limits of every command keep real requests far below this.
    """

    def __init__(self, mapper: Mapper[UUID], limit: int):
        super().__init__(mapper.transcoder, mapper.compressor, mapper.cipher)
        self.limit = limit

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        if len(stored.state) > self.limit:
            raise EventTooLarge(
                f"This request would record {len(stored.state):,} bytes in one event; at most "
                f"{self.limit:,} can be published. Send fewer or shorter entries, in several requests."
            )
        return stored


_AS_IS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """``value`` as JSON has it (dates and UUIDs as strings); most values are already plain."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dashed(hex_: str) -> str:
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


#: What eventsourcing's JSONTranscoder writes as ``{"_type_": name, "_data_": text}``, as
#: ``_plain`` has it: a datetime's text is its isoformat, a UUID's is its hex.
_MARKED: dict[str, Callable[[Any], Any]] = {"datetime_iso": str, "uuid_hex": _dashed}


class LogEntry(NamedTuple):
    """A stored event as the log gives it: its position, its aggregate's id as text
    (``str(uuid)``), and the record as stored."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def _log_query(recorder: Any) -> Any:
    """The paged read of a store's events, after a position (the recorder's own table)."""
    table = recorder.events_table_name
    if isinstance(recorder, PostgresApplicationRecorder):
        return SQL("SELECT notification_id, originator_id::text AS originator_id, originator_version, topic, "
                   "state FROM {schema}.{table} WHERE notification_id > %s ORDER BY notification_id "
                   "LIMIT %s").format(schema=Identifier(recorder.datastore.schema), table=Identifier(table))
    return (f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?")


class _NotPlain(Exception):
    """A stored value ``plain_state`` cannot give plainly: the mapper reads it."""


def _plain_marked(value: dict[str, Any]) -> Any:
    """A value the transcoder marked, as ``_plain`` has it; one it cannot give plainly raises."""
    if "_type_" in value and "_data_" in value:  # as the transcoder decides
        convert = _MARKED.get(value["_type_"])
        if convert is None:
            raise _NotPlain(value["_type_"])
        return convert(value["_data_"])
    return value


def plain_state(mapper: Mapper[UUID], stored: bytes) -> dict[str, Any] | None:
    """A stored event's state as ``_plain`` gives a domain event's, read straight from its
    JSON; None when only the mapper can read it (ciphered, compressed, another value type)."""
    if mapper.cipher is not None or mapper.compressor is not None:
        return None
    try:
        state = orjson.loads(stored)
        if type(state) is not dict:
            return None
        for key, value in state.items():  # its values: the state itself is an event's fields
            if type(value) in NESTED:
                state[key] = read_marked(value, _plain_marked)
    except (_NotPlain, Wide, orjson.JSONDecodeError):
        return None
    return state


@dataclass(frozen=True)
class OutcomeForm:
    """A newer version of an outcome: its ``data`` model, made from the version-1 public form."""

    model: type[BaseModel]
    make: Callable[[CloudEvent], BaseModel]


class ServiceApplication(Application[UUID]):
    """One service's event store, with the hooks its relay and projections follow."""

    #: Lower-case service name; also the eventsourcing env prefix (``CATALOG_...``).
    service: str = ""
    #: Event names also published to ``consultation.outcomes.v1`` for other departments.
    outcomes: frozenset[str] = frozenset()
    #: Event fields that never leave the store (``redact`` drops them): not in the contract.
    withheld: frozenset[str] = frozenset()
    #: Event fields ``redact`` may publish empty (text of a confidential matter, say).
    nullable: frozenset[str] = frozenset()
    #: Per outcome, the fields its public form leaves out.
    outcome_withheld: dict[str, frozenset[str]] = {}
    #: Per outcome, newer versions published beside version 1 (docs/schema-evolution.md).
    outcome_versions: dict[str, dict[int, OutcomeForm]] = {}
    #: Per store kind ("sqlite", "postgres"), the topic of the event store's recorder class:
    #: saves grouped on SQLite (``shared.groupcommit``), person keys beside the events where
    #: a service seals persons (``shared.vault.KEYED_RECORDERS``).
    recorders: dict[str, str] = RECORDERS

    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        self.clock = clock or Clock()
        self.name = self.service
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # What an aggregate was created with (its topic, say) never changes; remembered.
        self._created: dict[str, dict[str, Any]] = {}
        env = store_env(settings, self.service)
        env["APPLICATION_RECORDER_TOPIC"] = self.recorders["postgres" if settings.postgres else "sqlite"]
        super().__init__(env=env)
        self._log_query = _log_query(self.recorder)

    def construct_mapper(self) -> Mapper[UUID]:
        return BoundedMapper(super().construct_mapper(), self.settings.max_event_bytes)

    def construct_transcoder(self) -> Transcoder:
        transcoder = OrjsonTranscoder()  # eventsourcing's JSON, written and read by orjson
        self.register_transcodings(transcoder)
        return transcoder

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Store what the aggregates recorded, each event stamped with the principal acting
        in this request (``shared.access``): who did it is part of the record."""
        stamp(e for obj in objs if isinstance(obj, Aggregate) for e in obj.pending_events)
        # eventsourcing's own ``save``, but an aggregate is known as one by its class: its
        # ``collect_events`` asks two runtime Protocols first, a tenth of a command's Python.
        processing = ProcessingEvent[UUID]()
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing.events.extend(obj.collect_events())
                processing.aggregates[obj.id] = obj
            else:
                processing.collect_events(obj)
        processing.saved_kwargs.update(kwargs)
        try:
            recordings = self._record(processing)
        except Exception as error:
            request = idempotency.current.get()
            if request is not None:
                created = [e.originator_id for e in processing.events if e.originator_version == 1]
                if isinstance(error, RecordConflictError) and self._found_stored(
                        request, [originator for originator in created if originator in request.issued]):
                    return []  # nothing of this attempt was stored: the first one's stands
                # A command that tries again (a raced key, a decision counted meanwhile) makes
                # the same ids again, as the request sent again will.
                request.release(created)
            raise
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # as eventsourcing's save (deprecated there, a no-op here)
        return recordings

    def _found_stored(self, request: idempotency.RequestIds, made: list[UUID]) -> bool:
        """Whether an aggregate ``request`` creates under an id derived from it
        (``shared.idempotency``) has its first event in the store already: the request was
        sent before, and that attempt was stored (the request is then answered as replayed)."""
        if not any(self.recorder.select_events(originator, lte=1) for originator in made):
            return False
        request.replayed = True
        return True

    def created_before(self) -> str | None:
        """The id of what the request being served created the first time it was sent (with
        its ``Idempotency-Key``), or None: for a command that would refuse to do again what
        it did then (a person erased already)."""
        request = idempotency.current.get()
        if request is None:
            return None
        first = request.peek(0)
        return str(first) if self._found_stored(request, [first]) else None

    # -- followers -------------------------------------------------------------
    def on_saved(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each save, so followers need not wait for a poll."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for listener in list(self._listeners):
            listener()

    # -- reading ---------------------------------------------------------------
    def get(self, cls: type[T], aggregate_id: str | UUID) -> T:
        """Load an aggregate of the given kind, or 404."""
        try:
            uid = aggregate_id if isinstance(aggregate_id, UUID) else UUID(str(aggregate_id))
            aggregate = self.repository.get(uid)
        except (ValueError, AggregateNotFoundError):
            raise NotFound(f"No {cls.__name__.lower()} with id {aggregate_id}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"No {cls.__name__.lower()} with id {aggregate_id}")
        return aggregate

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as eventsourcing reads
    def notifications(self, after: int, limit: int = 500) -> list[LogEntry]:
        """Up to ``limit`` stored events after position ``after``, in order.

        One plain query rather than eventsourcing's ``select_notifications``, which makes a
        UUID and a frozen dataclass of every row: four fifths of reading the log, and the
        relays, rebuilds and audits read every event through here.
        """
        with one_statement(self.recorder.datastore) as cursor:
            if self.settings.postgres:
                cursor.row_factory = tuple_row  # not a dict per row: the id is text already
                # Binary results: the stored events' bytes as they are, not hex to decode.
                cursor.execute(self._log_query, (after, limit), binary=True)
                return [LogEntry._make(row) for row in cursor.fetchall()]
            cursor.execute(self._log_query, (after, limit))
            rows = cursor.fetchall()
        # SQLite keeps the id as 32 hex digits.
        return [LogEntry(r[0], _dashed(r[1]) if len(r[1]) == 32 else str(UUID(r[1])), r[2], r[3], r[4])
                for r in rows]

    @staticmethod
    def stored_event(entry: LogEntry) -> StoredEvent:
        """The entry as eventsourcing's mapper reads it."""
        return StoredEvent(originator_id=UUID(entry.originator_id), originator_version=entry.originator_version,
                           topic=entry.topic, state=entry.state)

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def envelope(self, notification: LogEntry) -> CloudEvent:
        """The stored event as the contract publishes it.

        Read straight from the stored JSON (``plain_state``): every relayed, rebuilt and
        replayed event passes here, and a domain event object, made only to be taken
        apart again, cost as much as the rest of the envelope. State the short way does
        not know (a cipher, a value type it cannot write plainly) is read through the mapper.
        """
        cls = resolve_topic(notification.topic)
        state = plain_state(self.mapper, notification.state)
        if state is None:
            return self._envelope_of(self.mapper.to_domain_event(self.stored_event(notification)),
                                     notification.id)
        from_version = state.pop("class_version", 1)
        while from_version < getattr(cls, "class_version", 1):  # as the mapper upcasts
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        meta = {k: state.pop(k, None) for k in _ENVELOPE_FIELDS}
        return self._make_envelope(cls, str(notification.originator_id), notification.originator_version,
                                   datetime.fromisoformat(meta["timestamp"]), state, meta["principal"],
                                   notification.id)

    def _envelope_of(self, domain_event: Any, position: int) -> CloudEvent:
        """The envelope of a domain event (read through the mapper)."""
        data = {
            k: _plain(v) for k, v in vars(domain_event).items() if k not in _ENVELOPE_FIELDS
        }
        return self._make_envelope(type(domain_event), str(domain_event.originator_id),
                                   domain_event.originator_version, domain_event.timestamp, data,
                                   getattr(domain_event, "principal", None), position)

    def _make_envelope(self, cls: type, originator: str, version: int, time: datetime, data: dict[str, Any],
                       principal: str | None, position: int) -> CloudEvent:
        if version == 1:
            # The aggregate's first event is at hand: what it was created with needs no read.
            self._remember_created(originator, data)
        name = cls.__name__
        topic_id = self.topic_of(cls, originator, data)
        data = self.redact(name, data, self.created_facts(originator))
        return CloudEvent.of_own(
            id=event_id(self.service, originator, version),
            source=f"/consultation/{self.service}",
            type=f"consultation.{self.service}.{name}.v1",
            subject=originator,
            time=time,
            data=data,
            topicid=topic_id,
            sequence=position,
            actor=principal or self.actor_of(data, getattr(cls, "ACTOR", None)),
            version=version,
        )

    @staticmethod
    def actor_of(data: dict[str, Any], actor_field: str | None) -> str | None:
        """Who did it: the sender on the e-government bus for what came that way
        (``received_via``), else the event's own actor field."""
        actor = data.get("received_via") or (data.get(actor_field) if actor_field else None)
        return str(actor) if actor else None

    #: Fields of an aggregate's first event that its later events are read with
    #: (the topic it belongs to; whether its text is confidential, say).
    created_fields: tuple[str, ...] = ("topic_id",)

    def created_facts(self, originator: str | UUID) -> dict[str, Any]:
        """``created_fields`` of the aggregate's first event, remembered per aggregate."""
        key = str(originator)
        facts = self._created.get(key)
        if facts is None:
            first = next(iter(self.events.get(UUID(key), lte=1)), None)
            facts = self._remember_created(key, {f: _plain(getattr(first, f, None)) for f in self.created_fields})
        return facts

    def _remember_created(self, originator: str, data: dict[str, Any]) -> dict[str, Any]:
        facts = {f: data.get(f) for f in self.created_fields}
        if len(self._created) > 100_000:
            self._created.clear()
        self._created[originator] = facts
        return facts

    def topic_of(self, cls: type, originator: str, data: dict[str, Any]) -> str | None:
        """The consultation topic an event belongs to.

        The event's own ``topic_id`` if it names one, else the one its aggregate
        was created with (a session's later events belong to the session's topic).
        """
        topic = data.get("topic_id") or self.created_facts(originator).get("topic_id")
        return str(topic) if topic else None

    def redact(self, name: str, data: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """The event's data as it may leave the store: services drop personal data here.

        Every envelope (Kafka, own views, rebuilds) is made from redacted data, so
        names and phone numbers stay in the store that holds them (domain rules).
        ``created`` holds the aggregate's ``created_fields``.
        """
        return data

    def outcome(self, event: CloudEvent) -> CloudEvent | None:
        """The public form (version 1) of an outcome event, without ``outcome_withheld``;
        override to return None to keep one off the outcome topic (a confidential matter)."""
        dropped = self.outcome_withheld.get(event.name)
        if not dropped:
            return event
        return event.model_copy(update={"data": {k: v for k, v in event.data.items() if k not in dropped}})

    def outcome_forms(self, event: CloudEvent) -> list[CloudEvent]:
        """What the outcome topic carries for ``event``: its public form, and each newer
        version of it; version 1 of a type with a newer one only until
        ``CONSULT_OUTCOMES_V1_UNTIL`` (the transition window)."""
        if event.name not in self.outcomes:
            return []
        public = self.outcome(event)
        if public is None:
            return []
        newer = self.outcome_versions.get(event.name, {})
        forms = [public] if not newer or self.clock.today() <= self.settings.outcomes_v1_until else []
        for version, form in sorted(newer.items()):
            forms.append(public.model_copy(update={
                "id": event_id(self.service, public.subject, public.version or 0, form=version),
                "type": f"consultation.{self.service}.{public.name}.v{version}",
                "data": form.make(public).model_dump(mode="json"),
            }))
        return forms

    def envelopes(self, notifications: Iterable[LogEntry]) -> list[CloudEvent]:
        return [self.envelope(n) for n in notifications]

    # -- deadlines -----------------------------------------------------------------
    def record_missed_deadlines_of(self, targets: Iterable[tuple[type[Aggregate], str]],
                                   detected_by: str) -> list[tuple[str, str]]:
        """DeadlineMissed for every step of these aggregates that went overdue, once each
        (``record_missed(today, calendar, detected_by)`` on each decides); a scheduler that
        lost a race on one aggregate leaves it to the winner."""
        today = self.clock.today()
        missed: list[tuple[str, str]] = []
        for cls, aggregate_id in targets:
            try:
                aggregate: Any = self.get(cls, aggregate_id)
            except NotFound:
                continue
            steps = aggregate.record_missed(today, self.calendar, detected_by)  # type: ignore[attr-defined]
            if not steps:
                continue
            try:
                self.save(aggregate)
            except RecordConflictError:
                continue
            missed += [(aggregate_id, step) for step in steps]
        return missed
