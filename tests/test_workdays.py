"""Working days on China's official calendar (issue 2, item 8)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from shared.workdays import WorkingCalendar


def weekdays_between(start: date, end: date) -> int:
    return sum((start + timedelta(d)).weekday() < 5 for d in range(1, (end - start).days))


def test_national_day_holiday_is_not_counted() -> None:
    calendar = WorkingCalendar.load()
    served, session = date(2026, 9, 23), date(2026, 10, 20)
    assert weekdays_between(served, session) == 18
    count = calendar.working_days_between(served, session)
    assert count.value == 13 and not count.provisional


def test_make_up_working_day_counts() -> None:
    calendar = WorkingCalendar.load()
    # Saturday 2026-10-10 is a make-up working day (调休上班) after National Day.
    assert calendar.is_working_day(date(2026, 10, 10)) == (True, True)
    assert calendar.is_working_day(date(2026, 10, 11)) == (False, True)
    assert calendar.is_working_day(date(2026, 10, 5)) == (False, True)


def test_deadline_in_a_year_without_official_data_is_provisional(tmp_path: Path) -> None:
    calendar = WorkingCalendar.load(tmp_path)
    deadline = calendar.add_working_days(date(2026, 12, 28), 5)
    assert deadline.provisional and deadline.years_without_data == (2027,)
    count = calendar.working_days_between(date(2026, 12, 20), date(2027, 1, 20))
    assert count.provisional and count.years_without_data == (2027,)


def test_an_operator_loads_a_new_year_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "2027.json").write_text(json.dumps({
        "year": 2027,
        "holidays": {"2027-01-01": "元旦", "2027-01-04": "test day off"},
        "workdays": ["2027-01-09"],
    }), encoding="utf-8")
    calendar = WorkingCalendar.load(tmp_path)
    assert calendar.has_official_data(2027)
    assert calendar.is_working_day(date(2027, 1, 4)) == (False, True)
    assert calendar.is_working_day(date(2027, 1, 9)) == (True, True)
    deadline = calendar.add_working_days(date(2026, 12, 31), 2)
    # 01-01 and 01-04 off, 01-02/03 weekend: the 2nd working day is Wednesday 01-06.
    assert deadline.due == date(2027, 1, 6) and not deadline.provisional
