"""The deadline scheduler: DeadlineMissed the first working day after a due date passes.

It asks the session views which sessions still have an open step, and lets each
session aggregate decide — so a step is reported missed once, whether the
scheduler runs every minute, twice in parallel, or again after a restart.
"""

from __future__ import annotations

from shared.jobs import deadline_scheduler as scheduler
from shared.service import Service

from services.sessions.application import SessionsApplication
from services.sessions.projections import open_deadline_sessions


def record_missed(service: Service) -> list[tuple[str, str]]:
    app: SessionsApplication = service.app  # type: ignore[assignment]
    return app.record_missed_deadlines(open_deadline_sessions(service.views, app.clock.today()))


deadline_scheduler = scheduler(record_missed)
