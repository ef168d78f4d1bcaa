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


def deadline_scheduler(
    record_missed: Callable[[Service], list[tuple[str, str]]],
) -> Callable[[Service], Awaitable[None]]:
    """The job that reports missed deadlines: ``record_missed(service)`` every
    ``deadline_check_interval`` seconds, each (subject, step) it reports logged.

    Deadlines are dates, so a minute between checks is plenty; the aggregates
    decide what is missed, so running it often, twice, or after a restart
    reports each miss once.
    """

    def check(service: Service) -> list[tuple[str, str]]:
        missed = record_missed(service)
        for subject, step in missed:
            get_logger("deadlines", service=service.name).warning(
                "deadline missed", subject=subject, step=step, today=str(service.app.clock.today()))
        return missed

    return periodic("deadline-scheduler", check, lambda s: s.settings.deadline_check_interval)
