"""The session aggregate's deadline rules, as pure domain logic (no I/O, no clock)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.sessions.domain import Exemption, Session, Step
from shared.domain import Refused
from shared.workdays import WorkingCalendar, YearSchedule

CALENDAR = WorkingCalendar.load()
PLANNED = [{"plan_id": "p1", "plan_kind": "government", "form": "symposium"}]


def held_session(held_on: date) -> Session:
    session = Session.schedule(PLANNED, "t1", "symposium", "座谈会", held_on, "县住建局", "县政府办公室", CALENDAR)
    session.hold(held_on, ["王委员"], "纪要", False, "紧急", None, held_on, CALENDAR)
    return session


def overdue_days(session: Session, start: date, end: date) -> list[date]:
    days, day = [], start
    while day <= end:
        if session.overdue_steps(day, CALENDAR):
            days.append(day)
        day += timedelta(days=1)
    return days


def test_a_deadline_before_national_day_is_missed_on_the_first_working_day_after_it() -> None:
    session = held_session(date(2026, 9, 22))
    assert session.deadlines[Step.opinion]["due"] == "2026-09-30"
    # 1–7 October are the holiday: the step is overdue from 8 October, not before.
    assert overdue_days(session, date(2026, 9, 30), date(2026, 10, 8))[0] == date(2026, 10, 8)


def test_a_friday_deadline_is_missed_on_monday_not_at_the_weekend() -> None:
    session = held_session(date(2026, 11, 6))
    assert session.deadlines[Step.opinion]["due"] == "2026-11-13"
    assert overdue_days(session, date(2026, 11, 13), date(2026, 11, 16)) == [date(2026, 11, 16)]


def test_deadline_missed_is_recorded_once_and_never_for_a_step_done_in_time() -> None:
    session = held_session(date(2026, 11, 6))
    session.form_opinion("意见", "县住建局", date(2026, 11, 12), CALENDAR)
    late = date(2026, 12, 1)
    assert session.record_missed(late, CALENDAR, "scheduler") == [Step.report]
    assert session.record_missed(late, CALENDAR, "scheduler") == []
    assert session.record_missed(late + timedelta(days=7), CALENDAR, "scheduler") == []
    missed = [e for e in session.collect_events() if type(e).__name__ == "DeadlineMissed"]
    assert [(e.step, e.detected_on) for e in missed] == [("report", "2026-12-01")]


def test_an_exemption_without_a_reason_is_refused() -> None:
    with pytest.raises(Refused) as refusal:
        Exemption.record("封路", "public_safety", "  ", "县政府", "县交通局", date(2026, 12, 1), None)
    assert refusal.value.rule == "reason_required"


def test_provisional_due_dates_are_confirmed_once_the_year_is_published() -> None:
    session = held_session(date(2026, 12, 28))
    assert session.deadlines[Step.opinion]["provisional"] is True
    assert session.confirm_deadlines(CALENDAR, "scheduler") == []  # still no official 2027

    published = WorkingCalendar.load()
    published.add(YearSchedule(2027, frozenset({date(2027, 1, 1)}), frozenset()))
    assert session.confirm_deadlines(published, "scheduler") == [Step.opinion, Step.report]
    assert session.deadlines[Step.opinion]["due"] == "2027-01-05"
    assert session.confirm_deadlines(published, "scheduler") == []


def test_the_report_is_due_five_working_days_after_the_opinion_actually_formed_and_is_the_offices() -> None:
    session = held_session(date(2026, 11, 6))
    assert session.deadlines[Step.report]["due"] == "2026-11-20"  # nominal: after the opinion's due date
    session.form_opinion("意见", "县住建局", date(2026, 11, 9), CALENDAR)
    assert session.deadlines[Step.report]["due"] == "2026-11-16"  # from the opinion actually formed
    assert session.record_missed(date(2026, 11, 17), CALENDAR, "scheduler") == [Step.report]
    [missed] = [e for e in session.collect_events() if type(e).__name__ == "DeadlineMissed"]
    assert (missed.responsible, missed.lead_department) == ("government_office", "县住建局")


def test_cppcc_sessions_record_the_notice_without_the_15_day_gate_and_owe_no_5_plus_5() -> None:
    planned = [{"plan_id": "p", "plan_kind": "cppcc", "form": "consultation_symposium"}]
    session = Session.schedule(planned, "t", "consultation_symposium", "协商座谈会", date(2026, 11, 20),
                               "县政协办公室", "县政协", CALENDAR)
    assert (session.body, session.research_required, session.grassroots_room) == ("cppcc", False, False)
    session.serve_notice(date(2026, 11, 17), ["材料"], None, CALENDAR, date(2026, 11, 17))
    session.hold(date(2026, 11, 20), ["王委员"], "纪要", True, None, None, date(2026, 11, 20), CALENDAR)
    assert session.held["working_days_before"] == 2 and session.deadlines == {}
    with pytest.raises(Refused) as form:
        Session.schedule(planned, "t", "hearing", "听证会", date(2026, 11, 20), "县政协办公室", "县政协", CALENDAR,
                         form_change_reason="改为听证")
    assert form.value.rule == "form_not_allowed"
