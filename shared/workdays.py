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


#: The calendar answers for these years only: commands accept dates in 2000–2100,
#: and a deadline counted from 2100-12-31 may reach a little into 2101.
FIRST_YEAR, LAST_YEAR = 1999, 2101
#: No rule counts further than this (the longest is 20 working days).
MAX_WORKING_DAYS = 1_000


def _within_bounds(*days: date) -> None:
    for day in days:
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ValueError(f"{day} lies outside the calendar ({FIRST_YEAR}–{LAST_YEAR})")


def _weekdays(start: date, stop: date) -> int:
    """Monday–Friday days in [start, stop)."""
    days = (stop - start).days
    full_weeks, rest = divmod(days, 7)
    first = start.weekday()
    return full_weeks * 5 + sum(1 for i in range(rest) if (first + i) % 7 < 5)


@dataclass
class WorkingCalendar:
    extra: dict[int, YearSchedule] = field(default_factory=dict)
    _known: dict[int, bool] = field(default_factory=dict, repr=False)
    _totals: dict[int, int] = field(default_factory=dict, repr=False)
    #: Answers of ``is_working_day`` already given: chinesecalendar checks each date against
    #: its whole table (min and max over every holiday) on every call, which made deadline
    #: arithmetic the largest cost of recording an opinion (bench/README.md).
    _days: dict[date, tuple[bool, bool]] = field(default_factory=dict, repr=False)
    #: Answers of ``add_working_days`` already given: every opinion of a day asks the same
    #: question (today plus the answer period), a walk of some twenty days each time.
    _added: dict[tuple[date, int], Deadline] = field(default_factory=dict, repr=False)

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
        self._known.pop(schedule.year, None)
        self._totals.pop(schedule.year, None)
        self._days = {d: v for d, v in self._days.items() if d.year != schedule.year}
        self._added.clear()

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
        known = self._days.get(day)
        if known is None:
            if len(self._days) > 50_000:
                self._days.clear()
            known = self._days[day] = self._look_up(day)
        return known

    def _look_up(self, day: date) -> tuple[bool, bool]:
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
        are the preparation time the participants actually get. Years without
        official data are counted Monday–Friday by arithmetic, so a span of a
        century costs milliseconds, not a walk through every day.
        """
        _within_bounds(start, end)
        count, missing = 0, []
        first = start + timedelta(days=1)
        while first < end:
            stop = min(end, date(first.year + 1, 1, 1))
            if self._official(first.year):
                count += self._working_days_in(first, stop)
            else:
                count += _weekdays(first, stop)
                missing.append(first.year)
            first = stop
        return Count(count, bool(missing), tuple(missing))

    def _working_days_in(self, first: date, stop: date) -> int:
        """Working days in [first, stop) within one official year; whole years are remembered."""
        whole = first == date(first.year, 1, 1) and stop == date(first.year + 1, 1, 1)
        if whole and first.year in self._totals:
            return self._totals[first.year]
        n = sum(self.is_working_day(first + timedelta(days=i))[0] for i in range((stop - first).days))
        if whole:
            self._totals[first.year] = n
        return n

    def _official(self, year: int) -> bool:
        known = self._known.get(year)
        if known is None:
            known = self._known[year] = self.has_official_data(year)
        return known

    def add_working_days(self, start: date, days: int) -> Deadline:
        """The ``days``-th working day after ``start`` (before it, for negative ``days``)."""
        known = self._added.get((start, days))
        if known is not None:
            return known
        if abs(days) > MAX_WORKING_DAYS:
            raise ValueError(f"{days} working days is beyond what any rule counts")
        _within_bounds(start)
        missing: set[int] = set()
        step = timedelta(days=1 if days >= 0 else -1)
        day, left = start, abs(days)
        while left > 0:
            day += step
            working, official = self.is_working_day(day)
            if not official:
                missing.add(day.year)
            left -= working
        if len(self._added) > 10_000:
            self._added.clear()
        answer = self._added[(start, days)] = Deadline(day, bool(missing), tuple(sorted(missing)))
        return answer

    def latest_notice_day(self, session: date, days: int) -> Deadline:
        """The last day a notice can be served and still leave ``days`` working days before ``session``."""
        earliest = self.add_working_days(session, -days)
        return Deadline(earliest.due - timedelta(days=1), earliest.provisional, earliest.years_without_data)

    def next_working_day(self, after: date) -> Deadline:
        return self.add_working_days(after, 1)
