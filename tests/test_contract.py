"""The published contract: docs/ is what the code generates, and it documents every message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import yaml

from shared.clock import FixedClock
from shared.config import Settings
from shared.contract import DOCS, write
from shared.domain import EVENTS
from shared.envelope import CloudEvent
from shared.inbound import COMMANDS
from shared.runtime import SERVICE_NAMES, spec


def test_the_committed_documents_are_what_the_code_generates() -> None:
    stale = write(check=True)
    assert not stale, (
        f"docs/ disagrees with the code in {[str(p.relative_to(DOCS.parent)) for p in stale]}. "
        "Regenerate with `.venv/bin/consult docs` and commit docs/.")


def test_consult_docs_check_names_a_stale_document_and_how_to_regenerate(tmp_path: Path) -> None:
    # A copy of the project whose asyncapi.yaml was edited by hand.
    copy = tmp_path / "project"
    shutil.copytree(DOCS.parent, copy, ignore=shutil.ignore_patterns(".venv", ".git", "var", "__pycache__"))
    (copy / "docs" / "asyncapi.yaml").write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", "import sys; from shared.cli import main; sys.exit(main())",
                             "docs", "--check"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "asyncapi.yaml" in result.stdout and "consult docs" in result.stdout


def _schemas() -> dict:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    return document


def _types_on(document: dict, topic: str) -> set[str]:
    channel = document["channels"][topic]
    [message] = channel["messages"].values()
    name = message["$ref"].rsplit("/", 1)[-1]
    payload = document["components"]["messages"][name]["payload"]
    schemas = document["components"]["schemas"]
    if "$ref" in payload:
        payload = schemas[payload["$ref"].rsplit("/", 1)[-1]]
    refs = [p["$ref"] for p in payload.get("oneOf", [])] or [None]
    types = set()
    for ref in refs:
        schema = schemas[ref.rsplit("/", 1)[-1]] if ref else payload
        types.add(schema["properties"]["type"]["const"])
        data = schema["properties"]["data"]
        assert "$ref" in data or "properties" in data, (ref, "has no data schema")
    return types


def test_every_topic_and_every_published_event_type_has_a_schema() -> None:
    document = _schemas()
    assert set(document["channels"]) == {
        "consultation.catalog.v1", "consultation.sessions.v1", "consultation.proposals.v1",
        "consultation.feedback.v1", "consultation.outcomes.v1", "consultation.audit.v1",
        "consultation.inbound.v1", "consultation.inbound.replies.v1", "consultation.deadletter.v1"}
    for service in SERVICE_NAMES:
        spec(service)  # its domain registers its events in EVENTS when imported
        assert _types_on(document, f"consultation.{service}.v1") == {
            f"consultation.{service}.{name}.v1" for name in EVENTS[service]}
    outcomes = _types_on(document, "consultation.outcomes.v1")
    for service in SERVICE_NAMES:
        app = spec(service).application
        for name in app.outcomes:
            assert f"consultation.{service}.{name}.v1" in outcomes
            for version in app.outcome_versions.get(name, {}):
                assert f"consultation.{service}.{name}.v{version}" in outcomes
    assert "consultation.feedback.OpinionAnswered.v2" in outcomes
    assert _types_on(document, "consultation.inbound.v1") == {
        f"consultation.inbound.{name}.v1" for name in COMMANDS}


def test_each_inbound_command_is_taken_in_by_the_service_it_is_registered_to() -> None:
    taken = {name: service for service in SERVICE_NAMES for name in spec(service).inbound}
    assert taken == COMMANDS


def test_opinion_answered_v2_is_published_beside_v1_until_the_window_closes(tmp_path: Path) -> None:
    from services.feedback.application import FeedbackApplication

    event = CloudEvent(
        id=str(uuid.uuid4()), source="/consultation/feedback", type="consultation.feedback.OpinionAnswered.v1",
        subject=str(uuid.uuid4()), time="2026-12-01T08:00:00Z", topicid=str(uuid.uuid4()), sequence=7,
        version=3, actor="县住建局",
        data={"round": 1, "disposition": "not_adopted", "reason": "资金不足", "answered_by": "县住建局",
              "answered_on": "2026-12-01", "feedback_due": {"due_on": "2026-12-20"}})
    settings = Settings(data_dir=tmp_path, store="sqlite", outcomes_v1_until=date(2027, 6, 30))
    during = FeedbackApplication(settings, FixedClock(date(2027, 6, 30)))
    try:
        # The opinion is not stored here: what its first event said is given as remembered.
        during._created[event.subject] = {"confidential": False, "topic_id": event.topicid}
        v1, v2 = during.outcome_forms(event)
    finally:
        during.close()
    assert v1.type.endswith(".v1") and v1.id == event.id and v1.data["answered_by"] == "县住建局"
    assert v2.type == "consultation.feedback.OpinionAnswered.v2" and v2.id != v1.id
    assert v2.data == {"opinion_id": event.subject, "topic_id": event.topicid, "round": 1,
                       "disposition": "not_adopted", "adopted": False, "reason": "资金不足",
                       "department": "县住建局", "answered_on": "2026-12-01"}
    after = FeedbackApplication(settings, FixedClock(date(2027, 7, 1)))
    try:
        after._created[event.subject] = {"confidential": False, "topic_id": event.topicid}
        assert [f.type for f in after.outcome_forms(event)] == ["consultation.feedback.OpinionAnswered.v2"]
        after._created[event.subject] = {"confidential": True, "topic_id": event.topicid}
        assert after.outcome_forms(event) == []
    finally:
        after.close()
    assert json.loads(v2.to_bytes())["type"].endswith(".v2")
