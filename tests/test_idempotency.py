"""A creating request sent again with its ``Idempotency-Key``: nothing more is stored or published.

Real broker, both stores. The retry is what a department's system sends after losing the
answer: the same key, the same body, the same caller.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

import httpx
import pytest
from eventsourcing.persistence import RecordConflictError

from services.catalog.api import TopicIn, topic_fields
from services.catalog.application import CatalogApplication
from services.catalog.domain import Plan, Topic
from shared import idempotency
from shared.access import Role
from shared.config import SERVICE_TOPICS, Settings
from tests.conftest import at_once
from tests.harness import RunningSystem, read_topic, wait_for
from tests.test_inbound import accepted_topic

TOPIC = {"title": "老旧小区加装电梯", "description": "说明", "source": "government", "proposer": "县政府办公室",
         "content_type": "livelihood"}


def keyed(system: RunningSystem, key: str, **identity: Any) -> dict[str, Any]:
    signed = system.as_(identity.pop("role", Role.government_office), **identity)
    return {**signed, "Idempotency-Key": key}


def stored(system: RunningSystem, service: str, aggregate_id: str) -> int:
    """How many events the service's store holds for one aggregate."""
    return len(system.services[service].app.recorder.select_events(UUID(aggregate_id)))


def on_kafka(system: RunningSystem, service: str, subject: str, count: int) -> list[dict[str, Any]]:
    """The service's events about ``subject`` on its topic, once ``count`` of them are there."""
    def published() -> list[dict[str, Any]] | None:
        records = read_topic(system.settings.kafka_bootstrap_servers,
                             system.settings.topic(SERVICE_TOPICS[service]), 1.0)
        mine = [event for r in records if (event := json.loads(r.value))["subject"] == subject]
        return mine if len(mine) >= count else None

    return wait_for(published, 30, f"{count} events of {subject} on Kafka")


def test_a_topic_posted_again_with_its_key_is_the_same_topic(system: RunningSystem) -> None:
    key = str(uuid.uuid4())
    first = system.post("/catalog/topics", TOPIC, headers=keyed(system, key, name="王芳"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = system.post("/catalog/topics", TOPIC, headers=keyed(system, key, name="王芳"))
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    topic_id = first.json()["id"]
    assert stored(system, "catalog", topic_id) == 1
    # Sent again after the topic moved on: still the same topic, still unchanged by the retry.
    system.post(f"/catalog/topics/{topic_id}/screening", {"decision": "accepted", "screened_by": "政协办公室"},
                expect=200)
    assert system.post("/catalog/topics", TOPIC, headers=keyed(system, key, name="王芳")).json() == first.json()
    assert stored(system, "catalog", topic_id) == 2
    assert [e["type"].split(".")[2] for e in on_kafka(system, "catalog", topic_id, 2)] == [
        "TopicProposed", "TopicAccepted"]

    # Another body, another caller or another key is another request; no key, a new topic each time.
    other = {
        "body": system.post("/catalog/topics", {**TOPIC, "title": "另一议题"}, headers=keyed(system, key, name="王芳")),
        "caller": system.post("/catalog/topics", TOPIC, headers=keyed(system, key, name="李明")),
        "key": system.post("/catalog/topics", TOPIC, headers=keyed(system, str(uuid.uuid4()), name="王芳")),
        "none": system.post("/catalog/topics", TOPIC, headers=system.as_(Role.government_office, "王芳")),
        "none again": system.post("/catalog/topics", TOPIC, headers=system.as_(Role.government_office, "王芳")),
    }
    ids = {what: response.json()["id"] for what, response in other.items()}
    assert all(r.status_code == 201 and "Idempotent-Replayed" not in r.headers for r in other.values())
    assert len({topic_id, *ids.values()}) == 6, ids


def test_the_same_request_sent_at_once_from_many_threads_is_stored_once(system: RunningSystem) -> None:
    headers = keyed(system, "batch-2026-12-05/17", name="王芳")

    def send() -> httpx.Response:
        with httpx.Client(base_url=str(system.http.base_url), timeout=30) as client:
            return client.post("/catalog/topics", json=TOPIC, headers=headers)

    answers, errors = at_once(send, 12)
    assert not errors
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    topic_id = answers[0].json()["id"]
    assert stored(system, "catalog", topic_id) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 11
    assert len(on_kafka(system, "catalog", topic_id, 1)) == 1


def test_an_opinion_posted_again_is_the_same_opinion_of_the_same_author(system: RunningSystem) -> None:
    topic_id = accepted_topic(system)
    body = {"channel": "online", "topic_id": topic_id, "content": "建议增加社区食堂的供餐点",
            "author": {"name": "李四", "phone": "13800138000"}}
    headers = keyed(system, "12345-call-0087", name="热线座席")
    first = system.post("/feedback/opinions", body, headers=headers)
    assert first.status_code == 201, first.text
    again = system.post("/feedback/opinions", body, headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored(system, "feedback", first.json()["id"]) == 1
    mine = wait_for(lambda: system.get(f"/feedback/authors/{first.json()['author_ref']}/opinions") or None, 30,
                    "the author's opinions")
    assert [o["id"] for o in mine] == [first.json()["id"]]


def test_a_key_that_is_no_key_is_refused_naming_the_header(system: RunningSystem) -> None:
    before = system.services["catalog"].app.max_position()
    for key in ("x" * 256, "two words", "键", ""):
        headers = {**system.as_(Role.government_office, "王芳"), "Idempotency-Key": key.encode()}
        response = system.http.post("/catalog/topics", json=TOPIC, headers=headers)
        assert response.status_code == 422, (key, response.text)
        problem = response.json()
        assert problem["errors"][0]["field"] == "header.Idempotency-Key", problem
        assert problem["rule"] == "idempotency_key", problem
        assert "1 to 255 visible ASCII characters" in problem["detail"], problem
    assert system.services["catalog"].app.max_position() == before


def test_a_person_erased_by_a_request_sent_again_is_erased_once(system: RunningSystem) -> None:
    topic_id = accepted_topic(system)
    body = {"channel": "online", "topic_id": topic_id, "content": "建议增加社区食堂的供餐点",
            "author": {"name": "赵六", "phone": "13900139000"}}
    ref = system.post("/feedback/opinions", body, expect=201).json()["author_ref"]
    erasure = {"requested_by": "赵六", "reason": "本人申请删除个人信息"}
    headers = keyed(system, "erasure-0001", name="信访窗口")
    first = system.post(f"/feedback/authors/{ref}/erasure", erasure, expect=201, headers=headers)
    again = system.post(f"/feedback/authors/{ref}/erasure", erasure, expect=201, headers=headers)
    assert (again.json(), again.headers["Idempotent-Replayed"]) == (first.json(), "true")
    assert stored(system, "feedback", first.json()["id"]) == 1
    # Without the key (or with another), erasing again is what it was: refused, the person is gone.
    refused = system.post(f"/feedback/authors/{ref}/erasure", erasure,
                                headers=system.as_(Role.government_office, "信访窗口"))
    assert (refused.status_code, refused.json()["rule"]) == (409, "already_erased")


def test_a_command_that_saves_again_after_a_conflict_makes_the_same_ids(settings: Settings) -> None:
    """The command's own second try (a raced key, a decision counted meanwhile) must make the
    ids its first try made, or a request sent again would not find what it stored."""
    app = CatalogApplication(settings)
    try:
        topic_id = app.propose_topic(**topic_fields(TopicIn.model_validate(TOPIC)))
        stale = app.get(Topic, topic_id)
        app.screen_topic(topic_id, "accepted", None, "政协办公室")
        request = idempotency.RequestIds("issuer|王芳", "POST", "/catalog/plans", "k-1", b"{}")
        token = idempotency.current.set(request)
        try:
            plan = Plan(year=2026, kind="government", issuer="县政府办公室")
            stale.screen("accepted", None, "政协办公室")
            with pytest.raises(RecordConflictError):
                app.save(plan, stale)  # the topic changed meanwhile: nothing of this save is stored
            assert not app.recorder.select_events(plan.id)
            again = Plan(year=2026, kind="government", issuer="县政府办公室")
            assert again.id == plan.id
            app.save(again)
            assert not request.replayed
        finally:
            idempotency.current.reset(token)

        # The same request sent again: the same id, its save finds the first one's events.
        retry = idempotency.RequestIds("issuer|王芳", "POST", "/catalog/plans", "k-1", b"{}")
        token = idempotency.current.set(retry)
        try:
            assert app.save(Plan(year=2026, kind="government", issuer="县政府办公室")) == []
            assert retry.replayed and retry.issued == [plan.id]
        finally:
            idempotency.current.reset(token)
        assert len(app.recorder.select_events(plan.id)) == 1
    finally:
        app.close()
