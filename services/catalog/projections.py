"""Catalog read models, rebuilt from the catalog's own events.

Two documents — ``topic`` and ``plan`` — from which every body's view is read:
the government office's catalogue, the Party committee's approval queue, the
CPPCC office's topic pipeline, each lead department's schedule, the public's plans.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from shared.envelope import CloudEvent
from shared.projection import ViewProjection
from shared.stores import ViewStore, ViewTransaction

from services.catalog.domain import DECIDED_BY, PlanKind

_ITEM_FIELDS = ("topic_id", "form", "lead_department", "scheduled_month", "participant_scope")


class CatalogViews(ViewProjection):
    name = "catalog_views"
    views = ("topic", "plan")

    # -- topics ----------------------------------------------------------------
    def on_TopicProposed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("topic", e.subject, {
            "id": e.subject, "title": d["title"], "description": d["description"],
            "source": d["source"], "proposer": d["proposer"], "proposer_kind": d.get("proposer_kind", "body"),
            "content_type": d["content_type"],
            "proposal_id": d.get("proposal_id"), "status": "proposed",
            "proposed_at": e.time.isoformat(), "screened_by": None, "reason": None, "plans": [],
        })

    def _screened(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction, status: str) -> None:
        topic = txn.get("topic", e.subject) or {"id": e.subject, "plans": []}
        topic.update(status=status, screened_by=d["screened_by"], reason=d.get("reason") or None,
                     screened_at=e.time.isoformat())
        txn.put("topic", e.subject, topic)

    def on_TopicAccepted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._screened(e, d, txn, "accepted")

    def on_TopicRejected(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._screened(e, d, txn, "rejected")

    # -- plans -----------------------------------------------------------------
    def on_PlanDrafted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("plan", e.subject, {
            "id": e.subject, "year": d["year"], "kind": PlanKind(d["kind"]).value, "issuer": d["issuer"],
            "status": "draft", "drafted_at": e.time.isoformat(), "items": [], "amendments": [],
            "reviewed_by": None, "approved_by": None, "approved_at": None, "published_at": None,
        })

    def _plan(self, e: CloudEvent, txn: ViewTransaction) -> dict[str, Any]:
        plan = txn.get("plan", e.subject)
        if plan is None:
            raise ValueError(f"plan {e.subject} has no PlanDrafted before {e.name}")
        return plan

    def _link_topic(self, txn: ViewTransaction, topic_id: str, plan: dict[str, Any]) -> dict[str, Any]:
        topic = txn.get("topic", topic_id) or {"id": topic_id, "plans": []}
        if plan["id"] not in topic["plans"]:
            topic["plans"].append(plan["id"])
            txn.put("topic", topic_id, topic)
        return topic

    def _item(self, d: dict[str, Any], topic: dict[str, Any], e: CloudEvent) -> dict[str, Any]:
        item = {f: d.get(f) for f in _ITEM_FIELDS}
        item.update(title=topic.get("title"), description=topic.get("description"),
                    content_type=topic.get("content_type"), added_at=e.time.isoformat())
        return item

    def on_PlanItemAdded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        topic = self._link_topic(txn, d["topic_id"], plan)
        plan["items"].append({**self._item(d, topic, e), "internal_note": d.get("internal_note")})
        if d.get("review_withdrawn"):
            plan.update(status="draft", reviewed_by=None)
        txn.put("plan", e.subject, plan)

    def on_PlanReviewed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        plan.update(status="reviewed", reviewed_by=d["reviewed_by"], reviewed_at=e.time.isoformat())
        txn.put("plan", e.subject, plan)

    def on_PlanApproved(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        plan.update(status="approved", approved_by=d["approved_by"], approved_at=e.time.isoformat())
        txn.put("plan", e.subject, plan)

    def on_PlanReported(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        plan.update(status="reported", reported={k: d[k] for k in ("compiled_by", "reported_to", "reported_on")})
        txn.put("plan", e.subject, plan)

    def on_PlanPublished(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        plan.update(status="published", published_at=e.time.isoformat(), published_by=d.get("published_by"))
        txn.put("plan", e.subject, plan)

    def on_PlanAmended(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        topic = self._link_topic(txn, d["topic_id"], plan)
        plan["amendments"].append({
            **self._item(d, topic, e), "number": len(plan["amendments"]) + 1,
            "reason": d["reason"], "approved_by": d["approved_by"],
        })
        txn.put("plan", e.subject, plan)


# -- queries: each body's view of the same documents -------------------------------

def _scheduled(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Items in force: the approved items and every recorded amendment."""
    return [*plan["items"], *plan["amendments"]]


def government_catalogue(views: ViewStore, year: int) -> dict[str, Any]:
    plans = [p for p in views.list("plan") if p["kind"] == "government" and p["year"] == year]
    return {"year": year, "plans": sorted(plans, key=lambda p: p["drafted_at"])}


def awaiting_approval(views: ViewStore) -> list[dict[str, Any]]:
    """Plans their deciding body can decide now: non-empty, and reviewed if CPPCC."""
    return plan_desk(views)["to_decide"]


def plan_desk(views: ViewStore) -> dict[str, Any]:
    """What waits on each body: decisions (government leaders, the Party committee, a room's Party
    organisation), the chair meeting's reviews, village lists to report, and government
    catalogues decided but not yet published (publication is required, 000 三, 002 第七条(一))."""
    plans = sorted(views.list("plan"), key=lambda p: (p["year"], p["drafted_at"]))
    ready = [p for p in plans if p["status"] == "reviewed" or (
        p["status"] == "draft" and p["kind"] in ("government", "cppcc_room") and p["items"])]
    return {
        "to_decide": [{**p, "decided_by": DECIDED_BY[PlanKind(p["kind"])]} for p in ready],
        "to_review": [p for p in plans if p["kind"] == "cppcc" and p["status"] == "draft" and p["items"]],
        "to_report": [p for p in plans if p["kind"] == "village" and p["status"] == "draft" and p["items"]],
        "to_publish": [p for p in plans if p["kind"] == "government" and p["status"] == "approved"],
    }


def topic_pipeline(views: ViewStore) -> dict[str, Any]:
    topics = views.list("topic")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for topic in topics:
        status = "planned" if topic.get("plans") else topic.get("status", "proposed")
        counts[topic.get("source", "unknown")][status] += 1
    return {
        "by_source": {source: dict(c) for source, c in sorted(counts.items())},
        "topics": sorted(topics, key=lambda t: t.get("proposed_at", "")),
    }


def department_schedule(views: ViewStore, department: str) -> list[dict[str, Any]]:
    rows = []
    for plan in views.list("plan"):
        if plan["status"] not in ("approved", "reported", "published"):
            continue
        for item in _scheduled(plan):
            if item["lead_department"] == department:
                rows.append({**item, "plan_id": plan["id"], "plan_kind": plan["kind"],
                             "year": plan["year"], "amendment": "number" in item})
    return sorted(rows, key=lambda r: (r["scheduled_month"] or "", r["title"] or ""))


_PUBLIC_ITEM = ("title", "description", "form", "lead_department", "scheduled_month", "participant_scope")


def public_plans(views: ViewStore, year: int | None = None) -> list[dict[str, Any]]:
    """What society sees: published plans, items without internal notes or screening remarks."""
    shown = []
    for plan in views.list("plan"):
        if plan["status"] != "published" or (year is not None and plan["year"] != year):
            continue
        shown.append({
            "id": plan["id"], "year": plan["year"], "kind": plan["kind"], "issuer": plan["issuer"],
            "published_at": plan["published_at"],
            "items": [{k: i.get(k) for k in _PUBLIC_ITEM} for i in plan["items"]],
            "amendments": [
                {**{k: a.get(k) for k in _PUBLIC_ITEM}, "number": a["number"], "reason": a["reason"]}
                for a in plan["amendments"]
            ],
        })
    return sorted(shown, key=lambda p: (p["year"], p["published_at"]))
