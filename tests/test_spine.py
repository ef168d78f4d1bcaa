"""Issue 2: the spine, proven against a real broker and real stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import SERVICE_TOPICS, Settings
from shared.embedded import EmbeddedBroker, free_port, port_open
from shared.envelope import CloudEvent, event_id
from tests.harness import RunningSystem, cli_token, produce, read_topic, wait_for

TOPIC = {
    "title": "老旧小区加装电梯",
    "description": "征集加装电梯的意见",
    "source": "public_solicitation",
    "proposer": "市民代表",
    "content_type": "livelihood",
}


def propose(system: RunningSystem, **changes: Any) -> str:
    return system.post("/catalog/topics", {**TOPIC, **changes}, expect=201).json()["id"]


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for a service in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULT_", "KAFKA_", "POSTGRES_"))}
    env.update(settings.environment())
    env.update({"CONSULT_LOG_FORMAT": "json", "CONSULT_POLL_INTERVAL": "0.1"})
    return env


def foreign_event(sequence: int, topic_id: str | None = None, name: str = "TopicProposed",
                  version: int = 1) -> CloudEvent:
    """A genuine catalog event produced straight onto the topic, as another catalog node would:
    its id is the one the catalog derives from (service, subject, version)."""
    subject = topic_id or str(uuid.uuid4())
    return CloudEvent(
        id=event_id("catalog", subject, version), source="/consultation/catalog",
        type=f"consultation.catalog.{name}.v1", subject=subject, time=datetime.now(UTC),
        data={"title": f"t{sequence}"}, topicid=subject, sequence=sequence, actor="tester",
        version=version,
    )


# -- the slice ---------------------------------------------------------------------------

def test_topic_reaches_the_trace_through_kafka(system: RunningSystem) -> None:
    topic_id = propose(system)
    steps = system.wait_trace(topic_id, 1)
    assert [(s["type"], s["service"], s["actor"], s["subject"]) for s in steps] == [
        ("TopicProposed", "catalog", "government_office/经办人", topic_id)
    ]
    # The event on Kafka is a structured-mode CloudEvent keyed by the aggregate id.
    topic = system.settings.topic(SERVICE_TOPICS["catalog"])
    records = [r for r in read_topic(system.settings.kafka_bootstrap_servers, topic) if r.key == topic_id.encode()]
    assert len(records) == 1
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"
    event = json.loads(records[0].value)
    assert event["specversion"] == "1.0"
    assert event["type"] == "consultation.catalog.TopicProposed.v1"
    assert event["source"] == "/consultation/catalog"
    assert event["subject"] == event["topicid"] == topic_id
    assert event["datacontenttype"] == "application/json"
    assert event["sequence"] >= 1 and event["id"] == steps[0]["event_id"]


def test_health_reports_store_broker_relay_and_consumers(system: RunningSystem) -> None:
    propose(system)
    for name in ("catalog", "sessions", "proposals", "feedback"):
        health = wait_for(lambda n=name: (h := system.get(f"/{n}/health"))["relay"]["lag"] == 0 and h,
                          30, f"{name} relay caught up")
        assert {k: health[k] for k in ("service", "status", "store", "broker", "problems")} == {
            "service": name, "status": "ok", "store": True, "broker": True, "problems": []
        }
        assert health["relay"]["parked"] == [] and health["relay"]["published"] == health["relay"]["stored"]
        for consumer in health["consumers"]:
            assert consumer["running"] and consumer["assigned_partitions"] > 0, consumer
    assert system.get("/catalog/health")["relay"]["stored"] == 1
    assert [c["projection"] for c in system.get("/feedback/health")["consumers"]] == [
        "topic_book", "trace", "proposal_opinions", "inbound"]
    assert [c["projection"] for c in system.get("/catalog/health")["consumers"]] == [
        "proposal_conversions", "inbound"]


def test_bad_request_names_field_and_rule_and_stores_nothing(system: RunningSystem) -> None:
    response = system.post("/catalog/topics", {**TOPIC, "source": "rumour", "title": ""})
    assert response.status_code == 422
    fields = {e["field"]: e["rule"] for e in response.json()["errors"]}
    assert fields == {"title": "string_too_short", "source": "enum"}
    assert system.services["catalog"].app.max_position() == 0


# -- durability ----------------------------------------------------------------------------

def _start_service(name: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(port), 30, f"{name} listening")
    return process


def test_crash_between_commit_and_publish_loses_nothing(settings: Settings) -> None:
    env = settings_env(settings)
    port = free_port()
    # The relay is held back, as if the process died right after the commit.
    catalog = _start_service("catalog", {**env, "CONSULT_RELAY_ENABLED": "false"}, port)
    try:
        topic_id = httpx.post(f"http://127.0.0.1:{port}/catalog/topics", json=TOPIC, timeout=10,
                              headers=cli_token(settings.data_dir)).json()["id"]
    finally:
        catalog.send_signal(signal.SIGKILL)
        catalog.wait()
    kafka_topic = settings.topic(SERVICE_TOPICS["catalog"])
    with RunningSystem(settings, ["feedback"]) as feedback:
        assert feedback.trace(topic_id) == []
        catalog = _start_service("catalog", env, port)
        try:
            steps = feedback.wait_trace(topic_id, 1)
            time.sleep(1.0)  # room for a (wrong) second publication to show up
            records = [r for r in read_topic(settings.kafka_bootstrap_servers, kafka_topic)
                       if r.key == topic_id.encode()]
            assert len(records) == 1
            assert len(feedback.trace(topic_id)) == len(steps) == 1
        finally:
            catalog.send_signal(signal.SIGTERM)
            catalog.wait(30)


def test_duplicate_delivery_changes_no_read_model(system: RunningSystem) -> None:
    topic_id = propose(system)
    system.wait_trace(topic_id, 1)
    kafka_topic = system.settings.topic(SERVICE_TOPICS["catalog"])
    original = next(r for r in read_topic(system.settings.kafka_bootstrap_servers, kafka_topic)
                    if r.key == topic_id.encode())
    views = system.services["feedback"].views
    before = views.dump()
    marker = foreign_event(10_000)
    produce(system.settings.kafka_bootstrap_servers, kafka_topic, [
        (original.key, original.value),  # the same message again (a re-publication)
        (marker.subject.encode(), marker.to_bytes()),
    ])
    system.wait_trace(marker.subject, 1)
    after = {k: v for k, v in views.dump().items() if marker.subject not in k[1]}
    assert after == before
    # The same event handed to the projection directly a second time: refused as a duplicate.
    trace = system.services["feedback"].projections["trace"]
    assert trace.handle(CloudEvent.model_validate_json(original.value)) is False
    # In a batch (how views take events from Kafka), one duplicate leaves the whole batch
    # unapplied, so the consumer applies its events one by one.
    fresh = foreign_event(10_001)
    assert trace.handle_many([fresh, CloudEvent.model_validate_json(original.value)]) is None
    assert system.trace(fresh.subject) == []
    assert trace.handle_many([fresh]) == 1 and len(system.trace(fresh.subject)) == 1


def test_invalid_message_goes_to_dead_letters_and_consumption_continues(system: RunningSystem) -> None:
    bootstrap = system.settings.kafka_bootstrap_servers
    kafka_topic = system.settings.topic(SERVICE_TOPICS["catalog"])
    broken = json.loads(foreign_event(20_000).to_bytes())
    del broken["subject"]
    later = foreign_event(20_001)
    produce(bootstrap, kafka_topic, [
        (b"k1", b"not json at all"),
        (b"k2", json.dumps(broken).encode()),
        (later.subject.encode(), later.to_bytes()),
    ])
    # Bodies that a framework would try to parse before the handler: nested beyond any
    # parser's depth (no content type), and "JSON" that is not. Neither may hold up a partition.
    produce(bootstrap, kafka_topic, [(b"k3", b"[" * 100_000)], headers=[])
    produce(bootstrap, kafka_topic, [(b"k4", b"{not json")], headers=[("content-type", b"application/json")])
    system.wait_trace(later.subject, 1)
    dead = wait_for(
        lambda: (rs := read_topic(bootstrap, system.settings.topic("consultation.deadletter.v1")))
        and len(rs) >= 4 and rs,
        30, "four dead letters",
    )
    reasons = {r.key: dict(r.headers)["deadletter-reason"].decode() for r in dead}
    assert "invalid CloudEvent" in reasons[b"k1"]
    assert "subject: Field required" in reasons[b"k2"]
    assert "invalid CloudEvent" in reasons[b"k3"] and "invalid CloudEvent" in reasons[b"k4"]
    assert dict(dead[0].headers)["deadletter-topic"].decode() == kafka_topic


def test_two_consumers_in_one_group_split_partitions_and_process_each_once(settings: Settings) -> None:
    with RunningSystem(settings, ["feedback"]) as one, RunningSystem(settings, ["feedback"]) as two:
        def assigned(system: RunningSystem) -> int:
            subscriber = next(sub for projection, _, sub in system.services["feedback"].subscribers
                              if projection.name == "trace")
            consumer = subscriber.consumer
            return len(consumer.assignment()) if consumer else 0

        # Wait for the group to settle with both members holding partitions.
        wait_for(lambda: assigned(one) > 0 and assigned(two) > 0
                 and assigned(one) + assigned(two) == 4 * settings.kafka_partitions, 60, "rebalance")
        events = [foreign_event(30_000 + i) for i in range(40)]
        produce(settings.kafka_bootstrap_servers, settings.topic(SERVICE_TOPICS["catalog"]),
                [(e.subject.encode(), e.to_bytes()) for e in events])
        for e in events:
            assert len(one.wait_trace(e.subject, 1)) == 1
        counts = [s.services["feedback"].projections["trace"].applied for s in (one, two)]
        assert sum(counts) == len(events)
        assert all(c > 0 for c in counts), counts


def test_commands_succeed_while_the_broker_is_down(settings: Settings, tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port()).start()
    own = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                      "kafka_idempotence": False})
    try:
        with RunningSystem(own) as system:
            first = propose(system, title="停机前")
            system.wait_trace(first, 1)
            broker.stop()
            during, started = [], time.monotonic()
            while time.monotonic() - started < 30:
                during.append(propose(system, title=f"停机中 {len(during)}"))
                time.sleep(3)
            broker.start()  # empty: the embedded broker keeps nothing across restarts
            for topic_id in [first, *during]:
                system.wait_trace(topic_id, 1, timeout=90)
            keys = {r.key.decode() for r in read_topic(
                own.kafka_bootstrap_servers, own.topic(SERVICE_TOPICS["catalog"]))}
            assert {first, *during} <= keys
            assert len(during) >= 9
    finally:
        broker.stop()


# -- the embedded runtime --------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite"])
def test_consult_up_runs_the_slice_and_survives_a_restart(tmp_path: Path, store: str) -> None:
    port, broker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULT_", "KAFKA_"))}
    command = [sys.executable, "-m", "shared.cli", "up", "--port", str(port),
               "--broker-port", str(broker_port), "--data-dir", str(tmp_path / "var")]
    base = f"http://127.0.0.1:{port}"

    def up() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _ok(f"{base}/feedback/health"), 60, "consult up")
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(30) == 0
        assert not port_open(port) and not port_open(broker_port)

    process = up()
    auth = cli_token(tmp_path / "var")
    try:
        topic_id = httpx.post(f"{base}/catalog/topics", json=TOPIC, headers=auth).json()["id"]
        wait_for(lambda: _steps(base, topic_id, auth) == 1, 30, "trace")
    finally:
        stop(process)
    process = up()
    try:
        # A fresh (empty) broker: the relay brings it up to date from the store.
        wait_for(lambda: any(r.key == topic_id.encode() for r in read_topic(
            f"127.0.0.1:{broker_port}", "consultation.catalog.v1")), 30, "republication")
        assert _steps(base, topic_id, auth) == 1
    finally:
        stop(process)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _steps(base: str, topic_id: str, auth: dict[str, str]) -> int:
    response = httpx.get(f"{base}/feedback/traces/{topic_id}", timeout=5, headers=auth)
    return len(response.json()["steps"]) if response.status_code == 200 else 0
