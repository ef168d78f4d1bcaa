"""Following a service's notification log: own-log projections, and the base of the relay.

eventsourcing's ``subscribe()`` does not work on SQLite, so both poll the log
(``select_notifications``) from a tracked position, woken early after each save.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared.application import ServiceApplication
from shared.config import Settings
from shared.logs import get_logger
from shared.projection import ViewProjection

#: Seconds a follower may keep failing before health calls it stuck.
STUCK_AFTER = 30.0


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
        self._ahead: tuple[int, asyncio.Future[list[Any]]] | None = None
        #: Why the last round failed, and since when rounds have failed (None: the last one worked).
        self.last_error: str | None = None
        self._failing_since: float | None = None
        app.on_saved(self._saved)

    def _saved(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def position(self) -> int:
        raise NotImplementedError

    def read_ahead(self, after: int) -> None:
        """Start reading the batch after position ``after`` now, for the next round (the
        relay reads while the broker acknowledges)."""
        future = asyncio.ensure_future(asyncio.to_thread(self.app.notifications, after, self.batch_size))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure: read again
        self._ahead = (after, future)

    async def _read(self, after: int) -> list[Any]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == after:
            try:
                batch = await ahead[1]
            except Exception:  # noqa: BLE001 - read it again below, where a failure counts
                batch = []
            # An empty read ahead may predate a save whose wake-up was cleared since.
            if batch:
                return batch
        return await asyncio.to_thread(self.app.notifications, after, self.batch_size)

    async def process(self, notifications: list[Any]) -> None:
        raise NotImplementedError

    async def recover(self) -> None:
        """Called before retrying after a failure."""

    async def idle(self) -> None:
        """Called before each batch: room for periodic checks."""

    def failed(self, error: BaseException) -> None:
        """Called on each failure, before the pause."""
        self.last_error = f"{type(error).__name__}: {error}"
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def succeeded(self) -> None:
        """Called after each round that processed a batch, or found nothing to do."""
        self.last_error, self._failing_since = None, None

    def failing_for(self) -> float | None:
        """Seconds every round has failed (a full disk, a store that does not answer), or None."""
        return None if self._failing_since is None else time.monotonic() - self._failing_since

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = 0.1
        failed = self.recover_on_start
        while True:
            try:
                if failed:
                    await self.recover()
                    failed = False
                await self.idle()
                # Cleared before reading, not after: a save while the read is under way
                # wakes the wait below at once instead of being lost for a poll interval.
                self._wake.clear()
                after = await self.position()
                batch = await self._read(after)
                if batch:
                    await self.process(batch)
                    self.succeeded()
                    backoff = 0.1
                    continue
                self.succeeded()
                self.caught_up.set()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a follower must outlive outages
                failed = True
                self.failed(error)
                self.log.warning("follower failed; will retry", error=repr(error), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)


class ProjectionFollower(LogFollower):
    """Keeps one of the service's own views current from its own log (no broker needed)."""

    def __init__(self, app: ServiceApplication, settings: Settings, projection: ViewProjection):
        super().__init__(app, settings, f"projection.{projection.name}")
        self.projection = projection

    async def position(self) -> int:
        return await asyncio.to_thread(self.projection.position, self.app.service)

    async def process(self, notifications: list[Any]) -> None:
        """One transaction per batch (up to ``batch_size``), so catching up after an outage is fast."""
        events = self.app.envelopes(notifications)
        tracking = self.projection.position_tracking(events[-1])
        await asyncio.to_thread(self.projection.handle_batch, events, tracking)
