"""Sessions HTTP routes under ``/sessions`` (contract: Sessions, plus the extensions marked)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared import access
from shared.access import OFFICES, READERS, Caller, Principal, allow, only_own
from shared.fields import Day, Flag, Line, Name, Text, items
from shared.forms import Form
from shared.http import ACCESS_RESPONSES, IDEMPOTENT, Command, Created
from shared.service import Service

from services.sessions import projections as q
from services.sessions.application import SessionsApplication
from services.sessions.domain import Exemption, ExemptionCategory, Role, Session

#: Participants invited in one request; a larger gathering is invited in several.
MAX_PARTICIPANTS = 200
#: Materials listed in one notice, attendees in one record, bodies or departments in one list.
MAX_MATERIALS = 100
MAX_ATTENDEES = 500
MAX_BODIES = 50
MAX_OPINIONS = 1_000


class UnplannedIn(Command):
    """A topic not in the year's plan that truly needs consultation (001 §9; 000 四)."""

    reason: Text
    decided_by: Name = Field(description="the body that decided to consult on it")
    kind: Literal["government", "cppcc", "cppcc_room", "village"] | None = Field(
        None, description="whose consultation it is: its rules (notice, deadlines, research) follow; "
        "if not given, the CPPCC's (001 §9) where the form suits it, else the first body whose forms do")


class ScheduleIn(Command):
    topic_id: UUID
    form: Form
    title: Name
    scheduled_for: Day
    lead_department: Name
    host: Name
    form_change_reason: Text | None = Field(
        None, description="required when the form differs from the plan's")
    unplanned: UnplannedIn | None = Field(None, description="the unplanned path, with its reason")
    date_change_reason: Text | None = Field(None, description="required when the date is outside the "
                                            "plan item's month")
    lead_department_change_reason: Text | None = Field(None, description="required when the lead "
                                                       "department is not the plan item's")


class RescheduleIn(Command):
    scheduled_for: Day
    reason: Text
    decided_by: Name


class CancellationIn(Command):
    reason: Text
    decided_by: Name


class Participant(Command):
    name: Name
    role: Role
    organization: Name
    vetted: Flag = Field(False, description="vetted (审核) — required for grassroots rooms")
    vetted_by: Name | None = None


class InvitationsIn(Command):
    participants: items(Participant, MAX_PARTICIPANTS) = Field(  # type: ignore[valid-type]
        description=f"at most {MAX_PARTICIPANTS} per request")
    invited_by: Name | None = None


class ResearchIn(Command):
    summary: Text
    filed_by: Name


class NoticeIn(Command):
    served_on: Day
    materials: items(Line, MAX_MATERIALS) = Field(  # type: ignore[valid-type]
        description="titles of the materials sent")
    served_by: Name | None = None


class HeldIn(Command):
    held_on: Day
    attendees: items(Name, MAX_ATTENDEES)  # type: ignore[valid-type]
    minutes: Text = Field(description="纪要: internal, it names speakers; it never leaves the sessions store")
    public_summary: Text | None = Field(None, description="what the public and other departments read")
    minutes_internal: Flag = Field(True, description="kept for older clients: minutes are always internal")
    notice_waiver_reason: Text | None = None
    recorded_by: Name | None = None


class OpinionIn(Command):
    summary: Text
    formed_by: Name


class ReportIn(Command):
    summary: Text
    compiled_by: Name
    opinion_ids: items(UUID, MAX_OPINIONS, least=0)  # type: ignore[valid-type]


class SubmissionIn(Command):
    submitted_to: items(Name, MAX_BODIES) = Field(  # type: ignore[valid-type]
        description="e.g. 县委, 县政府")
    submitted_by: Name | None = None


class InstructionIn(Command):
    leader: Name
    text: Text
    departments: items(Name, MAX_BODIES)  # type: ignore[valid-type]


class ImplementationIn(Command):
    department: Name
    note: Text
    reported_by: Name | None = None


class ExemptionIn(Command):
    decision: Text
    category: ExemptionCategory
    reason: Text
    decided_by: Name
    department: Name
    decided_on: Day
    topic_id: UUID | None = None
    urgency: Text = Field(description="why the decision must be taken at once (需立即做出决策决定, 002 第十四条)")


class NoticeOut(BaseModel):
    served_on: date
    working_days_before: int
    notice_sufficient: bool
    provisional: bool
    years_without_data: list[int]
    materials: list[str]
    recorded_on: date | None = None
    recorded_late: bool = Field(False, description="entered more than 2 working days after served_on")


def session_out(s: Session) -> dict[str, Any]:
    return {
        "id": str(s.id), "topic_id": s.topic_id, "title": s.title, "form": s.form,
        "status": s.status, "scheduled_for": s.scheduled_for, "lead_department": s.lead_department,
        "host": s.host, "plan_ids": s.plan_ids, "planned_forms": s.planned_forms,
        "form_change_reason": s.form_change_reason, "grassroots_room": s.grassroots_room,
        "body": s.body, "unplanned": s.unplanned, "date_change_reason": s.date_change_reason,
        "lead_department_change_reason": s.lead_department_change_reason,
        "research_required": s.research_required, "participants": s.participants,
        "research": s.research, "notice": s.notice, "earlier_notices": s.notices, "held": s.held,
        "due": {"notice_by": s.notice_by, **s.deadlines},
        "opinion": s.opinion, "report": s.report, "instructions": s.instructions,
        "cancellation": s.cancellation, "version": s.version,
    }


A = access.Role
#: Who runs a session: the offices that organise consultation, and its lead department.
RUNNERS = (A.government_office, A.cppcc_office, A.party_office, A.department)
#: Steps of a session, in handlers: checked against who leads it.
SESSION_STEP = allow(RUNNERS)


def departments_of(s: Session) -> set[str]:
    """The departments a session concerns: its lead, and each tasked by an instruction."""
    return {s.lead_department} | {d for i in s.instructions for d in i.get("departments", ())}


def routes(service: Service) -> APIRouter:
    app: SessionsApplication = service.app  # type: ignore[assignment]
    views = service.views
    r = service.api_router(responses=ACCESS_RESPONSES)

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    async def current(session_id: str) -> dict[str, Any]:
        return session_out(await run(app.get, Session, session_id))

    async def led_by(who: Principal, session_id: str) -> None:
        """A department acts only on the sessions it leads."""
        if who.role is A.department:
            s = await run(app.get, Session, session_id)
            only_own(who, s.lead_department, what=f"Session {session_id}")

    @r.post("", status_code=201, response_model=Created,
            summary="Schedule a session for a topic in an approved plan",
            dependencies=[*allow(RUNNERS), IDEMPOTENT])
    async def schedule(body: ScheduleIn, who: Principal = Caller) -> Created:
        only_own(who, body.lead_department, what="A session led by another department")
        topic_id = str(body.topic_id)
        planned = await run(q.planned, views, topic_id)
        fields = body.model_dump(exclude={"topic_id"})
        return Created(id=await run(app.schedule_session, planned, topic_id=topic_id, **fields))

    @r.get("/{session_id}", summary="One session, with its status and the due dates it is held to",
           dependencies=allow(READERS))
    async def get_session(session_id: str, who: Principal = Caller) -> dict[str, Any]:
        s = await run(app.get, Session, session_id)
        only_own(who, *departments_of(s), what=f"Session {session_id}")
        return session_out(s)

    @r.post("/{session_id}/reschedule", summary="Extension: move the session to another date (改期), with reason",
            dependencies=SESSION_STEP)
    async def reschedule(session_id: str, body: RescheduleIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.reschedule, session_id, body.scheduled_for, body.reason, body.decided_by)
        return await current(session_id)

    @r.post("/{session_id}/cancellation", summary="Extension: cancel a session before it is held, with reason",
            dependencies=SESSION_STEP)
    async def cancellation(session_id: str, body: CancellationIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.cancel, session_id, body.reason, body.decided_by)
        return await current(session_id)

    @r.post("/{session_id}/invitations", summary="Invite participants by role (协商对象)",
            dependencies=SESSION_STEP)
    async def invite(session_id: str, body: InvitationsIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        people = [p.model_dump() for p in body.participants]
        await run(app.invite, session_id, people, body.invited_by)
        return await current(session_id)

    @r.post("/{session_id}/research", summary="File the research report (调研报告)",
            dependencies=SESSION_STEP)
    async def research(session_id: str, body: ResearchIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.file_research, session_id, body.summary, body.filed_by)
        return await current(session_id)

    @r.post("/{session_id}/notice", response_model=NoticeOut,
            summary="Serve notice and materials; counts official working days before the session",
            dependencies=SESSION_STEP)
    async def notice(session_id: str, body: NoticeIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        return await run(app.serve_notice, session_id, body.served_on, body.materials, body.served_by)

    @r.post("/{session_id}/held", summary="Record the session as held (date, attendees, minutes)",
            dependencies=SESSION_STEP)
    async def held(session_id: str, body: HeldIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.hold, session_id, **body.model_dump())
        return await current(session_id)

    @r.post("/{session_id}/consultation-opinion",
            summary="Extension: the lead department's consultation opinion (协商意见), due 5 working days after",
            dependencies=SESSION_STEP)
    async def opinion(session_id: str, body: OpinionIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.form_opinion, session_id, body.summary, body.formed_by)
        return await current(session_id)

    @r.post("/{session_id}/report", summary="Compile the consultation report (协商报告)",
            dependencies=SESSION_STEP)
    async def report(session_id: str, body: ReportIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        opinion_ids = list(dict.fromkeys(str(i) for i in body.opinion_ids))
        published = await run(q.published_opinions, views, opinion_ids)
        await run(app.compile_report, session_id, body.summary, body.compiled_by, opinion_ids, published)
        return await current(session_id)

    @r.post("/{session_id}/report/submission",
            summary="Submit the report to the Party committee and government (报送)",
            dependencies=SESSION_STEP)
    async def submission(session_id: str, body: SubmissionIn, who: Principal = Caller) -> dict[str, Any]:
        await led_by(who, session_id)
        await run(app.submit_report, session_id, body.submitted_to, body.submitted_by)
        return await current(session_id)

    @r.post("/{session_id}/instructions", status_code=201, response_model=Created,
            summary="Record a leader's instruction (批示) and the departments tasked",
            dependencies=[*allow(A.party_office, A.government_office), IDEMPOTENT])
    async def instruct(session_id: str, body: InstructionIn) -> Created:
        return Created(id=await run(app.issue_instruction, session_id, body.leader, body.text,
                                    body.departments))

    @r.post("/{session_id}/instructions/{instruction_id}/implementation",
            summary="Extension: a tasked department reports implementation, copied to the CPPCC office",
            dependencies=allow(A.government_office, A.department))
    async def implementation(session_id: str, instruction_id: str, body: ImplementationIn,
                             who: Principal = Caller) -> dict[str, Any]:
        only_own(who, body.department, what=f"Reporting for {body.department}")
        await run(app.report_implementation, session_id, instruction_id, body.department, body.note,
                  body.reported_by)
        return await current(session_id)

    # -- emergency exemption (002 第十四条) ----------------------------------------
    @r.post("/exemptions", status_code=201, response_model=Created,
            summary="Extension: record a decision exempt from consultation, with category and reason",
            dependencies=[*allow(A.party_office, A.government_office), IDEMPOTENT])
    async def exemption(body: ExemptionIn) -> Created:
        fields = body.model_dump()
        fields["topic_id"] = str(body.topic_id) if body.topic_id else None
        return Created(id=await run(app.record_exemption, **fields))

    @r.get("/exemptions/{exemption_id}", summary="Extension: one recorded exemption",
           dependencies=allow(OFFICES, A.auditor))
    async def get_exemption(exemption_id: str) -> dict[str, Any]:
        e = await run(app.get, Exemption, exemption_id)
        return {"id": str(e.id), "decision": e.decision, "category": e.category, "reason": e.reason,
                "decided_by": e.decided_by, "department": e.department, "decided_on": e.decided_on,
                "topic_id": e.topic_id, "urgency": e.urgency}

    # -- views -------------------------------------------------------------------
    @r.get("/views/planned-topics/{topic_id}",
           summary="The approved plan items holding a topic, as this service learned them from Kafka",
           dependencies=allow(READERS))
    async def planned_topic(topic_id: str) -> list[dict[str, Any]]:
        return await run(q.planned, views, topic_id)

    @r.get("/views/departments/{department}/agenda", summary="A lead department's agenda",
           dependencies=allow(READERS))
    async def agenda(department: str, who: Principal = Caller) -> dict[str, Any]:
        only_own(who, department, what=f"The agenda of {department}")
        return await run(q.department_agenda, views, department)

    @r.get("/views/supervision",
           summary="Government office supervision list (督办): overdue steps, waivers, exemptions",
           dependencies=allow(OFFICES, A.auditor))
    async def supervision() -> dict[str, Any]:
        return await run(q.supervision, views, app.clock.today(), app.calendar)

    @r.get("/views/awaiting-instruction", summary="Party committee office: reports awaiting instruction",
           dependencies=allow(A.party_office, A.government_office, A.auditor))
    async def awaiting() -> list[dict[str, Any]]:
        return await run(q.awaiting_instruction, views)

    @r.get("/views/cppcc-office/implementation",
           summary="CPPCC office: instructions and the implementation copied back to it",
           dependencies=allow(A.cppcc_office, A.party_office, A.government_office, A.auditor))
    async def copies() -> list[dict[str, Any]]:
        return await run(q.implementation_copies, views)

    @r.get("/public/sessions", summary="The public's held sessions (no internal minutes)")
    async def public() -> list[dict[str, Any]]:
        return await run(q.public_sessions, views)

    return r
