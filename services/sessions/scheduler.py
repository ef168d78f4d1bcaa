"""The deadline scheduler: DeadlineMissed the first working day after a due date passes.

It asks the session views which sessions still have an open step, and lets each
session aggregate decide — so a step is reported missed once, whether the
scheduler runs every minute, twice in parallel, or again after a restart.
"""

from __future__ import annotations

from shared.jobs import periodic
from shared.logs import get_logger
from shared.service import Service

from services.sessions.application import SessionsApplication
from services.sessions.projections import open_deadline_sessions

log = get_logger("deadlines")


def check_deadlines(service: Service) -> list[tuple[str, str]]:
    app: SessionsApplication = service.app  # type: ignore[assignment]
    missed = app.record_missed_deadlines(open_deadline_sessions(service.views))
    for session_id, step in missed:
        log.warning("deadline missed", session=session_id, step=step, today=str(app.clock.today()))
    return missed


deadline_scheduler = periodic(
    "deadline-scheduler", check_deadlines, lambda s: s.settings.deadline_check_interval
)
