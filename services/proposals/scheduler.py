"""The deadline scheduler: DeadlineMissed the first working day after a reply falls due unanswered.

It asks the views which proposals still owe a reply and lets each proposal decide,
so a reply is reported missed once, however often or in how many places it runs.
"""

from __future__ import annotations

from shared.deadlines import open_deadlines
from shared.jobs import deadline_scheduler as scheduler
from shared.service import Service

from services.proposals.application import ProposalsApplication


def record_missed(service: Service) -> list[tuple[str, str]]:
    app: ProposalsApplication = service.app  # type: ignore[assignment]
    return app.record_missed_deadlines(open_deadlines(service.views, app.clock.today()))


deadline_scheduler = scheduler(record_missed)
