"""A release that changes a projection: its views are built again from the first event.

Real broker, both stores. The change is made as a release makes it: the projection's
``version`` raised and what it writes changed, then the system started again on the same
stores and topics.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventsourcing.persistence import Tracking

from services.catalog.projections import CatalogViews
from services.feedback.projections import FeedbackViews, Trace
from shared.config import Settings
from shared.envelope import CloudEvent
from shared.projection import start_over_if_changed
from shared.stores import ViewTransaction, open_view_store
from tests import steps
from tests.harness import RunningSystem, wait_for
from tests.test_feedback import planned_topic, views_caught_up

SERVICES = ["catalog", "feedback"]  # the trace (feedback) follows the catalog's topic


def test_a_changed_projection_builds_its_views_again_from_the_first_event(settings: Settings,
                                                                          monkeypatch: Any) -> None:
    with RunningSystem(settings, SERVICES) as system:
        topics = [steps.topic(system) for _ in range(3)]
        catalog, feedback = system.services["catalog"], system.services["feedback"]
        wait_for(lambda: all(catalog.views.get("topic", t) for t in topics), 30, "the catalog's views")
        traces = {t: system.wait_trace(t, 2) for t in topics}
        # What an earlier version wrote and the next one does not.
        with catalog.views.transaction() as txn:
            txn.put("topic", "left-by-version-1", {"id": "left-by-version-1"})
        with feedback.views.transaction() as txn:
            txn.put("link", f"{topics[0]}/left-by-version-1", {"topic_id": topics[0], "subject": "x",
                                                                "whole": True})

    # Version 2 of each: the catalog's topics carry a new field; the trace is as it was.
    proposed = CatalogViews.on_TopicProposed

    def on_TopicProposed(self: CatalogViews, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        proposed(self, e, d, txn)
        txn.put("topic", e.subject, {**txn.get("topic", e.subject), "edition": 2})

    monkeypatch.setattr(CatalogViews, "on_TopicProposed", on_TopicProposed)
    monkeypatch.setattr(CatalogViews, "version", 2)
    monkeypatch.setattr(Trace, "version", 2)
    with RunningSystem(settings, SERVICES) as system:
        catalog, feedback = system.services["catalog"], system.services["feedback"]
        assert (catalog.rebuilding, feedback.rebuilding) == ({"catalog_views": 2}, {"trace": 2})
        rebuilt = wait_for(lambda: (docs := [catalog.views.get("topic", t) for t in topics])
                           and all(d and d.get("edition") == 2 and d["status"] == "accepted" for d in docs)
                           and docs, 30, "the catalog's topics built again")
        assert [d["id"] for d in rebuilt] == topics
        assert catalog.views.get("topic", "left-by-version-1") is None
        assert wait_for(lambda: all(system.trace(t) == traces[t] for t in topics) or None, 30,
                        "the trace built again from the topics")
        assert feedback.views.get("link", f"{topics[0]}/left-by-version-1") is None
        assert [g for _, g, _ in feedback.subscribers if g.endswith(".trace.v2")]
        health = wait_for(lambda: (h := system.get("/catalog/health", expect=None))["status"] == "ok" and h, 30,
                          "the catalog's health once its views caught up")
        assert not health["problems"]
        assert wait_for(lambda: not (h := system.get("/feedback/health", expect=None))["problems"] or None, 30,
                        "the feedback service's health once the trace caught up")
        assert catalog.views.projection_built_by("catalog_views") == 2
        assert feedback.views.projection_built_by("trace") == 2
        with catalog.views.transaction() as txn:  # a document only a second rebuild would drop
            txn.put("topic", "written-by-version-2", {"id": "written-by-version-2"})
        fourth = steps.topic(system)
        wait_for(lambda: (d := catalog.views.get("topic", fourth)) and d.get("edition") == 2, 30, "a new topic")

    # Started again at the same version: nothing is built again.
    with RunningSystem(settings, SERVICES) as system:
        catalog, feedback = system.services["catalog"], system.services["feedback"]
        assert not catalog.rebuilding and not feedback.rebuilding
        assert catalog.views.get("topic", "written-by-version-2") is not None
        with catalog.views.transaction() as txn:
            txn.delete("topic", "written-by-version-2")


def test_of_two_processes_starting_over_at_once_one_forgets(settings: Settings) -> None:
    """Two replicas of a service start on the new release together: one forgets what the
    earlier version wrote; the other finds the new version recorded and forgets nothing (else
    it could delete what the first one's followers had begun to write again)."""
    first = open_view_store(settings, "catalog")
    second = open_view_store(settings, "catalog")
    try:
        assert first.projection_built_by("catalog_views") is None
        with first.transaction(Tracking("catalog_views:catalog", 7)) as txn:
            txn.put("topic", "a", {"id": "a"})
            txn.put("plan", "b", {"id": "b"})
            txn.put("step", "c", {"id": "c"})  # another projection's view: not forgotten
        with first.transaction(Tracking("catalog_views_old:catalog", 3)):
            pass  # a projection whose name begins alike: not its records
        assert first.projection_built_by("catalog_views") == 1  # written before versions were recorded

        start = threading.Barrier(2)

        def start_over(store: Any) -> bool:
            start.wait()
            return store.start_over("catalog_views", ("topic", "plan"), 2)

        with ThreadPoolExecutor(2) as pool:
            done = list(pool.map(start_over, [first, second]))
        assert sorted(done) == [False, True]
        assert first.projection_built_by("catalog_views") == 2
        assert first.max_tracking_id("catalog_views:catalog") is None
        assert first.max_tracking_id("catalog_views_old:catalog") == 3
        assert (first.get("topic", "a"), first.get("plan", "b")) == (None, None)
        assert first.get("step", "c") == {"id": "c"}

        class Changed(CatalogViews):
            name = "catalog_views"
            version = 3

        assert start_over_if_changed(Changed(second)) == 2
        assert start_over_if_changed(Changed(first)) is None
        assert second.projection_built_by("catalog_views") == 3
    finally:
        first.datastore.close()
        second.datastore.close()


def test_the_release_that_links_decisions_to_topics_rebuilds_a_store_of_the_one_before(
        settings: Settings, monkeypatch: Any) -> None:
    """Version 2 of the feedback views links each decision to its topic, which a topic's public
    page reads. A store version 1 built has no links; started on version 2, it gets them all."""
    drafted = FeedbackViews.on_DecisionDrafted

    def as_version_1(self: FeedbackViews, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        drafted(self, e, d, txn)
        txn.delete("topic_decision", f"{d['topic_id']}/{e.subject}")  # what version 1 did not write

    draft = {"title": "养老服务补贴办法", "kind": "major_public_policy", "area": "elderly_care",
             "drafted_by": "县民政局"}
    with monkeypatch.context() as version_1:
        version_1.setattr(FeedbackViews, "version", 1)
        version_1.setattr(FeedbackViews, "on_DecisionDrafted", as_version_1)
        with RunningSystem(settings) as system:
            topic_id = planned_topic(system)
            decisions = [system.post("/feedback/decisions", {**draft, "topic_id": topic_id, "title": title},
                                     expect=201).json()["id"] for title in ("办法一", "办法二")]
            views_caught_up(system)
            assert system.get(f"/feedback/public/topics/{topic_id}")["decisions"] == []

    with RunningSystem(settings) as system:
        assert system.services["feedback"].rebuilding == {"feedback_views": 2}
        public = wait_for(lambda: system.get(f"/feedback/public/topics/{topic_id}")["decisions"] or None, 30,
                          "the topic's decisions after the upgrade")
        assert [d["id"] for d in public] == decisions
