"""Today's date on China Standard Time, behind an injectable clock.

Deadlines are dates in Beijing time (UTC+8, no daylight saving), not in the
server's zone. Tests and drills hand a service a :class:`FixedClock` and move it,
so a scheduler can be shown to act when a due date passes without waiting days.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "CST")


class Clock:
    """The real clock."""

    def today(self) -> date:
        return datetime.now(CHINA).date()


class FixedClock(Clock):
    """A clock that says what it is told, until told otherwise."""

    def __init__(self, today: date):
        self._today = today
        self._lock = threading.Lock()

    def today(self) -> date:
        with self._lock:
            return self._today

    def set(self, today: date) -> None:
        with self._lock:
            self._today = today
