"""Background jobs a service runs beside its relay and followers (a deadline scheduler, say)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shared.logs import get_logger

if TYPE_CHECKING:
    from shared.service import Service


def periodic(
    name: str, work: Callable[[Service], object], interval: Callable[[Service], float]
) -> Callable[[Service], Awaitable[None]]:
    """A job that runs ``work(service)`` in a thread, then waits ``interval(service)`` seconds.

    A failing round is logged and retried after a growing pause; the job never
    dies of an error, because a scheduler that stopped silently is worse than none.
    """

    async def job(service: Service) -> None:
        log = get_logger(name, service=service.name)
        backoff = 0.0
        while True:
            try:
                await asyncio.to_thread(work, service)
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                backoff = min(max(backoff * 2, 1.0), 60.0)
                log.error("job round failed", error=repr(error), retry_in=backoff)
            await asyncio.sleep(interval(service) + backoff)

    job.__name__ = name
    return job
