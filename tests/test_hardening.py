"""Issue 8: no request, broker restart or stray message may silently stop events reaching Kafka.

One test (or a few) per failure seen, each on the real broker and, where a store
is involved, on SQLite and PostgreSQL. The process-level faults (SIGTERM, a dying
or stale embedded broker, ports in use) are in ``test_supervision.py``.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from shared.config import DEADLETTER_TOPIC, SERVICE_TOPICS, Settings
from shared.embedded import EmbeddedBroker, free_port
from shared.envelope import CloudEvent, event_id
from shared.workdays import WorkingCalendar
from tests import steps
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import RunningSystem, produce, read_topic, wait_for
from tests.test_sessions import planned_topic, schedule
from tests.test_spine import TOPIC, propose, settings_env

HAN = "协"  # three bytes in UTF-8


def rule_of(response: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["rule"] for e in response.json()["errors"]}


# -- 1. sizes: limits on every field and on the body; an event too large is parked ------------

def test_lists_texts_and_bodies_have_limits(settings: Settings) -> None:
    with RunningSystem(settings, ["catalog", "sessions"]) as system:
        session = schedule(system, planned_topic(system))
        person = {"name": "王委员", "role": "cppcc_member", "organization": "县政协"}
        before = system.services["sessions"].app.max_position()

        crowd = system.post(f"/sessions/{session}/invitations", {"participants": [person] * 201})
        assert crowd.status_code == 422 and rule_of(crowd) == {"participants": "too_long"}

        huge = system.post(f"/sessions/{session}/notice",
                           {"served_on": "2026-09-01", "materials": ["材料" * 600_000]})
        assert huge.status_code == 413, huge.text
        assert huge.json()["rule"] == "body_too_large"

        long_title = system.post(f"/sessions/{session}/notice",
                                 {"served_on": "2026-09-01", "materials": ["材" * 501]})
        assert long_title.status_code == 422 and rule_of(long_title) == {"materials.0": "string_too_long"}
        assert system.services["sessions"].app.max_position() == before

        system.post(f"/sessions/{session}/invitations", {"participants": [person] * 200}, expect=200)


def test_an_event_larger_than_publishable_is_refused_before_it_is_stored(settings: Settings) -> None:
    small = settings.model_copy(update={"max_event_bytes": 4_000})
    with RunningSystem(small, ["catalog"]) as system:
        problem = steps.refused(system, "catalog", "/catalog/topics", {**TOPIC, "description": HAN * 3_000},
                                422, "event_too_large", "at most 4,000")
        assert problem["errors"][0]["field"] == "body"
        propose(system, description=HAN * 1_000)


def test_an_unpublishable_event_is_parked_and_the_rest_flow(settings: Settings) -> None:
    """The broker (here: the producer's limit) cannot take one stored event: it is parked,
    reported, dead-lettered as a notice, and every later event still reaches Kafka,
    once, across a restart; `consult relay retry` publishes it once the limit allows."""
    narrow = settings.model_copy(update={"kafka_max_message_bytes": 6_000, "broker_check_interval": 0.5})
    bootstrap = settings.kafka_bootstrap_servers
    kafka_topic = settings.topic(SERVICE_TOPICS["catalog"])
    with RunningSystem(narrow, ["catalog", "feedback"]) as system:
        first = propose(system, title="之前")
        big = propose(system, title="过大", description=HAN * 3_000)
        after = propose(system, title="之后")
        system.wait_trace(after, 1)
        system.wait_trace(first, 1)
        parked_at = system.services["catalog"].app.max_position() - 1
        health = wait_for(lambda: (h := system.get("/catalog/health"))["relay"]["parked"] and h, 10, "parked")
        assert health["status"] == "degraded"
        assert health["problems"] == [f"1 event(s) parked, first at position {parked_at}"]
        assert health["relay"]["parked"][0]["position"] == parked_at
        assert health["relay"]["parked"][0]["event_id"] == event_id("catalog", big, 1)
        assert "too large" in health["relay"]["parked"][0]["reason"].lower() or \
            "larger" in health["relay"]["parked"][0]["reason"].lower()
        assert health["relay"]["lag"] == 0  # nothing behind it is waiting

    notice = wait_for(lambda: [r for r in read_topic(bootstrap, settings.topic(DEADLETTER_TOPIC))
                               if dict(r.headers).get("deadletter-position") == str(parked_at).encode()],
                      20, "the parked event's dead-letter notice")
    assert json.loads(notice[0].value)["event_id"] == event_id("catalog", big, 1)
    assert dict(notice[0].headers)["deadletter-topic"] == kafka_topic.encode()

    # A restart does not block the relay again, and re-sends nothing the broker had.
    with RunningSystem(narrow, ["catalog", "feedback"]) as system:
        later = propose(system, title="重启之后")
        system.wait_trace(later, 1)
        assert system.get("/catalog/health")["relay"]["parked"][0]["position"] == parked_at
    keys = [r.key.decode() for r in read_topic(bootstrap, kafka_topic)]
    assert sorted(keys) == sorted([first, after, later])

    # The operator raises the limit and asks for a retry.
    env = settings_env(settings)
    listed = subprocess.run([sys.executable, "-m", "shared.cli", "relay", "list", "--service", "catalog"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout.splitlines()[0])["position"] == parked_at, listed.stderr
    with RunningSystem(settings.model_copy(update={"broker_check_interval": 0.5}),
                       ["catalog", "feedback"]) as system:
        retried = subprocess.run(
            [sys.executable, "-m", "shared.cli", "relay", "retry", "--service", "catalog",
             "--position", str(parked_at), "--by", "运维值班员"],
            env=env, capture_output=True, text=True, timeout=60)
        assert retried.returncode == 0, retried.stderr
        system.wait_trace(big, 1)
        health = wait_for(lambda: (h := system.get("/catalog/health"))["status"] == "ok" and h, 20, "ok")
        assert health["relay"]["parked"] == []
    keys = [r.key.decode() for r in read_topic(bootstrap, kafka_topic)]
    assert sorted(keys) == sorted([first, after, later, big])


# -- 2. a broker that comes back empty while the system runs -----------------------------------

def test_a_broker_replaced_while_commands_arrive_gets_every_event(settings: Settings) -> None:
    broker = EmbeddedBroker(free_port()).start()
    own = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                      "kafka_idempotence": False, "broker_check_interval": 1.0})
    posted: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{system.port}", timeout=30, auth=system.auth) as client:
            while not stop.is_set():
                response = client.post("/catalog/topics", json={**TOPIC, "title": f"负载 {len(posted)}"})
                assert response.status_code == 201, response.text
                posted.append(response.json()["id"])
                time.sleep(0.1)

    try:
        with RunningSystem(own, ["catalog", "feedback"]) as system:
            worker = threading.Thread(target=load)
            worker.start()
            wait_for(lambda: len(posted) >= 10, 30, "load")
            broker.process.kill()  # type: ignore[union-attr]
            broker.process.wait()  # type: ignore[union-attr]
            broker.start()  # a fresh, empty broker on the same port
            wait_for(lambda: len(posted) >= 60, 60, "load after the replacement")
            stop.set()
            worker.join(30)
            _wait_traced(system, posted, timeout=120)
            assert all(len(system.trace(topic_id)) == 1 for topic_id in posted)
            app = system.services["catalog"].app
            stored = {e.id for e in app.envelopes(app.notifications(0, 10_000))}
            wait_for(lambda: system.get("/catalog/health")["relay"]["lag"] == 0, 30, "relay caught up")
            settled = read_topic(own.kafka_bootstrap_servers, own.topic(SERVICE_TOPICS["catalog"]))
            time.sleep(4 * own.broker_check_interval)  # no further republication once caught up
            records = read_topic(own.kafka_bootstrap_servers, own.topic(SERVICE_TOPICS["catalog"]))
            assert len(records) == len(settled)
        on_kafka = [json.loads(r.value)["id"] for r in records]
        assert set(on_kafka) == stored and len(stored) == len(posted)
        # Every topic exists again, with the configured partitions (never auto-created).
        assert _partitions(own) == {t: own.kafka_partitions for t in _contract_topics(own)}
    finally:
        stop.set()
        broker.stop()


def _wait_traced(system: RunningSystem, topic_ids: list[str], timeout: float) -> None:
    """Every topic in the trace; if not, which are missing and what the consumers say."""
    unseen = list(topic_ids)

    def all_seen() -> bool:
        unseen[:] = [t for t in unseen if not system.trace(t)]
        return not unseen

    try:
        wait_for(all_seen, timeout, "every topic in the trace")
    except AssertionError:
        health = system.get("/feedback/health", expect=None)
        # Where it stopped: on Kafka (then a consumer passed it) or never published again.
        settings = system.settings
        records = read_topic(settings.kafka_bootstrap_servers, settings.topic(SERVICE_TOPICS["catalog"]))
        found = [(r.partition, r.offset) for r in records if json.loads(r.value)["subject"] in unseen]
        raise AssertionError(f"{len(unseen)} of {len(topic_ids)} topics never reached the trace "
                             f"(first {unseen[:3]}); on Kafka at (partition, offset) {found}; catalog relay: "
                             f"{system.get('/catalog/health', expect=None).get('relay')}; "
                             f"feedback consumers: {health.get('consumers')}") from None


def test_batched_publication_raises_no_false_alarm(settings: Settings) -> None:
    """Many events per partition in one batch: the broker's end offsets must not be
    mistaken for a lost log (the embedded broker reports them per batch)."""
    quick = settings.model_copy(update={"broker_check_interval": 0.3})
    with RunningSystem(quick, ["catalog"]) as system:
        from services.catalog.domain import Topic

        topics = [Topic(**{**TOPIC, "title": f"批量 {i}", "proposal_id": None}) for i in range(40)]
        system.services["catalog"].app.save(*topics)  # one commit: the relay sends one batch
        ids = [str(t.id) for t in topics]
        wait_for(lambda: system.get("/catalog/health")["relay"]["lag"] == 0, 30, "relay caught up")
        time.sleep(10 * quick.broker_check_interval)
        keys = [r.key.decode() for r in read_topic(quick.kafka_bootstrap_servers,
                                                   quick.topic(SERVICE_TOPICS["catalog"]))]
        assert sorted(keys) == sorted(ids)
        assert not system.get("/catalog/health")["relay"]["republishing"]


def _contract_topics(settings: Settings) -> list[str]:
    from shared.config import ALL_TOPICS

    return [settings.topic(t) for t in ALL_TOPICS]


def _partitions(settings: Settings) -> dict[str, int]:
    import asyncio

    async def run() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(_contract_topics(settings))
            return {d["topic"]: len(d["partitions"]) for d in described}
        finally:
            await admin.close()

    return asyncio.run(run())


# -- 5. duplicates are recognised by identity, not by a claimed sequence ------------------------

def test_a_forged_sequence_hides_nothing(system: RunningSystem) -> None:
    settings = system.settings
    bootstrap, kafka_topic = settings.kafka_bootstrap_servers, settings.topic(SERVICE_TOPICS["catalog"])
    real = propose(system, title="真实议题")
    system.wait_trace(real, 1)
    next_sequence = system.services["catalog"].app.max_position() + 1

    def forged(**fields: Any) -> CloudEvent:
        subject = fields.pop("subject", str(uuid.uuid4()))
        return CloudEvent(**{
            "id": str(uuid.uuid4()), "source": "/consultation/catalog",
            "type": "consultation.catalog.TopicProposed.v1", "subject": subject,
            "time": datetime.now(UTC), "data": {"title": "伪造"}, "topicid": subject,
            "sequence": next_sequence, "actor": "伪造者", "version": 1, **fields})

    stray = forged()
    item = forged(type="consultation.catalog.PlanItemAdded.v1", topicid=real, version=2)
    wrong_source = forged(source="/consultation/sessions", type="consultation.sessions.SessionHeld.v1")
    wrong_source = wrong_source.model_copy(update={"id": event_id("sessions", wrong_source.subject, 1)})
    stranger = forged(source="/consultation/mallory", type="consultation.mallory.TopicProposed.v1")
    produce(bootstrap, kafka_topic, [(e.subject.encode(), e.to_bytes())
                                     for e in (stray, item, wrong_source, stranger)])

    dead = wait_for(lambda: (rs := [r for r in read_topic(bootstrap, settings.topic(DEADLETTER_TOPIC))
                                    if r.topic]) and len(rs) >= 4 and rs, 30, "four dead letters")
    reasons = {r.key.decode(): dict(r.headers)["deadletter-reason"].decode() for r in dead}
    assert "id is not the one its source derives" in reasons[stray.subject]
    assert "id is not the one its source derives" in reasons[item.subject]
    assert "does not publish to this topic" in reasons[wrong_source.subject]
    assert "is not a service of this system" in reasons[stranger.subject]

    # The real event that takes the forged sequence arrives, and the real topic's trace is clean.
    after = propose(system, title="之后的真实议题")
    assert system.services["catalog"].app.max_position() == next_sequence
    assert [s["type"] for s in system.wait_trace(after, 1)] == ["TopicProposed"]
    assert [s["type"] for s in system.trace(real)] == ["TopicProposed"]
    assert system.trace(stray.subject) == []


# -- 6. dates are bounded and counting is cheap -------------------------------------------------

def test_dates_are_bounded(settings: Settings) -> None:
    with RunningSystem(settings, ["catalog", "sessions"]) as system:
        topic_id = planned_topic(system)
        body = {"topic_id": topic_id, "form": "symposium", "title": "协商会", "lead_department": "县住建局",
                "host": "县政府办公室"}
        for day, rule in (("0001-01-03", "greater_than_equal"), ("9999-12-31", "less_than_equal"),
                          ("2101-01-01", "less_than_equal")):
            steps.refused(system, "sessions", "/sessions", {**body, "scheduled_for": day}, 422, rule)
        session = schedule(system, topic_id, scheduled_for="2100-12-31", date_change_reason="边界日期")
        steps.refused(system, "sessions", f"/sessions/{session}/notice",
                      {"served_on": "0001-01-01", "materials": ["材料"]}, 422, "greater_than_equal")
        # The widest span the bounds allow is answered at once and stores a bounded list.
        notice = system.post(f"/sessions/{session}/notice",
                             {"served_on": "2000-01-01", "materials": ["材料"]}, expect=200).json()
        assert notice["provisional"] and len(notice["years_without_data"]) <= 101


def test_century_counts_match_a_day_by_day_walk() -> None:
    from datetime import date, timedelta

    calendar = WorkingCalendar.load()
    for start, end in ((date(2000, 1, 1), date(2100, 12, 31)), (date(2026, 12, 20), date(2028, 1, 9)),
                       (date(2025, 3, 3), date(2025, 3, 4))):
        walked, missing, day = 0, set(), start + timedelta(days=1)
        while day < end:
            working, official = calendar.is_working_day(day)
            walked += working
            missing |= set() if official else {day.year}
            day += timedelta(days=1)
        count = calendar.working_days_between(start, end)
        assert (count.value, count.years_without_data) == (walked, tuple(sorted(missing)))


# -- 7. other bad input ---------------------------------------------------------------------------

def test_hostile_text_types_and_encodings_are_refused(settings: Settings) -> None:
    with RunningSystem(settings, ["catalog", "sessions", "feedback"]) as system:
        catalog = system.services["catalog"].app
        for path in ("/catalog/topics/%00", "/catalog/topics/ab%00cd", "/feedback/traces/x%00y",
                     "/sessions/views/departments/%00%1b/agenda", "/catalog/plans/%00/approval"):
            response = system.http.get(path) if "approval" not in path else system.http.post(path, json={})
            assert response.status_code == 404, (path, response.text)
            assert response.json()["rule"] == "not_found"
        for title, rule in (("议题\x00", "control_character"), ("\x1b[31m红色", "control_character"),
                            ("响铃\x07", "control_character"), ("\u200b", "blank"), (" \u200b\u2060 ", "blank")):
            problem = steps.refused(system, "catalog", "/catalog/topics", {**TOPIC, "title": title}, 422, rule)
            assert problem["errors"][0]["field"] == "title"
        assert "U+0000" in steps.refused(system, "catalog", "/catalog/topics",
                                         {**TOPIC, "title": "a\x00"}, 422, "control_character")["detail"]
        # Multi-line text keeps its line breaks; a composed form is stored (NFC).
        topic_id = propose(system, description="第一行\n第二行\t附注", title="Cafe\u0301")
        assert system.get(f"/catalog/topics/{topic_id}")["title"] == "Caf\u00e9"

        steps.refused(system, "catalog", "/catalog/plans", {"year": "2026", "kind": "government",
                                                            "issuer": "县政府办公室"}, 422, "int_type")
        steps.refused(system, "catalog", "/catalog/plans", {"year": 2026.0, "kind": "government",
                                                            "issuer": "县政府办公室"}, 422, "int_type")
        exemption = {"decision": "紧急处置", "category": "public_safety", "reason": "洪水",
                     "decided_by": "县长", "department": "县应急局", "decided_on": 0}
        steps.refused(system, "sessions", "/sessions/exemptions", exemption, 422, "date_format")
        steps.refused(system, "sessions", "/sessions/exemptions",
                      {**exemption, "decided_on": "2026-09-01T10:00:00"}, 422, "date_format")

        before = catalog.max_position()
        raw = system.http.post("/catalog/topics", content=b'{"title": "\xff\xfe"}',
                               headers={"content-type": "application/json"})
        assert raw.status_code == 422 and raw.json()["rule"] == "json_invalid", raw.text
        assert raw.json()["errors"][0]["field"] == "body"
        assert catalog.max_position() == before

        unknown = system.http.get("/catalog/nowhere")
        assert unknown.status_code == 404 and unknown.json()["rule"] == "not_found"
        wrong = system.http.delete("/catalog/topics")
        assert wrong.status_code == 405 and wrong.json()["rule"] == "method_not_allowed"


def test_docs_work_without_internet(system: RunningSystem) -> None:
    page = system.http.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "/docs-assets/swagger-ui-bundle.js" in page.text
    script = system.http.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert system.http.get("/docs-assets/swagger-ui.css").status_code == 200


def test_make_up_passes_options_to_consult_up() -> None:
    dry = subprocess.run(["make", "-n", "up", "ARGS=--port 8100 --broker-port 9192"], capture_output=True,
                         text=True, cwd=str(__import__("pathlib").Path(__file__).parent.parent))
    assert "consult up --port 8100 --broker-port 9192" in dry.stdout, dry.stdout + dry.stderr


def test_health_names_a_stuck_relay_and_clears_when_it_recovers(settings: Settings, monkeypatch: Any) -> None:
    import shared.relay

    monkeypatch.setattr(shared.relay, "STUCK_AFTER", 1.0)
    broker = EmbeddedBroker(free_port()).start()
    own = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                      "kafka_idempotence": False, "broker_check_interval": 1.0})
    try:
        with RunningSystem(own, ["catalog"]) as system:
            broker.stop()
            waiting = propose(system, title="停机时提交")
            stuck = wait_for(lambda: (r := system.http.get("/catalog/health")).status_code == 503 and any(
                "publishing has failed" in p for p in r.json()["problems"]) and r.json(), 60, "stuck relay")
            assert "the broker does not answer" in stuck["problems"]
            assert stuck["status"] == "degraded" and stuck["relay"]["lag"] == 1
            broker.start()
            healthy = wait_for(lambda: (r := system.http.get("/catalog/health")).status_code == 200
                               and r.json()["status"] == "ok" and r.json(), 60, "recovered relay")
            assert healthy["relay"]["last_error"] is None and healthy["relay"]["lag"] == 0
        keys = [r.key.decode() for r in read_topic(own.kafka_bootstrap_servers, own.topic(SERVICE_TOPICS["catalog"]))]
        assert keys == [waiting]
    finally:
        broker.stop()


def test_a_full_store_answers_503_stores_nothing_and_health_says_so(tmp_path: Path, kafka: KafkaEndpoint,
                                                                   monkeypatch: Any) -> None:
    """A database that cannot write (a full disk: SQLite's own limit on the connection's pages,
    the same error) is not the caller's fault: 503 with the reason and ``Retry-After``, nothing
    stored; health degraded, naming it; a view's follower that keeps failing named too; all of it
    back to normal once there is room."""
    import shared.service

    monkeypatch.setattr(shared.service, "STUCK_AFTER", 1.0)
    settings = make_settings("sqlite", tmp_path, kafka, None)
    with RunningSystem(settings, ["catalog"]) as system:
        app = system.services["catalog"].app
        propose(system, title="有空间时")
        saves = app.recorder.connection()  # type: ignore[attr-defined]
        saves.execute(f"PRAGMA max_page_count = {saves.execute('PRAGMA page_count').fetchone()[0]}")
        accepted = 1
        for n in range(500):
            refused = system.http.post("/catalog/topics", json={**TOPIC, "title": f"磁盘将满{n}"})
            if refused.status_code != 201:
                break
            accepted += 1
        assert refused.status_code == 503, refused.text
        assert refused.json()["rule"] == "store_unavailable" and refused.headers["Retry-After"] == "5"
        assert "database or disk is full" in refused.json()["detail"]
        assert app.max_position() == accepted  # the refused command left nothing
        health = system.http.get("/catalog/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert any(p.startswith("the store could not serve 1 request(s)") and "disk is full" in p
                   for p in health.json()["problems"])
        saves.execute("PRAGMA max_page_count = 1073741823")
        propose(system, title="又有空间")

        # The views' table gone from under the follower (a real error from SQLite, as a full disk is).
        views = sqlite3.connect(settings.data_dir / "catalog-views.sqlite", isolation_level=None)
        views.execute("ALTER TABLE view_documents RENAME TO view_documents_away")
        propose(system, title="视图写不进")
        stuck = wait_for(lambda: [p for p in system.http.get("/catalog/health").json()["problems"]
                                  if p.startswith("projection.catalog_views has failed for")], 30, "follower named")
        assert "no such table" in stuck[0]
        views.execute("ALTER TABLE view_documents_away RENAME TO view_documents")
        views.close()
        wait_for(lambda: all(f["failing_for"] is None for f in system.http.get("/catalog/health").json()["followers"]),
                 30, "follower recovered")


def _exchange(port: int, sent: bytes, wait: float) -> bytes:
    """What the server sends on a connection given ``sent``, until it closes (or ``wait`` s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(sent)
        got = b""
        try:
            while chunk := conn.recv(65536):
                got += chunk
        except TimeoutError:
            got += b"<still open>"
    return got


def test_a_request_head_that_does_not_arrive_in_time_is_closed(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """Slowloris: connections opened and left silent, or sent half their headers, are closed
    after ``head_timeout`` (the half-sent ones with 408 in the contract's shape); a kept-alive
    connection between requests, and a request that arrives in time, are not affected."""
    settings = make_settings("sqlite", tmp_path, kafka, None, head_timeout=1.0)
    with RunningSystem(settings, ["catalog"]) as system:
        half = _exchange(system.port, b"POST /catalog/topics HTTP/1.1\r\nHost: x\r\nContent-Ty", 10)
        assert half.startswith(b"HTTP/1.1 408 ") and b"<still open>" not in half
        assert json.loads(half.split(b"\r\n\r\n", 1)[1])["rule"] == "head_timeout"
        assert _exchange(system.port, b"", 10) == b""  # silent: closed without a word
        with socket.create_connection(("127.0.0.1", system.port), timeout=10) as conn:
            for _ in range(2):  # 1.5 s apart on one connection: keep-alive is not the head's clock
                conn.sendall(b"GET /catalog/health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
                time.sleep(1.5)
        assert system.http.get("/catalog/health").status_code == 200


_BUSY_RELAY = """
import sys, time
from shared.config import Settings
from shared.relay import RelayState
state = RelayState.open(Settings(data_dir=sys.argv[1], store="sqlite"), "catalog")
failed, i, until = 0, 0, time.monotonic() + float(sys.argv[2])
print("writing", flush=True)
while time.monotonic() < until:
    i += 1
    try:
        state.save_offsets({("consultation.catalog.v1", 0): i, ("consultation.catalog.v1", 1): i})
    except Exception as error:
        failed += 1
    time.sleep(0.001)
state.close()
print("failed", failed, "of", i, flush=True)
"""


def test_an_operator_command_waits_for_the_running_relay_instead_of_failing(tmp_path: Any) -> None:
    """`consult relay retry` changes the relay's own SQLite store while the running relay
    writes its records there, from another process. Each waits for the other's write lock;
    before, the one that had read first was refused at once with "database is locked"."""
    from shared.relay import RelayState

    settings = Settings(data_dir=tmp_path, store="sqlite")
    state = RelayState.open(settings, "catalog")
    state.park({"position": 7, "status": "parked", "reason": "too large"})
    relay = subprocess.Popen([sys.executable, "-c", _BUSY_RELAY, str(tmp_path), "4"], stdout=subprocess.PIPE,
                             text=True, cwd=str(Path(__file__).parent.parent))
    try:
        assert relay.stdout is not None and relay.stdout.readline().strip() == "writing"
        for i in range(30):
            assert state.set_status(7, "retry", retry_requested_by=f"值班员{i}")["retry_requested_by"] == f"值班员{i}"
            time.sleep(0.01)
        report = relay.communicate(timeout=30)[0].split()
    finally:
        relay.kill()
        state.close()
    assert report[:2] == ["failed", "0"], report
