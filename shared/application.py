"""The eventsourcing Application every service builds on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, Notification, Recording, StoredEvent

from shared.clock import Clock
from shared.config import Settings
from shared.domain import NotFound
from shared.envelope import CloudEvent, event_id
from shared.stores import store_env

T = TypeVar("T", bound=Aggregate)

_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


class EventTooLarge(ValueError):
    """A command would record an event larger than the relay may publish (HTTP 422)."""


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


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class ServiceApplication(Application[UUID]):
    """One service's event store, with the hooks its relay and projections follow."""

    #: Lower-case service name; also the eventsourcing env prefix (``CATALOG_...``).
    service: str = ""
    #: Event names also published to ``consultation.outcomes.v1`` for other departments.
    outcomes: frozenset[str] = frozenset()

    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        self.clock = clock or Clock()
        self.name = self.service
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # An aggregate's topic is fixed when it is created; remembered per originator.
        self._topics: dict[UUID, str | None] = {}
        super().__init__(env=store_env(settings, self.service))

    def construct_mapper(self) -> Mapper[UUID]:
        return BoundedMapper(super().construct_mapper(), self.settings.max_event_bytes)

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

    def notifications(self, after: int, limit: int = 500) -> list[Notification]:
        return list(self.recorder.select_notifications(after + 1, limit))

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def envelope(self, notification: Notification) -> CloudEvent:
        """The stored event as the contract publishes it."""
        domain_event = self.mapper.to_domain_event(notification)
        data = {
            k: _plain(v) for k, v in vars(domain_event).items() if k not in _ENVELOPE_FIELDS
        }
        cls = type(domain_event)
        name = cls.__name__
        topic_id = self.topic_of(domain_event, data)
        data = self.redact(name, data)
        originator = str(domain_event.originator_id)
        actor_field = getattr(cls, "ACTOR", None)
        return CloudEvent(
            id=event_id(self.service, originator, domain_event.originator_version),
            source=f"/consultation/{self.service}",
            type=f"consultation.{self.service}.{name}.v1",
            subject=originator,
            time=domain_event.timestamp,
            data=data,
            topicid=topic_id,
            sequence=notification.id,
            actor=str(data[actor_field]) if actor_field and data.get(actor_field) else None,
            version=domain_event.originator_version,
        )

    def topic_of(self, domain_event: Any, data: dict[str, Any]) -> str | None:
        """The consultation topic an event belongs to.

        The event's own ``topic_id`` if it names one, else the one its aggregate
        was created with (a session's later events belong to the session's topic).
        """
        topic = data.get("topic_id")
        if topic:
            return str(topic)
        originator = domain_event.originator_id
        if originator not in self._topics:
            first = next(iter(self.events.get(originator, lte=1)), None)
            created = getattr(first, "topic_id", None) if first is not None else None
            if len(self._topics) > 100_000:
                self._topics.clear()
            self._topics[originator] = str(created) if created else None
        return self._topics[originator]

    def redact(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """The event's data as it may leave the store: services drop personal data here.

        Every envelope (Kafka, own views, rebuilds) is made from redacted data, so
        names and phone numbers stay in the store that holds them (domain rules).
        """
        return data

    def outcome(self, event: CloudEvent) -> CloudEvent:
        """The public form of an outcome event; override to drop internal fields."""
        return event

    def envelopes(self, notifications: Iterable[Notification]) -> list[CloudEvent]:
        return [self.envelope(n) for n in notifications]
