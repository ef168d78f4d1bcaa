"""Following a service's notification log: the outbox relay and own-log projections.

eventsourcing's ``subscribe()`` does not work on SQLite, so both poll the log
(``select_notifications``) from a tracked position, woken early after each save.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eventsourcing.persistence import Tracking
from faststream.kafka import KafkaBroker

from shared.application import ServiceApplication
from shared.config import OUTCOMES_TOPIC, SERVICE_TOPICS, Settings
from shared.kafka import ensure_topics, publish, topic_is_empty
from shared.logs import bind, get_logger
from shared.projection import ViewProjection


class LogFollower:
    """Polls ``app``'s notification log and hands batches to :meth:`process`."""

    batch_size = 500
    max_backoff = 5.0
    #: Run :meth:`recover` before the first batch too.
    recover_on_start = False

    def __init__(self, app: ServiceApplication, settings: Settings, name: str):
        self.app = app
        self.settings = settings
        self.name = name
        self.log = get_logger(name, service=app.service)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.caught_up = asyncio.Event()
        app.on_saved(self._saved)

    def _saved(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def position(self) -> int:
        raise NotImplementedError

    async def process(self, notifications: list[Any]) -> None:
        raise NotImplementedError

    async def recover(self) -> None:
        """Called before retrying after a failure."""

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = 0.1
        failed = self.recover_on_start
        while True:
            try:
                if failed:
                    await self.recover()
                    failed = False
                after = await self.position()
                batch = await asyncio.to_thread(self.app.notifications, after, self.batch_size)
                if batch:
                    await self.process(batch)
                    backoff = 0.1
                    continue
                self.caught_up.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a follower must outlive outages
                failed = True
                self.log.warning("follower failed; will retry", error=repr(error), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)


class Relay(LogFollower):
    """The durable outbox: publishes every stored event to the service's Kafka topic.

    The position is recorded in the event store only after the broker acknowledged,
    so a crash between commit and publish loses nothing; an event may be published
    twice after a crash, with the same CloudEvent id, which consumers recognise.
    """

    recover_on_start = True  # the broker may have restarted empty while we were down

    def __init__(self, app: ServiceApplication, settings: Settings, broker: KafkaBroker):
        super().__init__(app, settings, "relay")
        self.broker = broker
        self.topic = settings.topic(SERVICE_TOPICS[app.service])
        self.outcomes_topic = settings.topic(OUTCOMES_TOPIC)
        self.tracking = app.factory.tracking_recorder()
        self.tracking_name = f"relay:{self.topic}"
        self._stored = self.tracking.max_tracking_id(self.tracking_name) or 0
        self._position = self._stored
        self.published = 0

    async def position(self) -> int:
        return self._position

    async def recover(self) -> None:
        await ensure_topics(self.settings)
        if self._position and await topic_is_empty(self.settings, self.topic):
            # The broker came back without its data (the embedded broker keeps
            # none): the store is the system of record, so publish it all again.
            self.log.warning("broker lost its log; republishing from the store", topic=self.topic)
            self._position = 0

    async def process(self, notifications: list[Any]) -> None:
        pending = []
        for event in self.app.envelopes(notifications):
            with bind(event_id=event.id, notification_id=event.sequence):
                pending.append(await publish(self.broker, self.topic, event))
                if event.name in self.app.outcomes:
                    pending.append(await publish(self.broker, self.outcomes_topic, self.app.outcome(event)))
        await asyncio.gather(*pending)
        last = notifications[-1].id
        if last > self._stored:
            await asyncio.to_thread(self.tracking.insert_tracking, Tracking(self.tracking_name, last))
            self._stored = last
        self._position = last
        self.published += len(notifications)
        self.log.debug("published", topic=self.topic, upto=last, count=len(notifications))


class ProjectionFollower(LogFollower):
    """Keeps one of the service's own views current from its own log (no broker needed)."""

    def __init__(self, app: ServiceApplication, settings: Settings, projection: ViewProjection):
        super().__init__(app, settings, f"projection.{projection.name}")
        self.projection = projection

    async def position(self) -> int:
        return await asyncio.to_thread(self.projection.position, self.app.service)

    async def process(self, notifications: list[Any]) -> None:
        events = self.app.envelopes(notifications)

        def apply_all() -> None:
            for event in events:
                self.projection.handle(event)

        await asyncio.to_thread(apply_all)
