"""Deadlines counted in official working days, as aggregates hold them and views list them.

One shape serves every service whose steps fall due (an opinion's answer, a
proposal's reply, a policy's interpretation): the aggregate records the due date
in the event that starts the clock, a scheduler asks it which steps went overdue,
and the views keep one ``deadline`` document per (subject, step) for the bodies
that supervise (督办). Pure functions: the calendar and today are handed in.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from shared.projection import existing
from shared.stores import ViewStore, ViewTransaction
from shared.workdays import WorkingCalendar

# -- in the domain ---------------------------------------------------------------------------


def due(calendar: WorkingCalendar, start: date, days: int, round_: int = 1) -> dict[str, Any]:
    """A step due ``days`` working days after ``start`` (provisional where a year has no
    official schedule yet)."""
    d = calendar.add_working_days(start, days)
    return {"due": d.due.isoformat(), "provisional": d.provisional, "from": start.isoformat(),
            "working_days": days, "round": round_, "met_on": None, "missed_on": None}


def overdue(deadlines: dict[str, dict[str, Any]], today: date, calendar: WorkingCalendar) -> list[str]:
    """Steps not done by their due date, once the first working day after it has come."""
    return [
        step for step, d in deadlines.items()
        if d["met_on"] is None and d["missed_on"] is None
        and calendar.next_working_day(date.fromisoformat(d["due"])).due <= today
    ]


# -- in the views ----------------------------------------------------------------------------


def put_deadline(txn: ViewTransaction, kind: str, subject: str, step: str, due: dict[str, Any],
                 department: str, topic_id: str | None) -> None:
    """Open (or open again) the ``step`` of ``subject``, owed by ``department``."""
    txn.put("deadline", f"{subject}/{step}", {
        "kind": kind, "subject": subject, "step": step, "round": due.get("round", 1),
        "due": due["due"], "from": due["from"], "provisional": due["provisional"],
        "department": department, "topic_id": topic_id, "met_on": None, "missed_on": None,
    })


def close_deadline(txn: ViewTransaction, event: Any, step: str, **changes: Any) -> None:
    """Mark the step of the event's subject met or missed."""
    key = f"{event.subject}/{step}"
    txn.put("deadline", key, {**existing(txn, "deadline", key, event, "set"), **changes})


def elapsed(calendar: WorkingCalendar, start: str, today: date) -> int:
    """Working days from ``start`` up to and including ``today``."""
    return calendar.working_days_between(date.fromisoformat(start), today + timedelta(days=1)).value


def open_deadlines(views: ViewStore, today: date | None = None) -> list[tuple[str, str]]:
    """(kind, subject) of every step neither done nor reported missed; with ``today``, only
    those already due before it, the only ones that can be overdue (``overdue``: not before
    the first working day after the due date). The scheduler loads each subject's aggregate
    to let it decide: every open step, every minute, was tens of thousands of loads once
    tens of thousands of opinions waited for their answers (bench/README.md); and with
    ``today`` the store reads only those steps (``open_steps_due_before``), not every one."""
    return sorted({(d["kind"], d["subject"]) for d in open_steps(views, today)})


def open_steps(views: ViewStore, today: date | None = None) -> list[dict[str, Any]]:
    """The ``deadline`` documents neither met nor missed; with ``today``, those due before it."""
    if today is not None:
        return views.open_steps_due_before(today.isoformat())
    return [d for d in views.list("deadline") if d["met_on"] is None and d["missed_on"] is None]
