"""Events of other services that make this service act: a command, not a view.

A proposal converted into a topic makes the catalog propose that topic; the
catalog's answer makes the proposal record it. Such a reaction is consumed like
a projection (at least once, dead letters for what cannot be used, see
``shared.consumer``) but writes to the service's own event store, which cannot
share a transaction with a tracking record. Exactly-once effect comes instead
from the commands themselves: each creates its aggregate under an id derived
from the event it reacts to, or checks the aggregate's state, so a redelivered
event finds its work done and changes nothing.

A command the service refuses is not an error to retry: the reaction records the
refusal as an event, so the service that asked sees why (nothing goes silent).
"""

from __future__ import annotations

from typing import Any, ClassVar

from shared.application import ServiceApplication
from shared.envelope import CloudEvent
from shared.stores import ViewStore


class Reaction:
    """Subscribes to ``kafka_topics`` and calls ``on_<EventName>(event, data)`` on the app."""

    name: ClassVar[str] = ""
    kafka_topics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, app: ServiceApplication, views: ViewStore):
        self.app = app
        #: The service's views, for what it learned of other services (read only here).
        self.views = views
        #: Events this reaction acted on (not counting those whose work was done): for health.
        self.applied = 0

    def handle(self, event: CloudEvent) -> bool:
        """Act on ``event``; False when there was nothing (more) to do."""
        method = getattr(self, f"on_{event.name}", None)
        if method is None:
            return False
        acted: Any = method(event, event.data)
        if acted:
            self.applied += 1
        return bool(acted)
