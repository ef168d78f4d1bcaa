"""Working days on China's official calendar (法定节假日与调休).

Deadlines in the rules are counted in working days: 15 before a session for the
notice (002 第七条(二)), 5 after it for the consultation opinion and 5 more for the
report (002 第七条(四)). Holidays and make-up working days (调休) come from the
maintained ``chinesecalendar`` package; the State Council publishes each year's
schedule late in the year before, so a year the package does not know yet can be
loaded from a JSON file (see README) without a code change. A count that crosses
a year with no official data is computed as Monday–Friday and marked provisional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar


@dataclass(frozen=True)
class YearSchedule:
    """One year's official schedule: days off on weekdays, make-up working weekends."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]

    @classmethod
    def from_file(cls, path: Path) -> YearSchedule:
        raw = json.loads(path.read_text(encoding="utf-8"))
        year = int(raw["year"])
        holidays = frozenset(date.fromisoformat(d) for d in raw.get("holidays", {}))
        workdays = frozenset(date.fromisoformat(d) for d in raw.get("workdays", []))
        stray = [d for d in holidays | workdays if d.year != year]
        if stray:
            raise ValueError(f"{path}: dates outside {year}: {sorted(stray)[:3]}")
        return cls(year, holidays, workdays)


@dataclass(frozen=True)
class Count:
    """A working-day figure and whether official data stood behind every day of it."""

    value: int
    provisional: bool = False
    years_without_data: tuple[int, ...] = ()


@dataclass(frozen=True)
class Deadline:
    due: date
    provisional: bool = False
    years_without_data: tuple[int, ...] = ()


@dataclass
class WorkingCalendar:
    extra: dict[int, YearSchedule] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None = None) -> WorkingCalendar:
        calendar = cls()
        bundled = Path(__file__).with_name("calendar_data")
        for folder in (bundled, directory):
            if folder and folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    calendar.add(YearSchedule.from_file(path))
        return calendar

    def add(self, schedule: YearSchedule) -> None:
        self.extra[schedule.year] = schedule

    def has_official_data(self, year: int) -> bool:
        if year in self.extra:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_working_day(self, day: date) -> tuple[bool, bool]:
        """(working?, official?) — unofficial answers treat Monday–Friday as working."""
        schedule = self.extra.get(day.year)
        if schedule is not None:
            if day in schedule.workdays:
                return True, True
            if day in schedule.holidays:
                return False, True
            return day.weekday() < 5, True
        try:
            return chinese_calendar.is_workday(day), True
        except NotImplementedError:
            return day.weekday() < 5, False

    def working_days_between(self, start: date, end: date) -> Count:
        """Working days strictly after ``start`` and strictly before ``end``.

        Notice served on ``start`` for a session on ``end``: the days in between
        are the preparation time the participants actually get.
        """
        count, missing = 0, set()
        day = start + timedelta(days=1)
        while day < end:
            working, official = self.is_working_day(day)
            count += working
            if not official:
                missing.add(day.year)
            day += timedelta(days=1)
        return Count(count, bool(missing), tuple(sorted(missing)))

    def add_working_days(self, start: date, days: int) -> Deadline:
        """The ``days``-th working day after ``start`` (before it, for negative ``days``)."""
        missing: set[int] = set()
        step = timedelta(days=1 if days >= 0 else -1)
        day, left = start, abs(days)
        while left > 0:
            day += step
            working, official = self.is_working_day(day)
            if not official:
                missing.add(day.year)
            left -= working
        return Deadline(day, bool(missing), tuple(sorted(missing)))

    def latest_notice_day(self, session: date, days: int) -> Deadline:
        """The last day a notice can be served and still leave ``days`` working days before ``session``."""
        earliest = self.add_working_days(session, -days)
        return Deadline(earliest.due - timedelta(days=1), earliest.provisional, earliest.years_without_data)

    def next_working_day(self, after: date) -> Deadline:
        return self.add_working_days(after, 1)
