"""The trace (全过程留痕): every event of every service that belongs to a topic's chain.

Fed from Kafka. Steps are stored per subject (aggregate), and each subject is
linked to the topics its events name, so an aggregate whose later events do not
repeat the topic id (a plan approved, a session held) still shows in the trace,
and a proposal linked after the fact brings its earlier steps with it.
"""

from __future__ import annotations

from typing import Any

from shared.config import SERVICE_TOPICS
from shared.envelope import CloudEvent
from shared.projection import ViewProjection
from shared.stores import ViewStore, ViewTransaction


class Trace(ViewProjection):
    name = "trace"
    kafka_topics = tuple(SERVICE_TOPICS.values())

    def apply(self, event: CloudEvent, txn: ViewTransaction) -> None:
        step = {
            "type": event.name,
            "service": event.service,
            "time": event.time.isoformat(),
            "actor": event.actor,
            "subject": event.subject,
            "event_id": event.id,
            "topic_id": event.topicid,
            "sequence": event.sequence,
        }
        key = f"{event.subject}/{event.time.isoformat()}/{event.service}/{event.sequence:012d}"
        txn.put("step", key, step)
        if event.topicid:
            self._link(txn, event.topicid, event.subject)
            proposal = event.data.get("proposal_id")
            if proposal:
                self._link(txn, event.topicid, str(proposal))

    @staticmethod
    def _link(txn: ViewTransaction, topic_id: str, subject: str) -> None:
        txn.put("link", f"{topic_id}/{subject}", {"topic_id": topic_id, "subject": subject})


def trace(views: ViewStore, topic_id: str) -> list[dict[str, Any]] | None:
    links = views.list("link", prefix=f"{topic_id}/")
    if not links:
        return None
    steps = [
        step
        for link in links
        for step in views.list("step", prefix=f"{link['subject']}/")
        if step.get("topic_id") in (None, topic_id)
    ]
    steps.sort(key=lambda s: (s["time"], s["service"], s["sequence"]))
    return steps
