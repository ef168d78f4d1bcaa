"""The deadline scheduler: DeadlineMissed the first working day after an answer, a feedback
or an interpretation falls due undone.

It asks the views which opinions and decisions still owe a step, and lets each
aggregate decide, so a step is reported missed once, however often or in how
many places the scheduler runs.
"""

from __future__ import annotations

from shared.deadlines import open_deadlines
from shared.jobs import deadline_scheduler as scheduler
from shared.service import Service

from services.feedback.application import FeedbackApplication


def record_missed(service: Service) -> list[tuple[str, str]]:
    app: FeedbackApplication = service.app  # type: ignore[assignment]
    return app.record_missed_deadlines(open_deadlines(service.views, app.clock.today()))


deadline_scheduler = scheduler(record_missed)
