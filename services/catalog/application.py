"""Catalog commands: each method loads aggregates, applies one decision, saves."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import RecordConflictError

from shared.application import ServiceApplication
from shared.clock import Clock
from shared.config import Settings
from shared.pseudonyms import Pseudonyms
from shared.domain import NotFound, Refused

from services.catalog.domain import Plan, ProposalTopicRefusal, Topic


class CatalogApplication(ServiceApplication):
    """Topics (议题) and annual plans (年度协商计划), in the catalog's own store."""

    service = "catalog"
    outcomes = frozenset({"PlanPublished"})

    def __init__(self, settings: Settings, clock: Clock | None = None):
        super().__init__(settings, clock)
        self.pseudonyms = Pseudonyms.for_settings(settings)

    def redact(self, name: str, data: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """A citizen who proposed a topic (向社会公开征集, 开单) is named only in this store:
        every envelope, and so Kafka, the trace and every view, carries the keyed
        pseudonymous reference sessions gives the same name."""
        if name == "TopicProposed" and data.get("proposer_kind") == "person":
            data = {**data, "proposer": self.pseudonyms.ref("participant", data["proposer"])}
        return data

    def topic_of(self, cls: type, originator: str, data: dict[str, Any]) -> str | None:
        # A topic's own events belong to it; plan events name theirs in data.
        if issubclass(cls, Topic.Event):
            return originator
        return super().topic_of(cls, originator, data)

    # -- topics ----------------------------------------------------------------
    def propose_topic(self, **fields: Any) -> str:
        topic = Topic(**fields)
        self.save(topic)
        return str(topic.id)

    def screen_topic(self, topic_id: str, decision: str, reason: str | None, screened_by: str) -> None:
        topic = self.get(Topic, topic_id)
        topic.screen(decision, reason, screened_by)
        self.save(topic)

    def topic_from_proposal(self, **fields: Any) -> bool:
        """The topic a converted proposal becomes; False when it exists already."""
        topic = Topic(**fields)
        try:
            self.save(topic)
        except RecordConflictError:
            return False
        return True

    def refuse_topic_from_proposal(self, proposal_id: str, attempt: int, rule: str, reason: str) -> bool:
        """Say why a conversion cannot become a topic; False when said already."""
        refusal = ProposalTopicRefusal(proposal_id=proposal_id, attempt=attempt, rule=rule, reason=reason,
                                       refused_on=self.clock.today().isoformat())
        try:
            self.save(refusal)
        except RecordConflictError:
            return False
        return True

    # -- plans -----------------------------------------------------------------
    def draft_plan(self, year: int, kind: str, issuer: str) -> str:
        plan = Plan(year=year, kind=kind, issuer=issuer)
        self.save(plan)
        return str(plan.id)

    def _topic_for_plan(self, topic_id: str) -> Topic:
        try:
            return self.get(Topic, topic_id)
        except NotFound:
            # The plan exists; the topic named in the body does not: a 409, not a 404.
            raise Refused(
                f"No topic with id {topic_id} has been proposed; a plan item needs a screened topic.",
                rule="unknown_topic",
            ) from None

    def add_plan_item(self, plan_id: str, topic_id: str, **item: Any) -> None:
        plan = self.get(Plan, plan_id)
        plan.add_item(self._topic_for_plan(topic_id), **item)
        self.save(plan)

    def review_plan(self, plan_id: str, reviewed_by: str) -> None:
        plan = self.get(Plan, plan_id)
        plan.review(reviewed_by)
        self.save(plan)

    def approve_plan(self, plan_id: str, approved_by: str) -> None:
        plan = self.get(Plan, plan_id)
        plan.approve(approved_by)
        self.save(plan)

    def publish_plan(self, plan_id: str, published_by: str | None) -> None:
        """Published with its items as the public reads them, so a department that reads
        only the outcome topic knows the plan (topic title, form, month, lead department)."""
        plan = self.get(Plan, plan_id)
        entries = [*plan.items, *plan.amendments]
        items = [{"topic_id": i["topic_id"], "title": self.get(Topic, i["topic_id"]).title, "form": i["form"],
                  "scheduled_month": i["scheduled_month"], "lead_department": i["lead_department"],
                  "participant_scope": i.get("participant_scope"), "by_amendment": "reason" in i}
                 for i in entries]
        plan.publish(published_by, items)
        self.save(plan)

    def report_plan(self, plan_id: str, compiled_by: str, reported_to: str) -> None:
        plan = self.get(Plan, plan_id)
        plan.report(compiled_by, reported_to, self.clock.today().isoformat())
        self.save(plan)

    def amend_plan(self, plan_id: str, topic_id: str, reason: str | None, approved_by: str, **item: Any) -> int:
        plan = self.get(Plan, plan_id)
        plan.amend(self._topic_for_plan(topic_id), reason, approved_by, **item)
        self.save(plan)
        return len(plan.amendments)
