"""Stores written by the previous release still load: events stored before a field existed
are read with the field's old meaning (issue 11: a topic's proposer kind, a session's public
summary). Shown on a real SQLite store whose events are rewritten to their old shape."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

from services.catalog.application import CatalogApplication
from services.catalog.domain import Plan, Topic
from services.catalog.projections import CatalogViews
from services.sessions.application import SessionsApplication
from services.sessions.domain import Session
from services.sessions.projections import SessionViews
from shared.clock import FixedClock
from shared.config import Settings
from shared.replay import differences, rebuild


def _strip(path: Path, event_topic: str, *fields: str) -> int:
    """Remove ``fields`` from every stored ``event_topic`` event, as the old release wrote them."""
    rewritten = 0
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT rowid, state FROM stored_events WHERE topic = ?", (event_topic,)).fetchall()
        for rowid, state in rows:
            data = json.loads(state)
            for field in fields:
                data.pop(field)
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                       (json.dumps(data).encode(), rowid))
            rewritten += 1
    return rewritten


def test_topics_and_held_sessions_stored_by_the_previous_release_still_load(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store="sqlite")
    catalog = CatalogApplication(settings)
    topic_id = catalog.propose_topic(title="议题", description="说明", source="npc", proposer="县人大常委会",
                                     content_type="livelihood")
    plan_id = catalog.draft_plan(2026, "village", "城关镇")
    catalog.close()
    clock = FixedClock(date(2026, 10, 20))
    sessions = SessionsApplication(settings, clock)
    planned = [{"plan_id": "p", "plan_kind": "government", "form": "symposium"}]
    session_id = sessions.schedule_session(planned, topic_id=topic_id, form="symposium", title="座谈会",
                                           scheduled_for=date(2026, 10, 20), lead_department="县住建局",
                                           host="县政府办公室")
    sessions.hold(session_id, held_on=date(2026, 10, 20), attendees=["王"], minutes="纪要",
                  minutes_internal=True, notice_waiver_reason="紧急", recorded_by=None)
    sessions.close()

    assert _strip(tmp_path / "catalog-events.sqlite", "consultation.catalog.TopicProposed", "proposer_kind") == 1
    # The previous release had one grassroots kind and stored its name.
    with sqlite3.connect(tmp_path / "catalog-events.sqlite") as db:
        [(state,)] = db.execute("SELECT state FROM stored_events WHERE topic = ?",
                                ("consultation.catalog.PlanDrafted",)).fetchall()
        db.execute("UPDATE stored_events SET state = ? WHERE topic = ?",
                   (state.replace(b'"village"', b'"grassroots"'), "consultation.catalog.PlanDrafted"))
    assert _strip(tmp_path / "sessions-events.sqlite", "consultation.sessions.SessionHeld", "public_summary") == 1

    catalog = CatalogApplication(settings)
    topic = catalog.get(Topic, topic_id)
    assert (topic.proposer, topic.proposer_kind) == ("县人大常委会", "body")
    assert catalog.get(Plan, plan_id).kind == "village"
    envelope = catalog.envelopes(catalog.notifications(0))[0]
    assert envelope.data["proposer"] == "县人大常委会"
    # Views rebuilt from the old events read them with their old meaning, twice alike.
    first, _ = rebuild(catalog, [CatalogViews])
    second, _ = rebuild(catalog, [CatalogViews])
    assert differences(first.dump(), second.dump()) == []
    assert first.get("topic", topic_id)["proposer_kind"] == "body"
    assert first.get("plan", plan_id)["kind"] == "village"
    catalog.close()
    sessions = SessionsApplication(settings, clock)
    session = sessions.get(Session, session_id)
    assert session.held is not None and session.held["public_summary"] is None
    held = [e for e in sessions.envelopes(sessions.notifications(0)) if e.name == "SessionHeld"]
    assert held[0].data["minutes"] is None and held[0].data["public_summary"] is None
    views, _ = rebuild(sessions, [SessionViews])
    assert views.get("session", session_id)["public_summary"] is None
    sessions.close()


def _to_version_1(path: Path, event_topic: str, *added: str) -> int:
    """Rewrite every stored ``event_topic`` event as version 1 wrote it: no class_version,
    none of the fields version 2 added."""
    return _strip(path, event_topic, "class_version", *added)


def test_opinions_and_topics_stored_at_version_1_are_upcast_to_version_2(tmp_path: Path) -> None:
    """OpinionSubmitted and TopicProposed went to version 2 (received_via, inbound_id:
    docs/schema-evolution.md). A store written before reads, and publishes, in the new shape."""
    from services.feedback.application import FeedbackApplication
    from services.feedback.domain import Opinion

    settings = Settings(data_dir=tmp_path, store="sqlite")
    feedback = FeedbackApplication(settings)
    opinion_id, _ = feedback.submit_opinion(
        {"name": "赵六"}, topic=None, session=None, topic_id=None, session_id=None, channel="grassroots",
        platform_level="village_station", platform="清水村说事站", category="public_interest",
        content="村道路灯损坏", confidential=False, addressed_to=None)
    feedback.close()
    catalog = CatalogApplication(settings)
    topic_id = catalog.propose_topic(title="议题", description="说明", source="npc", proposer="县人大常委会",
                                     content_type="livelihood")
    catalog.close()
    with sqlite3.connect(tmp_path / "feedback-events.sqlite") as db:
        [(state,)] = db.execute("SELECT state FROM stored_events").fetchall()
    assert json.loads(state)["class_version"] == 2 and json.loads(state)["received_via"] is None

    assert _to_version_1(tmp_path / "feedback-events.sqlite", "consultation.feedback.OpinionSubmitted",
                         "received_via", "inbound_id") == 1
    assert _to_version_1(tmp_path / "catalog-events.sqlite", "consultation.catalog.TopicProposed",
                         "received_via", "inbound_id") == 1

    feedback = FeedbackApplication(settings)
    opinion = feedback.get(Opinion, opinion_id)
    assert (opinion.received_via, opinion.inbound_id, opinion.platform) == (None, None, "清水村说事站")
    [submitted] = feedback.envelopes(feedback.notifications(0))
    assert submitted.data["received_via"] is None and submitted.data["inbound_id"] is None
    assert submitted.actor == opinion.author_ref  # not the bus: it came some other way
    feedback.close()
    catalog = CatalogApplication(settings)
    topic = catalog.get(Topic, topic_id)
    assert (topic.received_via, topic.title) == (None, "议题")
    [proposed] = catalog.envelopes(catalog.notifications(0))
    assert proposed.data["received_via"] is None and proposed.actor == "县人大常委会"
    catalog.close()
