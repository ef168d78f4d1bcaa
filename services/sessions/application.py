"""Sessions commands: each method loads an aggregate, applies one decision, saves.

Dates that a rule turns on ("today", the working-day calendar) come from the
application, so the domain stays pure and tests can move the clock.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from eventsourcing.persistence import RecordConflictError

from shared import idempotency
from shared.application import ServiceApplication
from shared.clock import Clock
from shared.config import Settings
from shared.logs import get_logger
from shared.pseudonyms import Pseudonyms
from shared.workdays import WorkingCalendar

from services.sessions.domain import Exemption, Session

log = get_logger("sessions")

#: Who the scheduler says noticed a missed deadline (the trace's actor).
SCHEDULER = "sessions-deadline-scheduler"


class SessionsApplication(ServiceApplication):
    """Sessions (协商活动), reports (协商报告), instructions (批示) and exemptions."""

    service = "sessions"
    outcomes = frozenset({"SessionHeld", "ReportSubmitted"})
    #: Minutes name speakers: they are published empty (``redact``).
    nullable = frozenset({"minutes"})
    #: Other departments see that a session was held and its public summary, not who came.
    outcome_withheld = {"SessionHeld": frozenset({"attendees"})}

    def __init__(self, settings: Settings, clock: Clock | None = None):
        super().__init__(settings, clock)
        # Bundled years plus any the operator dropped into CONSULT_CALENDAR_DIR.
        self.calendar = WorkingCalendar.load(settings.calendar_dir)
        self.pseudonyms = Pseudonyms.for_settings(settings)

    def participant_ref(self, name: str) -> str:
        """The same name gets the same ref in invitations and attendance, in every session."""
        return self.pseudonyms.ref("participant", name)

    # -- what leaves the store ---------------------------------------------------
    def redact(self, name: str, data: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """Participants' names stay here; events carry a keyed pseudonymous reference instead."""
        if name == "ParticipantsInvited":
            data = {**data, "participants": [
                {"ref": self.participant_ref(p["name"]), "role": p["role"],
                 "organization": p["organization"], "vetted": p["vetted"]}
                for p in data["participants"]
            ]}
        elif name == "SessionHeld":
            attendees = data.get("attendees", [])
            # Minutes name speakers: they stay here; the public summary is what goes out.
            data = {**data, "attendees": [self.participant_ref(a) for a in attendees],
                    "attendee_count": len(attendees), "minutes": None,
                    "public_summary": data.get("public_summary")}
        return data


    # -- sessions ----------------------------------------------------------------
    def schedule_session(self, planned: list[dict[str, Any]], **fields: Any) -> str:
        session = Session.schedule(planned, calendar=self.calendar, **fields)
        self.save(session)
        return str(session.id)

    def reschedule(self, session_id: str, scheduled_for: date, reason: str, decided_by: str) -> None:
        session = self.get(Session, session_id)
        session.reschedule(scheduled_for, reason, decided_by, self.calendar)
        self.save(session)

    def cancel(self, session_id: str, reason: str, decided_by: str) -> None:
        session = self.get(Session, session_id)
        session.cancel(reason, decided_by)
        self.save(session)

    def invite(self, session_id: str, participants: list[dict[str, Any]], invited_by: str | None) -> None:
        session = self.get(Session, session_id)
        session.invite(participants, invited_by, self.clock.today())
        self.save(session)

    def file_research(self, session_id: str, summary: str, filed_by: str) -> None:
        session = self.get(Session, session_id)
        session.file_research(summary, filed_by, self.clock.today())
        self.save(session)

    def serve_notice(self, session_id: str, served_on: date, materials: list[str],
                     served_by: str | None) -> dict[str, Any]:
        session = self.get(Session, session_id)
        session.serve_notice(served_on, materials, served_by, self.calendar, self.clock.today())
        self.save(session)
        assert session.notice is not None
        return session.notice

    def hold(self, session_id: str, **fields: Any) -> None:
        session = self.get(Session, session_id)
        session.hold(**fields, today=self.clock.today(), calendar=self.calendar)
        self.save(session)

    def form_opinion(self, session_id: str, summary: str, formed_by: str) -> None:
        session = self.get(Session, session_id)
        session.form_opinion(summary, formed_by, self.clock.today(), self.calendar)
        self.save(session)

    def compile_report(self, session_id: str, summary: str, compiled_by: str, opinion_ids: list[str],
                       published: dict[str, str | None]) -> None:
        session = self.get(Session, session_id)
        session.compile_report(summary, compiled_by, opinion_ids, published, self.clock.today())
        self.save(session)

    def submit_report(self, session_id: str, submitted_to: list[str], submitted_by: str | None) -> None:
        session = self.get(Session, session_id)
        session.submit_report(submitted_to, submitted_by, self.clock.today())
        self.save(session)

    def issue_instruction(self, session_id: str, leader: str, text: str, departments: list[str]) -> str:
        session = self.get(Session, session_id)
        instruction_id = session.issue_instruction(leader, text, departments, self.clock.today())
        if not session.pending_events:
            idempotency.replayed()  # the same request sent again: issued the first time
        self.save(session)
        return instruction_id

    def report_implementation(self, session_id: str, instruction_id: str, department: str, note: str,
                              reported_by: str | None) -> None:
        session = self.get(Session, session_id)
        session.report_implementation(instruction_id, department, note, reported_by, self.clock.today())
        self.save(session)

    # -- exemptions --------------------------------------------------------------
    def record_exemption(self, **fields: Any) -> str:
        exemption = Exemption.record(**fields)
        self.save(exemption)
        return str(exemption.id)

    # -- deadlines ---------------------------------------------------------------
    def record_missed_deadlines(self, session_ids: list[str]) -> list[tuple[str, str]]:
        """DeadlineMissed for every step of these sessions that went overdue, once each
        (after confirming provisional due dates the calendar now covers).

        The aggregate remembers what it already reported, so a second run (or a
        restart) emits nothing new; two schedulers racing on one session collide
        on the event version and the loser's save is dropped.
        """
        today = self.clock.today()
        missed: list[tuple[str, str]] = []
        for session_id in session_ids:
            session = self.get(Session, session_id)
            steps = session.review_deadlines(today, self.calendar, SCHEDULER)
            if not session.pending_events:
                continue
            try:
                self.save(session)
            except RecordConflictError:
                log.info("another scheduler recorded it first", session=session_id)
                continue
            missed += [(session_id, s.value) for s in steps]
        return missed
