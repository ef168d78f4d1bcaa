"""Consultation topics (议题) and annual plans (年度协商计划 / 政府协商事项目录).

Pure domain: aggregates, their events and the rules they enforce. No I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from shared.domain import Refused, require_reason, stable_names
from shared.forms import ContentType


class Source(StrEnum):
    """Where a topic came from (议题来源: 001 §7, 003 二(三), 004)."""

    party_committee = "party_committee"  # 党政点题
    government = "government"
    npc = "npc"  # 人大
    people_organization = "people_organization"  # 人民团体
    cppcc_standing_committee = "cppcc_standing_committee"  # 政协常委会
    cppcc_chair_meeting = "cppcc_chair_meeting"  # 主席会议
    cppcc_special_committee = "cppcc_special_committee"  # 专门委员会
    sector = "sector"  # 界别
    members_joint = "members_joint"  # 委员联名
    member_recommendation = "member_recommendation"  # 委员荐题
    public_solicitation = "public_solicitation"  # 向社会公开征集
    grassroots = "grassroots"  # 基层"开单"
    proposal = "proposal"  # 提案转化


class ProposerKind(StrEnum):
    """Who proposed a topic: a body (a committee, a department) or a person (a citizen, 群众)."""

    body = "body"
    person = "person"  # 个人: the name stays in the catalog store; events carry a pseudonymous ref


class PlanKind(StrEnum):
    government = "government"  # 政府协商事项目录
    cppcc = "cppcc"  # 政协年度协商计划
    grassroots = "grassroots"  # 村(社区)议事内容清单


C = ContentType
#: What each kind of plan may take, from the seeds.
SCOPE: dict[PlanKind, frozenset[ContentType]] = {
    # 000 三 and 002 第五条: reports, plans, budgets, major decisions, regulations,
    # public resources and projects, reform plans, livelihood matters, other important matters.
    PlanKind.government: frozenset(
        {C.work_report, C.development_plan, C.budget, C.major_decision, C.regulation,
         C.public_resources, C.reform, C.livelihood, C.other}
    ),
    # 001 §4–§6: Party and government decisions, reports, plans, reforms, regulations,
    # livelihood questions, and the CPPCC's own affairs and membership (§5).
    PlanKind.cppcc: frozenset(
        {C.party_policy, C.work_report, C.development_plan, C.budget, C.major_decision,
         C.regulation, C.public_resources, C.reform, C.livelihood, C.personnel,
         C.cppcc_affairs, C.other}
    ),
    # 004 三(二)1: everything except the three excluded kinds below.
    PlanKind.grassroots: frozenset(ContentType)
    - {C.party_policy, C.fixed_by_law, C.beyond_self_government},
}

_OUT_OF_SCOPE_WHY = {
    (PlanKind.grassroots, C.party_policy): "a grassroots list may not take matters of Party "
    "policy (党的大政方针) — 004 三(二)1",
    (PlanKind.grassroots, C.fixed_by_law): "a grassroots list may not take matters already "
    "fixed by law or regulation (法律法规有明文规定) — 004 三(二)1",
    (PlanKind.grassroots, C.beyond_self_government): "a grassroots list may not take matters "
    "beyond village self-government (超出村民自治范围) — 004 三(二)1",
}
_SCOPE_SOURCE = {
    PlanKind.government: "the government consultation catalogue covers the matters of "
    "000 三 and 002 第五条",
    PlanKind.cppcc: "the CPPCC consultation plan covers the matters of 001 §4–§5",
}


def check_scope(kind: PlanKind, content_type: ContentType, title: str) -> None:
    """Refuse a topic whose content the plan's kind may not take."""
    if content_type in SCOPE[kind]:
        return
    why = _OUT_OF_SCOPE_WHY.get(
        (kind, content_type),
        f"{_SCOPE_SOURCE.get(kind, '')}, not '{content_type}'",
    )
    raise Refused(f"Topic '{title}' is out of scope for a {kind} plan: {why}.", rule="out_of_scope")


@stable_names(
    "catalog",
    actors={"TopicProposed": "proposer", "TopicAccepted": "screened_by", "TopicRejected": "screened_by"},
)
class Topic(Aggregate):
    """A consultation topic (协商议题), from proposal through screening (会商)."""

    @staticmethod
    def create_id(proposal_id: str | None = None) -> UUID:
        """A proposal becomes one topic: its id is derived from the proposal's, so a
        conversion delivered twice finds the topic there already."""
        if proposal_id:
            return uuid5(NAMESPACE_URL, f"consultation:catalog:topic-of-proposal:{proposal_id}")
        return uuid4()

    @event("TopicProposed")
    def __init__(
        self,
        title: str,
        description: str,
        source: str,
        proposer: str,
        content_type: str,
        proposal_id: str | None = None,
        proposer_kind: str = "body",
    ):
        self.title = title
        self.description = description
        self.source = Source(source)
        self.proposer = proposer
        #: Topics stored before people were told apart from bodies were proposed by bodies.
        self.proposer_kind = ProposerKind(proposer_kind)
        self.content_type = ContentType(content_type)
        self.proposal_id = proposal_id
        self.status = "proposed"
        self.screened_by: str | None = None
        self.reason: str | None = None

    def screen(self, decision: str, reason: str | None, screened_by: str) -> None:
        if self.status != "proposed":
            raise Refused(
                f"Topic '{self.title}' was already screened ({self.status}); "
                "a screening decision is made once.",
                rule="already_screened",
            )
        if decision == "accepted":
            self._accept(screened_by=screened_by, reason=reason or "")
        else:
            self._reject(screened_by=screened_by, reason=require_reason(reason, "Rejecting a topic"))

    @event("TopicAccepted")
    def _accept(self, screened_by: str, reason: str) -> None:
        self.status = "accepted"
        self.screened_by = screened_by
        self.reason = reason or None

    @event("TopicRejected")
    def _reject(self, screened_by: str, reason: str) -> None:
        self.status = "rejected"
        self.screened_by = screened_by
        self.reason = reason

    def require_accepted(self) -> None:
        if self.status != "accepted":
            raise Refused(
                f"Topic '{self.title}' is {self.status}; only topics accepted at screening "
                "(会商通过) can be placed in a plan.",
                rule="topic_not_accepted",
            )


@stable_names(
    "catalog",
    actors={
        "PlanDrafted": "issuer",
        "PlanReviewed": "reviewed_by",
        "PlanItemAdded": "added_by",
        "PlanApproved": "approved_by",
        "PlanPublished": "published_by",
        "PlanAmended": "approved_by",
    },
)
class Plan(Aggregate):
    """An annual consultation plan or government consultation catalogue.

    Path: draft → (CPPCC plans: reviewed by the chair meeting 主席会议) → approved by
    the Party committee (党委常委会) → published to society (向社会公布). After
    approval the plan changes only by a recorded amendment (临时增加, 001 §9).
    """

    @event("PlanDrafted")
    def __init__(self, year: int, kind: str, issuer: str):
        self.year = year
        self.kind = PlanKind(kind)
        self.issuer = issuer
        self.status = "draft"
        self.items: list[dict[str, Any]] = []
        self.amendments: list[dict[str, Any]] = []
        self.reviewed_by: str | None = None
        self.approved_by: str | None = None

    @property
    def topic_ids(self) -> set[str]:
        return {i["topic_id"] for i in self.items} | {a["topic_id"] for a in self.amendments}

    def _check_new_topic(self, topic: Topic) -> None:
        topic.require_accepted()
        check_scope(self.kind, topic.content_type, topic.title)
        if str(topic.id) in self.topic_ids:
            raise Refused(
                f"Topic '{topic.title}' is already in this plan; a topic appears once per plan.",
                rule="duplicate_topic",
            )

    def add_item(self, topic: Topic, **item: Any) -> None:
        if self.status not in ("draft", "reviewed"):
            raise Refused(
                f"This plan is {self.status}; items are added only while it is a draft. "
                "Use an amendment with a reason and approver.",
                rule="plan_not_draft",
            )
        self._check_new_topic(topic)
        self._add_item(topic_id=str(topic.id), **item)

    @event("PlanItemAdded")
    def _add_item(
        self,
        topic_id: str,
        form: str,
        lead_department: str,
        scheduled_month: str,
        participant_scope: str,
        internal_note: str | None = None,
        added_by: str | None = None,
    ) -> None:
        self.items.append(
            {"topic_id": topic_id, "form": form, "lead_department": lead_department,
             "scheduled_month": scheduled_month, "participant_scope": participant_scope,
             "internal_note": internal_note}
        )

    def review(self, reviewed_by: str) -> None:
        if self.kind is not PlanKind.cppcc:
            raise Refused(
                "Only CPPCC plans are reviewed by the chair meeting (主席会议); "
                f"this is a {self.kind} plan.",
                rule="review_not_applicable",
            )
        if self.status != "draft":
            raise Refused(f"This plan is {self.status}; only a draft is reviewed.", rule="plan_not_draft")
        self._require_items("reviewed")
        self._review(reviewed_by=reviewed_by)

    @event("PlanReviewed")
    def _review(self, reviewed_by: str) -> None:
        self.status = "reviewed"
        self.reviewed_by = reviewed_by

    def _require_items(self, what: str) -> None:
        if not self.items:
            raise Refused(f"An empty plan cannot be {what}: add at least one item first.", rule="plan_empty")

    def approve(self, approved_by: str) -> None:
        if self.status in ("approved", "published"):
            raise Refused(f"This plan is already {self.status}.", rule="already_approved")
        self._require_items("approved")
        if self.kind is PlanKind.cppcc and self.status != "reviewed":
            raise Refused(
                "A CPPCC plan goes to the Party committee only after the chair meeting "
                "(主席会议) has reviewed it (001 §9).",
                rule="review_required",
            )
        self._approve(approved_by=approved_by)

    @event("PlanApproved")
    def _approve(self, approved_by: str) -> None:
        self.status = "approved"
        self.approved_by = approved_by

    def publish(self, published_by: str | None) -> None:
        if self.status == "published":
            raise Refused("This plan is already published.", rule="already_published")
        if self.status != "approved":
            raise Refused(
                "Only a plan approved by the Party committee (党委审定) can be published to society.",
                rule="plan_not_approved",
            )
        self._publish(published_by=published_by)

    @event("PlanPublished")
    def _publish(self, published_by: str | None) -> None:
        self.status = "published"

    def amend(self, topic: Topic, reason: str | None, approved_by: str, **item: Any) -> None:
        if self.status not in ("approved", "published"):
            raise Refused(
                f"This plan is {self.status}; amendments apply to approved plans only — "
                "add items to a draft directly.",
                rule="plan_not_approved",
            )
        reason = require_reason(reason, "Amending an approved plan")
        self._check_new_topic(topic)
        self._amend(topic_id=str(topic.id), reason=reason, approved_by=approved_by, **item)

    @event("PlanAmended")
    def _amend(
        self,
        topic_id: str,
        form: str,
        lead_department: str,
        scheduled_month: str,
        reason: str,
        approved_by: str,
        participant_scope: str = "",
    ) -> None:
        self.amendments.append(
            {"topic_id": topic_id, "form": form, "lead_department": lead_department,
             "scheduled_month": scheduled_month, "participant_scope": participant_scope,
             "reason": reason, "approved_by": approved_by}
        )


@stable_names("catalog", actors={"TopicFromProposalRefused": "refused_by"})
class ProposalTopicRefusal(Aggregate):
    """The catalog's answer when a proposal's conversion (提案转化) cannot become a topic:
    the proposals service reads it and shows the proposal's conversion refused, with why."""

    @staticmethod
    def create_id(proposal_id: str, attempt: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"consultation:catalog:refused-conversion:{proposal_id}/{attempt}")

    @event("TopicFromProposalRefused")
    def __init__(self, proposal_id: str, attempt: int, rule: str, reason: str, refused_on: str,
                 refused_by: str = "catalog"):
        self.proposal_id = proposal_id
        self.attempt = attempt
        self.rule = rule
        self.reason = reason
        self.refused_on = refused_on
