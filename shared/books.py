"""What a service learns of other services' topics and sessions, from their Kafka topics.

Feedback and proposals never call the catalog or sessions: they read the events
those publish and keep what their own rules need (is the topic accepted, who
leads it, which sessions it has). Services call these by name (``known_topic``).
"""

from __future__ import annotations

from typing import Any

from shared.config import SERVICE_TOPICS
from shared.envelope import CloudEvent
from shared.projection import ViewProjection, existing, need
from shared.stores import ViewStore, ViewTransaction


class TopicBook(ViewProjection):
    """Topics (accepted or not, and their lead department) and sessions, from Kafka."""

    name = "topic_book"
    views = ("topic", "session")
    kafka_topics = (SERVICE_TOPICS["catalog"], SERVICE_TOPICS["sessions"])

    @staticmethod
    def _topic(txn: ViewTransaction, topic_id: str) -> dict[str, Any]:
        return txn.get("topic", topic_id) or {"id": topic_id, "title": None, "status": "proposed",
                                              "lead_department": None}

    def on_TopicProposed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        topic = self._topic(txn, e.subject)
        txn.put("topic", e.subject, {**topic, "title": d.get("title")})

    def on_TopicAccepted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("topic", e.subject, {**self._topic(txn, e.subject), "status": "accepted"})

    def on_TopicRejected(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("topic", e.subject, {**self._topic(txn, e.subject), "status": "rejected"})

    def on_PlanItemAdded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id", "lead_department")
        txn.put("topic", d["topic_id"], {**self._topic(txn, d["topic_id"]),
                                         "lead_department": d["lead_department"]})

    on_PlanAmended = on_PlanItemAdded

    def on_SessionScheduled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id", "lead_department")
        txn.put("session", e.subject, {"id": e.subject, "topic_id": d["topic_id"],
                                       "lead_department": d["lead_department"], "status": "scheduled"})

    def on_SessionCancelled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        session = existing(txn, "session", e.subject, e, "scheduled")
        txn.put("session", e.subject, {**session, "status": "cancelled"})


def known_topic(views: ViewStore, topic_id: str) -> dict[str, Any] | None:
    return views.get("topic", topic_id)


def known_session(views: ViewStore, session_id: str) -> dict[str, Any] | None:
    return views.get("session", session_id)
