"""Feedback HTTP routes under ``/feedback`` (contract: Feedback, plus the extensions marked)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from shared import access
from shared.access import OFFICES, PERSONS, READERS, STAFF, Caller, Forbidden, Principal, allow, only_own, only_self
from shared.domain import NotFound
from shared.fields import Day, Flag, IdNumber, Line, Name, Phone, Score, Text, items
from shared.http import ACCESS_RESPONSES, IDEMPOTENT, Command, Created
from shared.pages import LIMIT, link_next
from shared.service import Service
from shared.stores import ViewStore

from services.feedback import projections as q
from services.feedback.application import FeedbackApplication
from services.feedback.domain import (
    Category, Channel, Conclusion, Decision, DecisionKind, Disposition, Effect, ExemptionGround,
    Judgement, Opinion, PlatformLevel, PolicyArea, Rating, Tier,
)

MAX_PARTICIPANTS = 100


class FeedbackChannel(StrEnum):
    """How the answer reached the contributor (反馈方式)."""

    phone = "phone"
    sms = "sms"
    letter = "letter"
    online = "online"
    in_person = "in_person"
    platform = "platform"  # 说事平台
    meeting = "meeting"


class AuthorIn(Command):
    """The contributor. Name, phone, ID number and address are sealed under the person's
    own key; events and views carry only a pseudonymous reference."""

    name: Name
    phone: Phone | None = None
    id_number: IdNumber | None = None
    address: Line | None = None
    organization: Name | None = None


def _grassroots(info: ValidationInfo) -> bool:
    return info.data.get("channel") == Channel.grassroots


class OpinionIn(Command):
    channel: Channel
    topic_id: UUID | None = Field(None, validate_default=True,
                                  description="required unless a grassroots item (开单)")
    session_id: UUID | None = Field(None, validate_default=True, description="required for in_session")
    platform_level: PlatformLevel | None = Field(None, validate_default=True,
                                                 description="grassroots only, and required there")
    platform: Name | None = Field(None, description="the platform's name, e.g. 某村说事站 (grassroots)")
    category: Category | None = Field(None, validate_default=True,
                                      description="grassroots only; required without a topic")
    author: AuthorIn
    content: Text
    confidential: Flag = Field(False, description="privacy matters handled point to point (点对点)")
    addressed_to: Name | None = Field(None, description="the department that answers, when the "
                                      "topic's lead department or the platform does not")

    @field_validator("channel")
    @classmethod
    def not_a_proposal(cls, v: Channel) -> Channel:
        if v is Channel.proposal:
            raise PydanticCustomError("channel_reserved", "'proposal' opinions come from a proposal's review "
                                      "(POST /proposals/{id}/review with decision to_opinion), not from here")
        return v

    @field_validator("topic_id")
    @classmethod
    def topic_unless_grassroots(cls, v: UUID | None, info: ValidationInfo) -> UUID | None:
        if v is None and "channel" in info.data and not _grassroots(info):
            raise PydanticCustomError("topic_required", "only grassroots items (开单) may come without a topic")
        return v

    @field_validator("session_id")
    @classmethod
    def session_for_in_session(cls, v: UUID | None, info: ValidationInfo) -> UUID | None:
        if v is None and info.data.get("channel") == Channel.in_session:
            raise PydanticCustomError("session_required", "an opinion given in a session names the session")
        if v is not None and info.data.get("topic_id") is None:
            raise PydanticCustomError("topic_required", "a session's opinion names the session's topic too")
        return v

    @field_validator("platform_level")
    @classmethod
    def level_for_grassroots(cls, v: PlatformLevel | None, info: ValidationInfo) -> PlatformLevel | None:
        if v is None and _grassroots(info):
            raise PydanticCustomError("platform_level_required", "a grassroots item names its platform's level")
        if v is not None and "channel" in info.data and not _grassroots(info):
            raise PydanticCustomError("grassroots_only", "only grassroots items have a platform level")
        return v

    @field_validator("category")
    @classmethod
    def category_for_grassroots(cls, v: Category | None, info: ValidationInfo) -> Category | None:
        if v is None and _grassroots(info) and info.data.get("topic_id") is None:
            raise PydanticCustomError("category_required", "a grassroots item without a topic is classed "
                                      "personal, public_interest or administrative")
        if v is not None and "channel" in info.data and not _grassroots(info):
            raise PydanticCustomError("grassroots_only", "only grassroots items are classed")
        return v


def submit_opinion(app: FeedbackApplication, views: ViewStore, body: OpinionIn,
                   received_via: str | None = None, inbound_id: str | None = None) -> tuple[str, str]:
    """Submit an opinion: ``POST /feedback/opinions``, and the bus's ``SubmitOpinion``."""
    topic_id = str(body.topic_id) if body.topic_id else None
    session_id = str(body.session_id) if body.session_id else None
    topic = q.known_topic(views, topic_id) if topic_id else None
    session = q.known_session(views, session_id) if session_id else None
    fields = body.model_dump(exclude={"topic_id", "session_id", "author"})
    return app.submit_opinion(body.author.model_dump(), topic=topic, session=session, topic_id=topic_id,
                              session_id=session_id, received_via=received_via, inbound_id=inbound_id,
                              **fields)


class OpinionCreated(Created):
    author_ref: str = Field(description="the author's pseudonymous reference: their own view, erasure")


class AnswerIn(Command):
    disposition: Disposition
    answered_by: Name
    reason: Text | None = Field(None, validate_default=True,
                                description="required unless adopted (不采纳的说明理由)")

    @field_validator("reason")
    @classmethod
    def reason_unless_adopted(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("disposition") not in (None, Disposition.adopted):
            raise PydanticCustomError("reason_required", "a reason is required unless the opinion is adopted")
        return v


class FeedbackIn(Command):
    channel: FeedbackChannel
    message: Text
    delivered_by: Name


class SatisfactionIn(Command):
    rating: Rating
    comment: Text | None = None


class EscalationIn(Command):
    to: Name
    tier: Tier
    escalated_by: Name
    reason: Text


class ErasureIn(Command):
    requested_by: Name
    reason: Text


class ResultsIn(Command):
    summary: Text
    published_by: Name


class DecisionIn(Command):
    topic_id: UUID
    title: Name
    kind: DecisionKind
    area: PolicyArea = PolicyArea.other
    drafted_by: Name


class ExemptionIn(Command):
    ground: ExemptionGround
    reason: Text


class DeliberationIn(Command):
    submitted_by: Name
    exemption: ExemptionIn | None = None


class IssuanceIn(Command):
    issued_on: Day
    issued_by: Name


class InterpretationIn(Command):
    held_on: Day
    by: Name


class EvaluationIn(Command):
    topic_id: UUID
    decision_id: UUID | None = None
    effect: Effect
    satisfaction: Score
    operability: Judgement
    reasonableness: Judgement
    shortcomings: Text | None = None
    risks: Text | None = None
    suggestions: Text | None = None
    evaluator: Name = Field(description="a person: pseudonymised, the name sealed")


class PostEvaluationIn(Command):
    reason: Text
    opened_by: Name


class PostEvaluationReportIn(Command):
    conclusion: Conclusion
    summary: Text
    formed_by: Name = Field(description="the body that formed it collectively (集体讨论)")
    participants: items(Name, MAX_PARTICIPANTS, least=0) = Field(  # type: ignore[valid-type]
        default_factory=list, description="who took part in the collective discussion")


class Consultation(BaseModel):
    topic_id: str
    record: list[dict[str, Any]]
    unanswered: int
    totals: dict[str, int]


def decision_out(d: Decision) -> dict[str, Any]:
    return {"id": str(d.id), "topic_id": d.topic_id, "title": d.title, "kind": d.kind, "area": d.area,
            "drafted_by": d.drafted_by, "drafted_on": d.drafted_on, "status": d.status,
            "deliberation": d.deliberation, "issued": d.issued, "interpretation": d.interpretation,
            "due": d.deadlines, "evaluations": d.evaluations, "post_evaluation": d.post_evaluation,
            "version": d.version}


A = access.Role
#: The offices that take in opinions and see that contributors hear back (反馈).
DESK = (A.government_office, A.cppcc_office)
#: Who may read a contributor's contact details besides the contributor: the department
#: answering them and the offices that deliver feedback.
CONTACT_READERS = (*DESK, A.department)


def is_author(who: Principal, opinion: dict[str, Any]) -> bool:
    """``opinion`` (a record or a view's row) is this person's own."""
    ref = opinion.get("author_ref") or (opinion.get("author") or {}).get("ref")
    return who.role in PERSONS and ref is not None and ref == who.ref


def may_see_text(who: Principal, opinion: dict[str, Any]) -> bool:
    """A confidential opinion's text: its author and its answering department, nobody else."""
    if who.role in PERSONS:
        return is_author(who, opinion)
    return who.role is A.department and opinion.get("responsible") == who.department


def shown(who: Principal, record: dict[str, Any]) -> dict[str, Any]:
    """An opinion's record without what this caller may not see: a confidential text, and
    the contributor's contact details (for the author, the departments and the desk only)."""
    if record["confidential"] and not may_see_text(who, record):
        record = {**record, "content": None}
    if not (is_author(who, record) or who.role in CONTACT_READERS):
        author = record["author"]
        record = {**record, "author": {"ref": author.get("ref"), "organization": author.get("organization"),
                                       "erased": author.get("erased")}}
    return record


def routes(service: Service) -> APIRouter:
    app: FeedbackApplication = service.app  # type: ignore[assignment]
    views = service.views
    own_views = service.projections[q.FeedbackViews.name]
    r = service.api_router(responses=ACCESS_RESPONSES)

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    async def caught_up() -> None:
        """Wait (briefly) until the views hold every event stored so far: an adoption record
        is made from them, and must not miss an answer given a moment ago."""
        target = await run(app.max_position)
        for _ in range(200):
            if await run(own_views.position, app.service) >= target:
                return
            await asyncio.sleep(0.025)

    async def consultation(topic_id: str) -> dict[str, Any]:
        await caught_up()
        return await run(q.consultation, views, topic_id)

    async def with_texts(opinions: list[dict[str, Any]], who: Principal) -> list[dict[str, Any]]:
        """Confidential text, for the author and the answering department only."""
        hidden = [o["id"] for o in opinions if o and o["confidential"] and may_see_text(who, o)]
        texts = await run(app.confidential_texts, hidden) if hidden else {}
        return [{**o, "content": texts.get(o["id"], o["content"])} for o in opinions]

    async def opinion_for(who: Principal, opinion_id: str) -> dict[str, Any]:
        """The official record of an opinion, if this caller may see it (else 403)."""
        record = await run(app.opinion_record, opinion_id)
        if who.role in PERSONS and not is_author(who, record):
            raise Forbidden(f"Opinion {opinion_id} is not yours; you see only your own opinions.", "not_yours")
        only_own(who, record["responsible"], what=f"Opinion {opinion_id}")
        if record["confidential"] and not may_see_text(who, record):
            raise Forbidden(f"Opinion {opinion_id} is confidential (点对点): only its author and the department "
                            "answering it may see it.", "confidential")
        return shown(who, record)

    async def after(who: Principal, opinion_id: str) -> dict[str, Any]:
        """The record once a command is done, as far as this caller may see it."""
        return shown(who, await run(app.opinion_record, opinion_id))

    async def answering(who: Principal, opinion_id: str) -> None:
        """A department handles only the opinions assigned to it: read from the opinion itself,
        without opening its author's sealed data as the full record does."""
        if who.role is A.department:
            opinion: Opinion = await run(app.get, Opinion, opinion_id)
            only_own(who, opinion.responsible, what=f"Opinion {opinion_id}")

    async def own_opinion(who: Principal, opinion_id: str) -> None:
        if who.role in PERSONS:
            await opinion_for(who, opinion_id)

    async def drafted(who: Principal, decision_id: str) -> Decision:
        """A department acts on the decisions it drafts."""
        decision: Decision = await run(app.decision, decision_id)
        only_own(who, decision.drafted_by, what=f"Decision {decision_id}")
        return decision

    # -- opinions -------------------------------------------------------------------------
    @r.post("/opinions", status_code=201, response_model=OpinionCreated,
            summary="Submit an opinion (意见建议) or a grassroots item (开单)",
            dependencies=[*allow(STAFF, A.member, A.citizen), IDEMPOTENT])
    async def submit(body: OpinionIn) -> OpinionCreated:
        opinion_id, ref = await run(submit_opinion, app, views, body)
        return OpinionCreated(id=opinion_id, author_ref=ref)

    @r.get("/opinions/{opinion_id}", summary="One opinion: the official record, with its rounds",
           dependencies=allow(READERS, A.member, A.citizen))
    async def get_opinion(opinion_id: str, who: Principal = Caller) -> dict[str, Any]:
        return await opinion_for(who, opinion_id)

    @r.post("/opinions/{opinion_id}/escalation",
            summary="Escalate a grassroots item one tier (村社吹哨 队伍报道 / 乡镇吹哨 部门报道)",
            dependencies=allow(A.government_office, A.department))
    async def escalate(opinion_id: str, body: EscalationIn, who: Principal = Caller) -> dict[str, Any]:
        await answering(who, opinion_id)
        await run(app.escalate, opinion_id, body.to, body.tier, body.escalated_by, body.reason)
        return await after(who, opinion_id)

    @r.post("/opinions/{opinion_id}/answer", summary="Answer: adopted, partially adopted or not (with reason)",
            dependencies=allow(A.department))
    async def answer(opinion_id: str, body: AnswerIn, who: Principal = Caller) -> dict[str, Any]:
        await answering(who, opinion_id)
        await run(app.answer, opinion_id, body.disposition, body.reason, body.answered_by)
        return await after(who, opinion_id)

    @r.post("/opinions/{opinion_id}/feedback", summary="Deliver the feedback (反馈) to the contributor",
            dependencies=allow(DESK, A.department))
    async def feedback(opinion_id: str, body: FeedbackIn, who: Principal = Caller) -> dict[str, Any]:
        await answering(who, opinion_id)
        await run(app.deliver_feedback, opinion_id, body.channel, body.message, body.delivered_by)
        return await after(who, opinion_id)

    @r.post("/opinions/{opinion_id}/satisfaction",
            summary="The contributor's satisfaction; unsatisfied reopens the opinion for a second round",
            dependencies=allow(DESK, A.member, A.citizen))
    async def satisfaction(opinion_id: str, body: SatisfactionIn, who: Principal = Caller) -> dict[str, Any]:
        await own_opinion(who, opinion_id)
        await run(app.rate, opinion_id, body.rating, body.comment)
        return await after(who, opinion_id)

    # -- people -----------------------------------------------------------------------------
    @r.get("/authors/{ref}/opinions", summary="Extension: the author's own opinions and their status",
           dependencies=allow(DESK, A.member, A.citizen))
    async def author_view(ref: str, who: Principal = Caller) -> list[dict[str, Any]]:
        only_self(who, ref, what="These opinions")
        return await with_texts(await run(q.author_opinions, views, ref), who)

    @r.post("/authors/{ref}/erasure", status_code=201, response_model=Created,
            summary="Erase a person (crypto-shredding): their key is destroyed, the history stays",
            dependencies=[*allow(DESK, A.citizen), IDEMPOTENT])
    async def erase(ref: str, body: ErasureIn, who: Principal = Caller) -> Created:
        only_self(who, ref, what="This person's data")
        return Created(id=await run(app.erase_author, ref, body.requested_by, body.reason))

    # -- topics -----------------------------------------------------------------------------
    @r.get("/topics/{topic_id}/adoption-record", response_model=Consultation,
           summary="Extension: how each opinion on a topic was answered (意见采纳情况)",
           dependencies=allow(READERS, A.integration))
    async def adoption_record(topic_id: str) -> dict[str, Any]:
        return await consultation(topic_id)

    @r.post("/topics/{topic_id}/results", status_code=201, response_model=Created,
            summary="Publish the topic's results (结果反馈): what was adopted and why the rest was not",
            dependencies=allow(DESK))
    async def results(topic_id: str, body: ResultsIn) -> Created:
        record = await consultation(topic_id)
        return Created(id=await run(app.publish_results, topic_id, body.summary, body.published_by, record))

    # -- decisions --------------------------------------------------------------------------
    @r.post("/decisions", status_code=201, response_model=Created,
            summary="A decision, public policy or normative document drafted on a topic",
            dependencies=[*allow(A.government_office, A.department), IDEMPOTENT])
    async def draft(body: DecisionIn) -> Created:
        topic_id = str(body.topic_id)
        topic = await run(q.known_topic, views, topic_id)
        fields = body.model_dump(exclude={"topic_id"})
        return Created(id=await run(app.draft_decision, topic, topic_id=topic_id, **fields))

    @r.get("/decisions/{decision_id}", summary="Extension: one decision and where it stands",
           dependencies=allow(READERS))
    async def get_decision(decision_id: str, who: Principal = Caller) -> dict[str, Any]:
        return decision_out(await drafted(who, decision_id))

    @r.post("/decisions/{decision_id}/deliberation",
            summary="Submit to collective deliberation (集体审议): the adoption record attached, or an exemption",
            dependencies=allow(A.government_office, A.department))
    async def deliberation(decision_id: str, body: DeliberationIn, who: Principal = Caller) -> dict[str, Any]:
        decision = await drafted(who, decision_id)
        record = await consultation(decision.topic_id)
        exemption = body.exemption.model_dump() if body.exemption else None
        await run(app.deliberate, decision_id, body.submitted_by, record, exemption)
        return decision_out(await run(app.decision, decision_id))

    @r.post("/decisions/{decision_id}/issuance", summary="Issued (印发): interpretation due in 20 working days",
            dependencies=allow(A.government_office, A.department))
    async def issuance(decision_id: str, body: IssuanceIn, who: Principal = Caller) -> dict[str, Any]:
        await drafted(who, decision_id)
        await run(app.issue, decision_id, body.issued_on, body.issued_by)
        return decision_out(await run(app.decision, decision_id))

    @r.post("/decisions/{decision_id}/interpretation", summary="The drafting department's interpretation (解读)",
            dependencies=allow(A.government_office, A.department))
    async def interpretation(decision_id: str, body: InterpretationIn, who: Principal = Caller) -> dict[str, Any]:
        await drafted(who, decision_id)
        await run(app.interpret, decision_id, body.held_on, body.by)
        return decision_out(await run(app.decision, decision_id))

    @r.post("/decisions/{decision_id}/post-evaluation", summary="Open the post-evaluation (实施后评估) by hand",
            dependencies=allow(A.government_office, A.department))
    async def post_evaluation(decision_id: str, body: PostEvaluationIn, who: Principal = Caller) -> dict[str, Any]:
        await drafted(who, decision_id)
        await run(app.open_post_evaluation, decision_id, body.reason, body.opened_by)
        return decision_out(await run(app.decision, decision_id))

    @r.post("/decisions/{decision_id}/post-evaluation/report",
            summary="The post-evaluation report, formed collectively: continue, adjust or terminate",
            dependencies=allow(A.government_office, A.department))
    async def post_evaluation_report(decision_id: str, body: PostEvaluationReportIn,
                                     who: Principal = Caller) -> dict[str, Any]:
        await drafted(who, decision_id)
        await run(app.conclude_post_evaluation, decision_id, body.conclusion, body.summary, body.formed_by,
                  body.participants)
        return decision_out(await run(app.decision, decision_id))

    @r.post("/evaluations", status_code=201, response_model=Created,
            summary="A public evaluation form (群众评议表)",
            dependencies=[*allow(STAFF, A.member, A.citizen), IDEMPOTENT])
    async def evaluate(body: EvaluationIn) -> Created:
        topic_id = str(body.topic_id)
        topic = await run(q.known_topic, views, topic_id)
        fields = body.model_dump(exclude={"topic_id", "decision_id", "evaluator"})
        decision_id = str(body.decision_id) if body.decision_id else None
        return Created(id=await run(app.submit_evaluation, topic, body.evaluator, decision_id, topic_id,
                                    **fields))

    # -- views ------------------------------------------------------------------------------
    @r.get("/views/known-topics/{topic_id}",
           summary="Extension: what this service learned of a topic from Kafka", dependencies=allow(READERS))
    async def known(topic_id: str) -> dict[str, Any]:
        topic = await run(q.known_topic, views, topic_id)
        if topic is None:
            raise NotFound(f"Topic {topic_id} is not known to the feedback service (yet)")
        return topic

    @r.get("/views/departments/{department}",
           summary="Extension: a department's opinions, escalations, feedback and interpretations owed",
           dependencies=allow(READERS))
    async def department(department: str, who: Principal = Caller) -> dict[str, Any]:
        only_own(who, department, what=f"The queue of {department}")
        queue = await run(q.department_queue, views, department, app.clock.today(), app.calendar)
        for key in ("to_answer", "to_feed_back", "escalations"):
            texts = await with_texts([row["opinion"] for row in queue[key]], who)
            queue[key] = [{**row, "opinion": o} for row, o in zip(queue[key], texts)]
        return queue

    @r.get("/views/supervision",
           summary="Extension: government office totals per department (督办): answered, fed back, overdue",
           dependencies=allow(OFFICES, A.auditor))
    async def supervision() -> dict[str, Any]:
        return await run(q.supervision, views, app.clock.today(), app.calendar)

    @r.get("/public/opinions", summary="Extension: answered opinions as the public sees them (no person), "
                                        "a page at a time")
    async def public_opinions(request: Request, response: Response, topic_id: UUID | None = None,
                              after: UUID | None = None, limit: int = LIMIT) -> list[dict[str, Any]]:
        topic = str(topic_id) if topic_id else None
        items, following = await run(q.public_opinions, views, topic, str(after) if after else None, limit)
        link_next(request, response, following, topic_id=topic, limit=limit)
        return items

    @r.get("/public/topics/{topic_id}", summary="Extension: a topic's public results and evaluation results")
    async def public_topic(topic_id: str) -> dict[str, Any]:
        return await run(q.public_topic, views, topic_id)

    # -- the trace --------------------------------------------------------------------------
    @r.get("/traces/{topic_id}", summary="Everything that happened to a topic, in order",
           dependencies=allow(READERS, A.integration))
    async def get_trace(topic_id: str) -> dict[str, Any]:
        steps = await run(q.trace, views, topic_id)
        if steps is None:
            raise NotFound(f"No events are known for topic {topic_id}")
        return {"topic_id": topic_id, "steps": steps}

    return r
