"""What every service's domain model shares: stable event names and refusals.

Domain modules import from here and from ``eventsourcing.domain`` only: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import register_topic

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


class NotFound(Exception):
    """An id that names nothing this service holds (HTTP 404)."""


def stable_names(service: str, actors: dict[str, str] | None = None) -> Callable[[A], A]:
    """Give an aggregate and its events stored names that survive moving code.

    eventsourcing stores ``module:qualname`` unless a class declares ``TOPIC``.
    We store ``consultation.<service>.<Name>`` instead, so files can be moved
    and renamed without rewriting history. ``actors`` names, per event, the
    field that says who acted (shown in traces and logs).
    """
    actors = actors or {}

    def decorate(cls: A) -> A:
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
