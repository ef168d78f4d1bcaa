"""Consultation topics (议题) and annual plans (年度协商计划 / 政府协商事项目录).

Pure domain: aggregates, their events and the rules they enforce. No I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from shared.domain import Aggregate, Refused, evolve, glossed, new_id, require_reason, stable_names
from shared.forms import ContentType, check_form, current_plan_kind


@glossed
class Source(StrEnum):
    """Where a topic came from (议题来源: 001 §7, 003 二(三), 004)."""

    party_committee = "party_committee"  # 党政点题
    government = "government"  # 政府点题
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
    member_group = "member_group"  # 委员小组 (001 §7)
    joint_meeting = "joint_meeting"  # 党政办公室主任联席会议 (001 §7)
    department = "department"  # 县直部门 (001 §13–§14)


@glossed
class ProposerKind(StrEnum):
    """Who proposed a topic: a body (a committee, a department) or a person (a citizen, 群众)."""

    body = "body"
    person = "person"  # 个人: the name stays in the catalog store; events carry a pseudonymous ref


@glossed
class PlanKind(StrEnum):
    """Whose list it is: each body runs its consultation by its own rules (domain step 11)."""

    government = "government"  # 政府协商事项目录 (002 第七条(一)): decided by the government's leaders
    cppcc = "cppcc"  # 政协年度协商计划 (001 §9): chair meeting reviews, Party committee decides
    cppcc_room = "cppcc_room"  # "有事好商量"协商议事室 (003): the Party organisation at its level decides
    village = "village"  # 说事平台开单清单 (004): compiled by the township, reported to the county

    @classmethod
    def _missing_(cls, value: object) -> PlanKind | None:
        current = current_plan_kind(value) if isinstance(value, str) else value
        return cls(current) if current != value else None


#: The Party organisation (党组织) and the township compile what the two grassroots lists hold.
GRASSROOTS = frozenset({PlanKind.cppcc_room, PlanKind.village})

#: Who decides each kind of plan, in the words its refusals use.
DECIDED_BY = {
    PlanKind.government: "the government's leaders (市政府领导审定, 002 第七条(一))",
    PlanKind.cppcc: "the Party committee (党委常委会), after the CPPCC chair meeting's review (001 §9)",
    PlanKind.cppcc_room: "the Party organisation at the room's level (同级党组织, 003 二(三))",
    PlanKind.village: "no one: the township compiles it and reports it to the county government office (004)",
}


C = ContentType
#: What each kind of plan may take, from the seeds.
SCOPE: dict[PlanKind, frozenset[ContentType]] = {
    # 000 三 and 002 第五条: reports, plans, budgets, major decisions, regulations,
    # public resources and projects, reform plans, livelihood matters, other important matters.
    PlanKind.government: frozenset(
        {C.work_report, C.development_plan, C.budget, C.major_decision, C.regulation,
         C.public_resources, C.reform, C.livelihood, C.normative_document, C.major_public_policy, C.other}
    ),
    # 001 §4–§6: Party and government decisions, reports, plans, reforms, regulations,
    # livelihood questions, and the CPPCC's own affairs and membership (§5).
    PlanKind.cppcc: frozenset(
        {C.party_policy, C.party_documents, C.work_report, C.development_plan, C.budget,
         C.major_decision, C.regulation, C.public_resources, C.reform, C.livelihood, C.personnel,
         C.cppcc_affairs, C.normative_document, C.major_public_policy, C.other}
    ),
    # 003 二(三): a room takes the matters of its town, community or enterprise that the
    # people care about; Party policy, and what the law already fixes, are not its business.
    PlanKind.cppcc_room: frozenset(ContentType)
    - {C.party_policy, C.party_documents, C.fixed_by_law, C.personnel, C.cppcc_affairs},
    # 004 三(二)1: everything except the three excluded kinds below.
    PlanKind.village: frozenset(ContentType)
    - {C.party_policy, C.party_documents, C.fixed_by_law, C.beyond_self_government},
}

_OUT_OF_SCOPE_WHY = {
    (PlanKind.village, C.party_policy): "a village list (开单) may not take matters of Party "
    "policy (党的方针政策) — 004 三(二)1",
    (PlanKind.village, C.party_documents): "a village list (开单) may not take matters of Party "
    "policy (党的方针政策) — 004 三(二)1",
    (PlanKind.village, C.fixed_by_law): "a village list (开单) may not take matters already "
    "fixed by law or regulation (法律法规有明文规定) — 004 三(二)1",
    (PlanKind.village, C.beyond_self_government): "a village list (开单) may not take matters "
    "beyond village self-government (超出村民自治范围) — 004 三(二)1",
}
_SCOPE_SOURCE = {
    PlanKind.government: "the government consultation catalogue covers the matters of "
    "000 三 and 002 第五条",
    PlanKind.cppcc: "the CPPCC consultation plan covers the matters of 001 §4–§5",
    PlanKind.cppcc_room: "a 有事好商量 room takes the local matters people care about (003 二(三)), "
    "not Party policy, personnel, CPPCC affairs or what the law fixes",
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
    def create_id(proposal_id: str | None = None, received_via: str | None = None,
                  inbound_id: str | None = None) -> UUID:
        """A proposal becomes one topic: its id is derived from the proposal's, so a
        conversion delivered twice finds the topic there already. A topic sent over the
        e-government bus derives its id from the sender and its message id, for the same reason."""
        if proposal_id:
            return uuid5(NAMESPACE_URL, f"consultation:catalog:topic-of-proposal:{proposal_id}")
        if received_via and inbound_id:
            return uuid5(NAMESPACE_URL, f"consultation:catalog:topic-of-inbound:{received_via}\n{inbound_id}")
        return new_id()

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
        received_via: str | None = None,
        inbound_id: str | None = None,
    ):
        self.title = title
        self.description = description
        self.source = Source(source)
        self.proposer = proposer
        #: Topics stored before people were told apart from bodies were proposed by bodies.
        self.proposer_kind = ProposerKind(proposer_kind)
        self.content_type = ContentType(content_type)
        self.proposal_id = proposal_id
        #: The sender on the e-government bus (CloudEvent source) and its message id, if it came so.
        self.received_via = received_via
        self.inbound_id = inbound_id
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


# Version 2 (2026-12): a topic proposed over the e-government bus names its sender and
# message id. Stored version-1 events are read with neither (docs/schema-evolution.md).
evolve(Topic.TopicProposed, {"received_via": None, "inbound_id": None})


@stable_names(
    "catalog",
    actors={
        "PlanDrafted": "issuer",
        "PlanReviewed": "reviewed_by",
        "PlanItemAdded": "added_by",
        "PlanApproved": "approved_by",
        "PlanReported": "compiled_by",
        "PlanPublished": "published_by",
        "PlanAmended": "approved_by",
    },
)
class Plan(Aggregate):
    """An annual consultation plan, a government consultation catalogue, or a grassroots list.

    Each kind runs its own path (domain step 11):
    - government (政府协商事项目录): draft → decided by the government's leaders → published (required);
    - cppcc (政协年度协商计划): draft → reviewed by the chair meeting (主席会议) → decided by the
      Party committee (党委常委会) → published as appropriate (视情);
    - cppcc_room (有事好商量): draft → decided by the Party organisation at its level;
    - village (说事开单): compiled by the township → reported to the county government office.
    After that the plan changes only by a recorded amendment (临时增加, 001 §9).
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
        self.reported: dict[str, Any] | None = None

    @property
    def in_force(self) -> bool:
        """Decided (or, for a village list, reported): its topics may be consulted on."""
        return self.status in ("approved", "reported", "published")

    @property
    def topic_ids(self) -> set[str]:
        return {i["topic_id"] for i in self.items} | {a["topic_id"] for a in self.amendments}

    def _check_new_topic(self, topic: Topic, form: str) -> None:
        topic.require_accepted()
        check_scope(self.kind, topic.content_type, topic.title)
        check_form(self.kind, form)
        if str(topic.id) in self.topic_ids:
            raise Refused(
                f"Topic '{topic.title}' is already in this plan; a topic appears once per plan.",
                rule="duplicate_topic",
            )

    def _check_month(self, month: str) -> None:
        if not month.startswith(f"{self.year}-"):
            raise Refused(f"This is the {self.year} plan; an item's month ({month}) lies in {self.year}.",
                          rule="month_outside_year")

    def add_item(self, topic: Topic, **item: Any) -> None:
        if self.status not in ("draft", "reviewed"):
            raise Refused(
                f"This plan is {self.status}; items are added only while it is a draft. "
                "Use an amendment with a reason and approver.",
                rule="plan_not_draft",
            )
        self._check_new_topic(topic, item["form"])
        self._check_month(item["scheduled_month"])
        # An item added after the chair meeting's review sends the plan back to it (001 §9).
        self._add_item(topic_id=str(topic.id), review_withdrawn=self.status == "reviewed", **item)

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
        review_withdrawn: bool = False,
    ) -> None:
        self.items.append(
            {"topic_id": topic_id, "form": form, "lead_department": lead_department,
             "scheduled_month": scheduled_month, "participant_scope": participant_scope,
             "internal_note": internal_note}
        )
        if review_withdrawn:
            self.status = "draft"
            self.reviewed_by = None

    def review(self, reviewed_by: str) -> None:
        if self.kind is not PlanKind.cppcc:
            raise Refused(
                "Only CPPCC plans are reviewed by the chair meeting (主席会议); "
                f"this {self.kind} plan is decided by {DECIDED_BY[self.kind]}.",
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
        if self.kind is PlanKind.village:
            raise Refused(
                "A village's 开单 list is not approved: the township compiles it and reports it to the "
                "county government office (004). Record the report instead.",
                rule="approval_not_applicable",
            )
        if self.in_force:
            raise Refused(f"This plan is already {self.status}.", rule="already_approved")
        self._require_items("approved")
        if self.kind is PlanKind.cppcc and self.status != "reviewed":
            raise Refused(
                "A CPPCC plan goes to the Party committee only after the chair meeting "
                "(主席会议) has reviewed it (001 §9).",
                rule="review_required",
            )
        self._approve(approved_by=approved_by, decided_by=DECIDED_BY[self.kind])

    @event("PlanApproved")
    def _approve(self, approved_by: str, decided_by: str | None = None) -> None:
        self.status = "approved"
        self.approved_by = approved_by

    def report(self, compiled_by: str, reported_to: str, today: str) -> None:
        """A village list (开单): compiled by the township, reported to the county (004)."""
        if self.kind is not PlanKind.village:
            raise Refused(f"Only a village's 开单 list is reported rather than approved; this {self.kind} "
                          f"plan is decided by {DECIDED_BY[self.kind]}.", rule="report_not_applicable")
        if self.status != "draft":
            raise Refused(f"This list is already {self.status}.", rule="already_reported")
        self._require_items("reported")
        self._report(compiled_by=compiled_by, reported_to=reported_to, reported_on=today)

    @event("PlanReported")
    def _report(self, compiled_by: str, reported_to: str, reported_on: str) -> None:
        self.status = "reported"
        self.reported = {"compiled_by": compiled_by, "reported_to": reported_to, "reported_on": reported_on}

    def publish(self, published_by: str | None, items: list[dict[str, Any]]) -> None:
        """``items``: the plan's items as the public reads them (topic title, form, month, lead)."""
        if self.status == "published":
            raise Refused("This plan is already published.", rule="already_published")
        if not self.in_force:
            raise Refused(
                f"Only a plan in force can be published to society; this one awaits "
                f"{DECIDED_BY[self.kind]}.",
                rule="plan_not_approved",
            )
        self._publish(published_by=published_by, items=items)

    @event("PlanPublished")
    def _publish(self, published_by: str | None, items: list[dict[str, Any]] | None = None) -> None:
        self.status = "published"

    def amend(self, topic: Topic, reason: str | None, approved_by: str, **item: Any) -> None:
        if not self.in_force:
            raise Refused(
                f"This plan is {self.status}; amendments apply to plans in force only — "
                "add items to a draft directly.",
                rule="plan_not_approved",
            )
        reason = require_reason(reason, "Amending an approved plan")
        self._check_new_topic(topic, item["form"])
        self._check_month(item["scheduled_month"])
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
