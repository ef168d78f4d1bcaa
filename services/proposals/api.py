"""Proposals HTTP routes under ``/proposals`` (contract: Proposals, plus the extensions marked)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared import access
from shared.access import READERS, Caller, Forbidden, Principal, allow, only_own, only_self
from shared.domain import NotFound, Refused
from shared.fields import Day, Flag, Line, Name, Phone, Text, Year, items
from shared.forms import ContentType
from shared.http import ACCESS_RESPONSES, IDEMPOTENT, Command, Created
from shared.pages import LIMIT, link_next
from shared.service import Service

from services.proposals import projections as q
from services.proposals.application import ProposalsApplication
from services.proposals.domain import (
    Category, Collective, ConsultationMode, Duty, Kind, Member, Proposal, Rating, ReviewDecision,
)

#: Proposers of one joint proposal (联名), units of one assignment, proposals in one digest.
MAX_PROPOSERS = 100
MAX_UNITS = 50
MAX_DIGEST = 200


class ProposerIn(Command):
    name: Name
    sector: Name | None = Field(None, description="界别 (CPPCC) or 代表团 (NPC)")
    phone: Phone | None = Field(None, description="contact for the handling unit; never published or sent out")


class CollectiveIn(Command):
    kind: Collective
    name: Name = Field(description="e.g. 经济界, 民建县委, 县政协社会法制委员会")


class ProposalIn(Command):
    title: Line
    content: Text
    kind: Kind
    proposers: items(ProposerIn, MAX_PROPOSERS, least=0) = Field(  # type: ignore[valid-type]
        default_factory=list, description="one member or deputy, or several jointly (联名)")
    collective: CollectiveIn | None = Field(None, description="a collective proposer (集体提案)")
    from_opinion_id: UUID | None = Field(None, description="an opinion taken up as a proposal (003 二(五))")


class ReviewIn(Command):
    decision: ReviewDecision
    reviewed_by: Name
    meeting: Name | None = Field(None, description="the review meeting (提案审查会议)")
    reason: Text | None = Field(None, validate_default=True, description="required unless filed")
    key: Flag = Field(False, description="a key proposal (重点提案)")
    face_to_face: Flag = Field(False, description="handled face to face (面对面办理)")
    topic_id: UUID | None = Field(None, validate_default=True,
                                  description="to_opinion: the consultation topic the opinion is on")
    addressed_to: Name | None = Field(None, description="to_opinion: who answers, when the topic has "
                                      "no lead department yet")

    @field_validator("reason")
    @classmethod
    def reason_unless_filed(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("decision") not in (None, ReviewDecision.filed):
            raise PydanticCustomError("reason_required", "a reason is required unless the proposal is filed")
        return v

    @field_validator("topic_id")
    @classmethod
    def topic_for_opinion(cls, v: UUID | None, info: ValidationInfo) -> UUID | None:
        if v is None and info.data.get("decision") == ReviewDecision.to_opinion:
            raise PydanticCustomError("topic_required", "a proposal turned into an opinion names its topic")
        return v


class AssignmentIn(Command):
    lead_unit: Name
    co_units: items(Name, MAX_UNITS, least=0) = Field(default_factory=list)  # type: ignore[valid-type]
    due_on: Day | None = Field(None, description="else the local policy's working days from today")
    leader: Name | None = Field(None, description="key proposals: the government leader who leads (领办)")
    supervisor: Name | None = Field(None, description="key proposals: the CPPCC chair or vice-chair (督办)")
    assigned_by: Name = Field("人大、政府、政协共同交办会", description="the joint assignment meeting (共同交办会)")


class CoUnitViewIn(Command):
    unit: Name
    view: Text


class ConsultationIn(Command):
    mode: ConsultationMode
    held_on: Day
    proposer_view: Text = Field(description="what the proposer said (征求提案人意见)")
    unit: Name | None = Field(None, description="the unit that consulted; the lead unit if not given")


class ReplyIn(Command):
    category: Category = Field(description="A 已解决/采纳, B 正在解决/列入计划, C 暂不能解决/留作参考 "
                               "(national practice)")
    content: Text
    unit: Name


class RatingIn(Command):
    rating: Rating
    comment: Text | None = Field(None, validate_default=True, description="required when unsatisfied")
    rated_by: Name | None = Field(None, description="the proposer rating; the first proposer if not given")

    @field_validator("comment")
    @classmethod
    def comment_when_unsatisfied(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("rating") == Rating.unsatisfied:
            raise PydanticCustomError("comment_required", "an unsatisfied rating says why")
        return v


class ConversionIn(Command):
    converted_by: Name
    content_type: ContentType = Field(ContentType.other, description="the topic's content type (catalog)")
    title: Line | None = Field(None, description="the topic's title, if not the proposal's (the catalog "
                               "takes titles of 200 characters at most)")


class PublicationIn(Command):
    published_by: Name = "政协提案委员会"


class DigestIn(Command):
    title: Name
    summary: Text
    proposal_ids: items(UUID, MAX_DIGEST)  # type: ignore[valid-type]
    compiled_by: Name = "政协办公室"
    submitted_to: items(Name, MAX_UNITS) = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["县委办公室", "政府办公室"])


class MemberIn(Command):
    name: Name
    sector: Name
    employer: Name | None = Field(None, description="本人所在单位, who is told of attendance")
    term: Name = Field(description="e.g. 第十五届")
    term_from: Year
    term_to: Year
    registered_by: Name | None = None


class DutyIn(Command):
    year: Year
    duty: Duty
    title: Line | None = None
    on: Day | None = None
    recorded_by: Name | None = None

    @model_validator(mode="after")
    def title_for_documents(self) -> DutyIn:
        if self.duty is not Duty.plenary_attendance and self.title is None:
            raise PydanticCustomError("title_required", "title: a report, speech or activity is named")
        return self


def proposal_out(p: Proposal) -> dict[str, Any]:
    """The official record (the proposals service's own): contact details included."""
    return {"id": str(p.id), "title": p.title, "content": p.content, "kind": p.kind, "proposers": p.proposers,
            "collective": p.collective, "submitted_by": p.submitted_by, "submitted_on": p.submitted_on,
            "opinion_id": p.opinion_id, "status": p.status, "review": p.review, "key": p.key,
            "face_to_face": p.face_to_face, "assignment": p.assignment, "co_unit_views": p.co_unit_views,
            "round": p.round, "rounds": p.rounds, "due": p.deadlines, "conversion": p.conversion,
            "topic_id": p.linked_topic, "published": p.published, "version": p.version}


def member_out(m: Member) -> dict[str, Any]:
    return {"id": str(m.id), "name": m.name, "sector": m.sector, "employer": m.employer, "term": m.term,
            "term_from": m.term_from, "term_to": m.term_to, "duties": m.duties}


A = access.Role
#: The office that runs each kind: the CPPCC office proposals (提案), the NPC office suggestions (建议).
KIND_OFFICE = {Kind.cppcc_proposal: A.cppcc_office, Kind.npc_suggestion: A.npc_office}
PROPOSAL_OFFICES = (A.cppcc_office, A.npc_office)
#: Who oversees handling (交办, 督办) besides the two offices.
OVERSIGHT = (*PROPOSAL_OFFICES, A.government_office, A.party_office)


def office_keeps(who: Principal, kind: str, what: str = "handled") -> None:
    """The CPPCC office keeps proposals, the NPC office suggestions (an office's own kind only)."""
    office = KIND_OFFICE[Kind(kind)]
    if who.role in PROPOSAL_OFFICES and who.role is not office:
        raise Forbidden(f"A {kind.replace('_', ' ')} is {what} by the {office.value.replace('_', ' ')}.",
                        "not_yours")


def units_of(p: Proposal) -> list[str]:
    assignment = p.assignment or {}
    return [u for u in [assignment.get("lead_unit"), *assignment.get("co_units", [])] if u]


def proposer_names(p: Proposal) -> list[str]:
    return [str(x.get("name")) for x in p.proposers]


def routes(service: Service) -> APIRouter:
    app: ProposalsApplication = service.app  # type: ignore[assignment]
    views = service.views
    r = service.api_router(responses=ACCESS_RESPONSES)

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    async def record(proposal_id: str) -> dict[str, Any]:
        return proposal_out(await run(app.proposal, proposal_id))

    async def visible(who: Principal, proposal_id: str, kept: bool = False) -> Proposal:
        """The proposal, if this caller may see it: its units, its proposers, or an office (with
        ``kept``, only the office that keeps its kind)."""
        p: Proposal = await run(app.proposal, proposal_id)
        if kept:
            office_keeps(who, p.kind)
        only_own(who, *units_of(p), what=f"Proposal {proposal_id}")
        if who.role is A.member and who.name not in proposer_names(p):
            raise Forbidden(f"Proposal {proposal_id} is not one of yours; a member sees their own proposals.",
                            "not_yours")
        return p

    async def kept_by(who: Principal, proposal_id: str) -> Proposal:
        """The proposal, if this caller is not the other office."""
        p: Proposal = await run(app.proposal, proposal_id)
        office_keeps(who, p.kind)
        return p

    # -- the pipeline ---------------------------------------------------------------------
    @r.post("", status_code=201, response_model=Created,
            summary="Submit a proposal (提案) or suggestion (建议): alone, jointly (联名) or by a body",
            dependencies=[*allow(PROPOSAL_OFFICES, A.member), IDEMPOTENT])
    async def submit(body: ProposalIn, who: Principal = Caller) -> Created:
        office_keeps(who, body.kind.value, "entered")
        opinion_id = str(body.from_opinion_id) if body.from_opinion_id else None
        opinion = await run(q.known_opinion, views, opinion_id) if opinion_id else None
        proposal_id = await run(
            app.submit, opinion, title=body.title, content=body.content, kind=body.kind,
            proposers=[p.model_dump(exclude_none=True) for p in body.proposers],
            collective=body.collective.model_dump() if body.collective else None, opinion_id=opinion_id)
        return Created(id=proposal_id)

    @r.get("/{proposal_id}", summary="One proposal: the official record, every round, the topic it became",
           dependencies=allow(READERS, A.member))
    async def get_proposal(proposal_id: str, who: Principal = Caller) -> dict[str, Any]:
        return proposal_out(await visible(who, proposal_id))

    @r.post("/{proposal_id}/review",
            summary="Review meeting (提案审查会议): filed, not filed (reason), or turned into an opinion",
            dependencies=allow(PROPOSAL_OFFICES))
    async def review(proposal_id: str, body: ReviewIn, who: Principal = Caller) -> dict[str, Any]:
        await kept_by(who, proposal_id)
        target = None
        if body.decision is ReviewDecision.to_opinion:
            topic_id = str(body.topic_id)
            topic = await run(q.known_topic, views, topic_id)
            if topic is None or topic["status"] != "accepted":
                raise Refused(f"Topic {topic_id} is not an accepted topic known to the proposals service "
                              "(it learns topics from the catalog's events; one accepted moments ago may "
                              "still be on its way).", rule="unknown_topic")
            addressed_to = body.addressed_to or topic.get("lead_department")
            if not addressed_to:
                raise Refused("No department is known to answer the opinion: the topic is in no plan "
                              "yet. Name it in addressed_to.", rule="no_answering_department")
            target = {"topic_id": topic_id, "addressed_to": addressed_to}
        await run(app.review, proposal_id, body.decision, body.reason, body.reviewed_by, body.meeting,
                  body.key, body.face_to_face, target)
        return await record(proposal_id)

    @r.post("/{proposal_id}/assignment",
            summary="Assignment (交办) at the joint meeting: lead unit, co-units, due date, 领办 and 督办",
            dependencies=allow(PROPOSAL_OFFICES, A.government_office))
    async def assign(proposal_id: str, body: AssignmentIn, who: Principal = Caller) -> dict[str, Any]:
        await kept_by(who, proposal_id)
        await run(app.assign, proposal_id, body.lead_unit, body.co_units, body.due_on, body.leader,
                  body.supervisor, body.assigned_by)
        return await record(proposal_id)

    @r.post("/{proposal_id}/co-unit-views", summary="Extension: a co-unit's view to the lead unit (协办意见)",
            dependencies=allow(A.department))
    async def co_unit_view(proposal_id: str, body: CoUnitViewIn, who: Principal = Caller) -> dict[str, Any]:
        await visible(who, proposal_id)
        await run(app.co_unit_view, proposal_id, body.unit, body.view)
        return await record(proposal_id)

    @r.post("/{proposal_id}/handling-consultation",
            summary="Consultation with the proposer (批办, 现场, 联合, 面对面): required before the reply",
            dependencies=allow(PROPOSAL_OFFICES, A.department))
    async def consult(proposal_id: str, body: ConsultationIn, who: Principal = Caller) -> dict[str, Any]:
        p = await kept_by(who, proposal_id)
        if who.role is A.department:
            only_own(who, (p.assignment or {}).get("lead_unit"), what=f"Handling proposal {proposal_id}")
        await run(app.consult, proposal_id, body.mode, body.held_on, body.proposer_view, body.unit)
        return await record(proposal_id)

    @r.post("/{proposal_id}/reply", summary="The lead unit's reply (答复): category A, B or C",
            dependencies=allow(A.department))
    async def reply(proposal_id: str, body: ReplyIn, who: Principal = Caller) -> dict[str, Any]:
        await visible(who, proposal_id)
        await run(app.reply, proposal_id, body.category, body.content, body.unit)
        return await record(proposal_id)

    @r.post("/{proposal_id}/rating", summary="The proposer rates the reply; unsatisfied reopens handling once",
            dependencies=allow(PROPOSAL_OFFICES, A.member))
    async def rate(proposal_id: str, body: RatingIn, who: Principal = Caller) -> dict[str, Any]:
        await visible(who, proposal_id, kept=True)
        await run(app.rate, proposal_id, body.rating, body.comment, body.rated_by)
        return await record(proposal_id)

    @r.post("/{proposal_id}/conversion", status_code=202,
            summary="Convert a filed proposal into a consultation topic; the catalog answers through Kafka",
            dependencies=allow(PROPOSAL_OFFICES))
    async def convert(proposal_id: str, body: ConversionIn, who: Principal = Caller) -> dict[str, Any]:
        await kept_by(who, proposal_id)
        attempt = await run(app.convert, proposal_id, body.converted_by, body.content_type, body.title)
        return {"id": proposal_id, "attempt": attempt, "status": "requested",
                "detail": "The catalog creates the topic and says so on its topic; GET this proposal "
                          "for the topic id, or for why the catalog refused."}

    @r.post("/{proposal_id}/publication", summary="Extension: publish the proposal and its results (公开)",
            dependencies=allow(PROPOSAL_OFFICES))
    async def publish(proposal_id: str, body: PublicationIn, who: Principal = Caller) -> dict[str, Any]:
        await kept_by(who, proposal_id)
        await run(app.publish, proposal_id, body.published_by)
        return await record(proposal_id)

    @r.post("/digests", status_code=201, response_model=Created,
            summary="Extension: a key-proposal digest (重要提案摘报) to the Party committee and government",
            dependencies=[*allow(PROPOSAL_OFFICES), IDEMPOTENT])
    async def digest(body: DigestIn) -> Created:
        return Created(id=await run(app.submit_digest, body.title, body.summary,
                                    [str(i) for i in body.proposal_ids], body.compiled_by, body.submitted_to))

    # -- members ---------------------------------------------------------------------------
    @r.post("/members", status_code=201, response_model=Created,
            summary="Extension: register a CPPCC member (委员) and their term, for the duty record",
            dependencies=allow(PROPOSAL_OFFICES))
    async def register(body: MemberIn) -> Created:
        return Created(id=await run(app.register_member, **body.model_dump()))

    @r.get("/members/{member}", summary="Extension: a member (by id or name) and their recorded duties",
           dependencies=allow(PROPOSAL_OFFICES, A.party_office, A.auditor, A.member))
    async def get_member(member: str, who: Principal = Caller) -> dict[str, Any]:
        found = await run(app.member, member)
        only_self(who, found.name, what="This duty record")
        return member_out(found)

    @r.post("/members/{member}/duties", status_code=201, response_model=Created,
            summary="Record a duty of the \"五个一\" (plenary, 社情民意, activity, speech, research report)",
            dependencies=allow(PROPOSAL_OFFICES))
    async def record_duty(member: str, body: DutyIn) -> Created:
        await run(app.record_duty, member, body.year, body.duty, body.title, body.on, body.recorded_by)
        return Created(id=str((await run(app.member, member)).id))

    # -- views -----------------------------------------------------------------------------
    @r.get("/views/pipeline", summary="Extension: the CPPCC office's pipeline by status, sector, key, face to face",
           dependencies=allow(OVERSIGHT, A.auditor))
    async def pipeline(status: str | None = None, sector: str | None = None, key: bool | None = None,
                       face_to_face: bool | None = None) -> dict[str, Any]:
        return await run(q.pipeline, views, status, sector, key, face_to_face)

    @r.get("/views/units/{unit}", summary="Extension: a handling unit's replies due (working days left or "
           "overdue) and co-unit views owed", dependencies=allow(READERS))
    async def unit(unit: str, who: Principal = Caller) -> dict[str, Any]:
        only_own(who, unit, what=f"The queue of {unit}")
        return await run(q.unit_queue, views, unit, app.clock.today(), app.calendar)

    @r.get("/views/proposers/{name}", summary="Extension: a proposer's own proposals",
           dependencies=allow(PROPOSAL_OFFICES, A.auditor, A.member))
    async def proposer(name: str, who: Principal = Caller) -> list[dict[str, Any]]:
        only_self(who, name, what=f"The proposals of {name}")
        return await run(q.proposer_proposals, views, name)

    @r.get("/views/assessment", summary="Extension: assessment of handling units (办理考评)",
           dependencies=allow(OVERSIGHT, A.auditor))
    async def assessment() -> dict[str, Any]:
        return await run(q.assessment, views)

    @r.get("/views/supervision", summary="Extension: overdue replies and key proposals (领办, 督办)",
           dependencies=allow(OVERSIGHT, A.auditor))
    async def supervision() -> dict[str, Any]:
        return await run(q.supervision, views, app.clock.today(), app.calendar)

    @r.get("/views/duties/{year}", summary="Every member's \"五个一\" record and who falls short (001 §23)",
           dependencies=allow(PROPOSAL_OFFICES, A.party_office, A.auditor))
    async def duties(year: int) -> dict[str, Any]:
        return await run(q.duties, views, _year(year))

    @r.get("/views/duties/{year}/attendance/{recipient}",
           summary="Extension: attendance as reported to 组织部门, 统战部门 or the member's employer",
           dependencies=allow(PROPOSAL_OFFICES, A.party_office, A.auditor))
    async def attendance(year: int, recipient: Literal["organization_department", "united_front_department",
                                                       "employer"], employer: str | None = None) -> dict[str, Any]:
        if recipient == "employer" and not employer:
            raise Refused("The report to an employer names the employer (?employer=).", rule="employer_required")
        return await run(q.attendance, views, _year(year), recipient, employer)

    @r.get("/views/known-topics/{topic_id}", summary="Extension: what this service learned of a topic",
           dependencies=allow(READERS))
    async def known(topic_id: str) -> dict[str, Any]:
        topic = await run(q.known_topic, views, topic_id)
        if topic is None:
            raise NotFound(f"Topic {topic_id} is not known to the proposals service (yet)")
        return topic

    @r.get("/public/proposals", summary="Extension: published proposals and their results (no contact data), "
                                         "a page at a time")
    async def public(request: Request, response: Response, after: UUID | None = None,
                     limit: int = LIMIT) -> list[dict[str, Any]]:
        items, following = await run(q.public_proposals, views, str(after) if after else None, limit)
        link_next(request, response, following, limit=limit)
        return items

    return r


def _year(year: int) -> int:
    if not 2000 <= year <= 2100:
        raise NotFound(f"No duty records for year {year}")
    return year
