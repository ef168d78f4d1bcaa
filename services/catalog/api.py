"""Catalog HTTP routes under ``/catalog`` (contract: Catalog)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.access import OFFICES, READERS, STAFF, Caller, Forbidden, Principal, Role, allow, only_own
from shared.fields import Month, Name, Text, Year
from shared.forms import Form, current_plan_kind
from shared.http import ACCESS_RESPONSES, IDEMPOTENT, Command, Created
from shared.service import Service

from services.catalog import projections as q
from services.catalog.application import CatalogApplication
from services.catalog.domain import ContentType, Plan, PlanKind, ProposerKind, Source, Topic


class TopicIn(Command):
    title: Name
    description: Text
    source: Source
    proposer: Name = Field(description="the proposing body, or a person's name (then proposer_kind person)")
    proposer_kind: ProposerKind = Field(
        ProposerKind.body, description="person: the name stays in the catalog; events carry a pseudonymous ref")
    content_type: ContentType
    proposal_id: UUID | None = Field(None, description="required when source is 'proposal'")

    @model_validator(mode="after")
    def proposal_link(self) -> TopicIn:
        if self.source is Source.proposal and self.proposal_id is None:
            raise PydanticCustomError(
                "proposal_link_required", "proposal_id: a topic from a proposal must name it"
            )
        return self


def topic_fields(body: TopicIn) -> dict[str, Any]:
    """A proposed topic as the application takes it (HTTP and the bus's ``ProposeTopic``)."""
    return {**body.model_dump(), "proposal_id": str(body.proposal_id) if body.proposal_id else None}


class ScreeningIn(Command):
    decision: Literal["accepted", "rejected"]
    screened_by: Name
    reason: Text | None = Field(None, validate_default=True)

    @field_validator("reason")
    @classmethod
    def reason_to_reject(cls, reason: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("decision") == "rejected" and not (reason or "").strip():
            raise PydanticCustomError("reason_required", "a reason is required to reject a topic")
        return reason


class PlanIn(Command):
    year: Year
    kind: PlanKind = Field(description="government (政府协商事项目录), cppcc (政协年度协商计划), cppcc_room "
                           "(有事好商量, 003), village (说事开单, 004); 'grassroots' is the old name of village")
    issuer: Name

    @field_validator("kind", mode="before")
    @classmethod
    def old_name(cls, v: Any) -> Any:
        return current_plan_kind(v) if isinstance(v, str) else v


class ItemFields(Command):
    topic_id: UUID
    form: Form
    lead_department: Name
    scheduled_month: Month
    participant_scope: Text = Field(description="who takes part (参与范围, 002 第七条(一))")


class ItemIn(ItemFields):
    internal_note: Text | None = Field(None, description="never shown to the public")
    added_by: Name | None = None


class ReviewIn(Command):
    reviewed_by: Name


class ApprovalIn(Command):
    approved_by: Name


class ReportIn(Command):
    compiled_by: Name = Field(description="the township that compiled the 开单 list")
    reported_to: Name = Field("县政府办公室", description="the county government office (004)")


class PublicationIn(Command):
    published_by: Name | None = None


class AmendmentIn(ItemFields):
    reason: Text
    approved_by: Name


def topic_out(t: Topic) -> dict[str, Any]:
    return {
        "id": str(t.id), "title": t.title, "description": t.description, "source": t.source,
        "proposer": t.proposer, "proposer_kind": t.proposer_kind, "content_type": t.content_type,
        "proposal_id": t.proposal_id,
        "status": t.status, "screened_by": t.screened_by, "reason": t.reason,
        "proposed_at": t.created_on.isoformat(),
    }


def plan_out(p: Plan) -> dict[str, Any]:
    return {
        "id": str(p.id), "year": p.year, "kind": p.kind, "issuer": p.issuer, "status": p.status,
        "items": p.items, "amendments": p.amendments, "reviewed_by": p.reviewed_by,
        "approved_by": p.approved_by, "reported": p.reported, "version": p.version,
    }


#: Which office runs each kind of plan; the Party committee office decides them all.
PLAN_OFFICES = {
    PlanKind.government: Role.government_office, PlanKind.village: Role.government_office,
    PlanKind.cppcc: Role.cppcc_office, PlanKind.cppcc_room: Role.cppcc_office,
}
PLANNERS = (Role.party_office, Role.government_office, Role.cppcc_office)


def own_plan(principal: Principal, kind: str) -> None:
    """The government office keeps government and village lists, the CPPCC office the CPPCC's."""
    office = PLAN_OFFICES[PlanKind(kind)]
    if principal.role not in (office, Role.party_office):
        raise Forbidden(f"A {kind} plan is kept by the {office.value.replace('_', ' ')} (and decided with the "
                        "Party committee office), not by this office.", "not_yours")


def routes(service: Service) -> APIRouter:
    app: CatalogApplication = service.app  # type: ignore[assignment]
    views = service.views
    r = service.api_router(responses=ACCESS_RESPONSES)

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    @r.post("/topics", status_code=201, response_model=Created, summary="Propose a topic (议题征集)",
            dependencies=[*allow(STAFF, Role.member, Role.citizen), IDEMPOTENT])
    async def propose_topic(body: TopicIn, who: Principal = Caller) -> Created:
        if who.role is Role.citizen and body.proposer_kind is not ProposerKind.person:
            # As a "body", a citizen's own name would be published as it stands; as a person,
            # it stays in the catalog and every event carries a pseudonymous reference.
            raise Forbidden("proposer_kind: a citizen proposes a topic as a person (proposer_kind "
                            "person), so that their name stays in the catalog.", "citizen_is_a_person",
                            "proposer_kind")
        return Created(id=await run(app.propose_topic, **topic_fields(body)))

    @r.post("/topics/{topic_id}/screening", summary="Screen a topic (会商): accept or reject with reason",
            dependencies=allow(PLANNERS))
    async def screen_topic(topic_id: str, body: ScreeningIn) -> dict[str, Any]:
        await run(app.screen_topic, topic_id, body.decision, body.reason, body.screened_by)
        return topic_out(await run(app.get, Topic, topic_id))

    @r.get("/topics/{topic_id}", summary="One topic", dependencies=allow(READERS, Role.member))
    async def get_topic(topic_id: str) -> dict[str, Any]:
        return topic_out(await run(app.get, Topic, topic_id))

    @r.post("/plans", status_code=201, response_model=Created, summary="Draft an annual plan",
            dependencies=[*allow(PLANNERS), IDEMPOTENT])
    async def draft_plan(body: PlanIn, who: Principal = Caller) -> Created:
        own_plan(who, body.kind)
        return Created(id=await run(app.draft_plan, body.year, body.kind, body.issuer))

    @r.post("/plans/{plan_id}/items", summary="Add an accepted topic to a draft plan",
            dependencies=allow(PLANNERS))
    async def add_item(plan_id: str, body: ItemIn, who: Principal = Caller) -> dict[str, Any]:
        own_plan(who, (await run(app.get, Plan, plan_id)).kind)
        item = body.model_dump(exclude={"topic_id"})
        await run(app.add_plan_item, plan_id, str(body.topic_id), **item)
        return plan_out(await run(app.get, Plan, plan_id))

    @r.post("/plans/{plan_id}/review", summary="CPPCC chair meeting review (主席会议审议)",
            dependencies=allow(Role.cppcc_office))
    async def review_plan(plan_id: str, body: ReviewIn) -> dict[str, Any]:
        await run(app.review_plan, plan_id, body.reviewed_by)
        return plan_out(await run(app.get, Plan, plan_id))

    @r.post("/plans/{plan_id}/report", summary="Extension: a village 开单 list reported to the county (004)",
            dependencies=allow(Role.government_office))
    async def report_plan(plan_id: str, body: ReportIn) -> dict[str, Any]:
        await run(app.report_plan, plan_id, body.compiled_by, body.reported_to)
        return plan_out(await run(app.get, Plan, plan_id))

    @r.post("/plans/{plan_id}/approval",
            summary="The deciding body's approval: government leaders, the Party committee, or the Party "
                    "organisation of a 有事好商量 room", dependencies=allow(PLANNERS))
    async def approve_plan(plan_id: str, body: ApprovalIn, who: Principal = Caller) -> dict[str, Any]:
        own_plan(who, (await run(app.get, Plan, plan_id)).kind)
        await run(app.approve_plan, plan_id, body.approved_by)
        return plan_out(await run(app.get, Plan, plan_id))

    @r.post("/plans/{plan_id}/publication", summary="Publish an approved plan to society",
            dependencies=allow(PLANNERS))
    async def publish_plan(plan_id: str, body: PublicationIn | None = None,
                           who: Principal = Caller) -> dict[str, Any]:
        own_plan(who, (await run(app.get, Plan, plan_id)).kind)
        await run(app.publish_plan, plan_id, body.published_by if body else None)
        return plan_out(await run(app.get, Plan, plan_id))

    @r.post("/plans/{plan_id}/amendments", status_code=201, summary="Amend an approved plan (临时增加)",
            dependencies=allow(PLANNERS))
    async def amend_plan(plan_id: str, body: AmendmentIn, who: Principal = Caller) -> dict[str, Any]:
        own_plan(who, (await run(app.get, Plan, plan_id)).kind)
        item = body.model_dump(exclude={"topic_id", "reason", "approved_by"})
        number = await run(app.amend_plan, plan_id, str(body.topic_id), body.reason, body.approved_by, **item)
        return {"id": f"{plan_id}/amendments/{number}", "number": number}

    @r.get("/plans/{plan_id}", summary="One plan with its items and amendment history",
           dependencies=allow(READERS))
    async def get_plan(plan_id: str) -> dict[str, Any]:
        return plan_out(await run(app.get, Plan, plan_id))

    # -- views -----------------------------------------------------------------
    @r.get("/views/government-catalogue/{year}", summary="Government office: the year's catalogue",
           dependencies=allow(OFFICES, Role.auditor))
    async def government_catalogue(year: Annotated[int, Path(ge=2000, le=2100)]) -> dict[str, Any]:
        return await run(q.government_catalogue, views, year)

    @r.get("/views/awaiting-approval", summary="Plans their deciding body can decide now",
           dependencies=allow(PLANNERS, Role.auditor))
    async def awaiting_approval() -> list[dict[str, Any]]:
        return await run(q.awaiting_approval, views)

    @r.get("/views/plan-desk", summary="Extension: what waits on each body: decide, review, report, publish",
           dependencies=allow(OFFICES, Role.auditor))
    async def plan_desk() -> dict[str, Any]:
        return await run(q.plan_desk, views)

    @r.get("/views/topic-pipeline", summary="CPPCC office: topics by source and status",
           dependencies=allow(OFFICES, Role.auditor))
    async def topic_pipeline() -> dict[str, Any]:
        return await run(q.topic_pipeline, views)

    @r.get("/views/departments/{department}/schedule", summary="A lead department's scheduled topics",
           dependencies=allow(READERS))
    async def department_schedule(department: str, who: Principal = Caller) -> list[dict[str, Any]]:
        only_own(who, department, what=f"The schedule of {department}")
        return await run(q.department_schedule, views, department)

    @r.get("/public/plans", summary="The public's published plans (向社会公布)")
    async def public_plans(year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> list[dict[str, Any]]:
        return await run(q.public_plans, views, year)

    return r
