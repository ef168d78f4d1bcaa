"""What every service's domain model shares: stable event names and refusals.

Domain modules import from here and from ``eventsourcing.domain`` only: no I/O.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from enum import Enum
from typing import TypeVar
from uuid import UUID

from eventsourcing import domain
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import register_topic
from uuid_utils.compat import uuid7

from shared import idempotency


def new_id() -> UUID:
    """A new aggregate's id: a UUID of version 7 (RFC 9562), its first 48 bits the time of
    creation in milliseconds, then a counter and random bits, so that ids made in the same
    millisecond keep their order too.

    Each store keeps its events in an index by (aggregate id, version). Random ids (version
    4) put every new aggregate's first event on a random page of that index, splitting pages
    anywhere; ids in order of creation add it to the last page, which the save before used.
    sqlite3 alone committed an event and a new person's key in 161–179 µs with ids in order,
    in 184–255 µs with random ones (bench/README.md, eighth round). The id tells when the
    aggregate was made, to the millisecond: no more than its first event's time, which
    every view shows.

    Within a request sent with an ``Idempotency-Key``, the id is derived from the request
    instead (``shared.idempotency``), so that the request sent again makes the same ids.
    """
    request = idempotency.current.get()
    return request.next() if request is not None else uuid7()


class Aggregate(domain.Aggregate):
    """eventsourcing's aggregate, with ids in order of creation (``new_id``)."""

    @staticmethod
    def create_id(*_: object, **__: object) -> UUID:
        return new_id()


A = TypeVar("A", bound=type[Aggregate])


class Refused(Exception):
    """A command the current state does not allow (HTTP 409).

    The message is written for an official, not a programmer: it says which
    rule stops the command and, where it helps, what to do instead.
    """

    def __init__(self, message: str, rule: str = "state"):
        super().__init__(message)
        self.message = message
        self.rule = rule


class EventTooLarge(ValueError):
    """A command would record an event larger than the relay may publish (HTTP 422)."""


class NotFound(Exception):
    """An id that names nothing this service holds (HTTP 404)."""


#: Every event class of each service, by name: what the published contract documents.
EVENTS: dict[str, dict[str, type]] = {}


def stable_names(service: str, actors: dict[str, str] | None = None) -> Callable[[A], A]:
    """Give an aggregate and its events stored names that survive moving code.

    eventsourcing stores ``module:qualname`` unless a class declares ``TOPIC``.
    We store ``consultation.<service>.<Name>`` instead, so files can be moved
    and renamed without rewriting history. ``actors`` names, per event, the
    field that says who acted (shown in traces and logs).
    """
    actors = actors or {}

    def decorate(cls: A) -> A:
        events = EVENTS.setdefault(service, {})
        cls.TOPIC = f"consultation.{service}.{cls.__name__}"
        register_topic(cls.TOPIC, cls)
        for name, obj in list(vars(cls).items()):
            if (
                isinstance(obj, type)
                and issubclass(obj, CanMutateAggregate)
                and name not in ("Event", "Created")
            ):
                obj.TOPIC = f"consultation.{service}.{name}"
                obj.ACTOR = actors.get(name)
                obj.SERVICE = service
                register_topic(obj.TOPIC, obj)
                events[name] = obj
        unknown = set(actors) - set(vars(cls))
        if unknown:
            raise TypeError(f"{cls.__name__}: actors named for unknown events {unknown}")
        return cls

    return decorate


def require_reason(reason: str | None, what: str) -> str:
    """The rules name several decisions that need a stated reason (理由)."""
    if reason is None or not reason.strip():
        raise Refused(f"{what} requires a reason.", rule="reason_required")
    return reason.strip()


E = TypeVar("E", bound=type[Enum])
_TERM = re.compile(r"""^\s+\w+\s*=\s*["']([^"']+)["']\s*#\s*(.+?)\s*$""")


def glossed(cls: E) -> E:
    """Show each code's Chinese term in the OpenAPI documents.

    The term is the comment beside the code in the class body (``livelihood = "livelihood"
    # 民生事项``), so the source keeps one list. Codes without a comment are listed bare.
    """
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return cls
    terms = {m.group(1): m.group(2) for line in source.splitlines() if (m := _TERM.match(line))}
    listed = "; ".join(f"{member.value}: {terms[member.value]}" if member.value in terms else member.value
                       for member in cls)
    cls.__doc__ = f"{(cls.__doc__ or cls.__name__).strip()}\n\n{listed}"
    return cls


def evolve(event_class: type, *added: dict[str, object]) -> None:
    """Give a stored event new fields without rewriting history (docs/schema-evolution.md).

    Each mapping in ``added`` is one version step: ``evolve(E, {"x": None})`` makes
    ``E.class_version`` 2, and an event stored at version 1 is read (upcast) with
    ``x = None``. Old and new events then read, and publish, in the same shape.
    eventsourcing records ``class_version`` with each new event and calls
    ``upcast_vN_vN+1(state)`` on older ones when it reads them.
    """
    for step, defaults in enumerate(added, start=1):
        def upcast(state: dict[str, object], defaults: dict[str, object] = defaults) -> None:
            for name, value in defaults.items():
                state.setdefault(name, value)

        setattr(event_class, f"upcast_v{step}_v{step + 1}", staticmethod(upcast))
    event_class.class_version = len(added) + 1  # type: ignore[attr-defined]
