"""The deadline scheduler: DeadlineMissed the first working day after an answer, a feedback
or an interpretation falls due undone.

It asks the views which opinions and decisions still owe a step, and lets each
aggregate decide, so a step is reported missed once, however often or in how
many places the scheduler runs.
"""

from __future__ import annotations

from shared.jobs import periodic
from shared.logs import get_logger
from shared.service import Service

from services.feedback.application import FeedbackApplication
from services.feedback.projections import open_deadlines

log = get_logger("deadlines")


def check_deadlines(service: Service) -> list[tuple[str, str]]:
    app: FeedbackApplication = service.app  # type: ignore[assignment]
    missed = app.record_missed_deadlines(open_deadlines(service.views))
    for subject, step in missed:
        log.warning("deadline missed", subject=subject, step=step, today=str(app.clock.today()))
    return missed


deadline_scheduler = periodic(
    "deadline-scheduler", check_deadlines, lambda s: s.settings.deadline_check_interval
)
