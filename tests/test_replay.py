"""Issue 12 (replay): every read model rebuilt from the stores, or from the Kafka topics, into
fresh storage equals the live one; a view changed by hand is reported by view, key and field;
a store of 100,000 events replays with progress, and the live follower catches up on it in
batches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from eventsourcing.persistence import Tracking

from services.catalog.application import CatalogApplication
from services.catalog.domain import Topic
from services.catalog.projections import CatalogViews
from shared.follower import ProjectionFollower
from shared.audit import replay
from shared.config import Settings
from shared.replay import text_differences
from shared.stores import admin_connection, drop_schemas, open_view_store, schema_name
from tests import steps
from tests.conftest import KafkaEndpoint, PostgresEndpoint, make_settings
from tests.harness import RunningSystem, wait_for
from tests.steps import approve, item, plan, topic


def test_a_store_of_100000_events_replays_without_difference_and_a_hand_edit_is_found(
        tmp_path: Path, kafka: KafkaEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None, relay_enabled=False)
    app = CatalogApplication(settings)
    for start in range(0, 100_000, 2_000):
        app.save(*(Topic(title=f"议题{i}", description="说明", source="npc", proposer="县人大常委会",
                         content_type="livelihood") for i in range(start, start + 2_000)))
    assert app.max_position() == 100_000
    # The live follower, far behind, catches up in batches (no broker needed for its own log).
    live_views = CatalogViews(open_view_store(settings, "catalog"))
    follower = ProjectionFollower(app, settings, live_views)

    async def catch_up() -> None:
        task = asyncio.create_task(follower.run())
        await asyncio.wait_for(follower.caught_up.wait(), 120)
        task.cancel()

    asyncio.run(catch_up())
    assert live_views.position("catalog") == 100_000
    live_views.view.datastore.close()
    app.close()
    capsys.readouterr()

    assert replay(settings, ["catalog"], False) == 0
    out = capsys.readouterr()
    assert "catalog: 100000 events replayed from the stores" in out.out and "0 difference(s)" in out.out
    assert "100000/100000" in out.err and "event/s" in out.err, "the progress bar"

    live = open_view_store(settings, "catalog")
    some = live.list("topic")[0]
    with live.transaction() as txn:
        txn.put("topic", some["id"], {**some, "title": "被改过的标题"})
    live.datastore.close()
    assert replay(settings, ["catalog"], False) == 1
    [diff] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert (diff["view"], diff["key"], diff["field"], diff["live"]) == ("topic", some["id"], "title", "被改过的标题")


def test_every_services_views_replay_from_the_stores_and_from_kafka(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with RunningSystem(settings) as system:
        topic_id = topic(system)
        plan_id = plan(system)
        system.post(f"/catalog/plans/{plan_id}/items", item(topic_id, scheduled_month="2026-12"), expect=200)
        approve(system, plan_id)
        steps.opinion(system, topic_id, channel="online", name="赵六")
        proposal = system.post("/proposals", {"title": "提案", "content": "内容", "kind": "cppcc_proposal",
                                              "proposers": [{"name": "李委员"}]}, expect=201).json()["id"]
        system.post(f"/proposals/{proposal}/review", {"decision": "filed", "reviewed_by": "提案委员会"}, expect=200)
        system.post(f"/proposals/{proposal}/conversion", {"converted_by": "县政协"}, expect=202)
        wait_for(lambda: system.get(f"/proposals/{proposal}")["topic_id"], 30, "the conversion")
        # Quiet: every relay published everything, every consumer applied it, every view caught up.
        stored = sum(s.app.max_position() for s in system.services.values())
        wait_for(lambda: all(s.relay.status(s.app.max_position())["lag"] == 0 for s in system.services.values()),
                 30, "relays caught up")
        wait_for(lambda: len(system.services["feedback"].views.list("step")) >= stored, 30, "the trace complete")
        for service in system.services.values():
            for name, projection in service.projections.items():
                if not projection.kafka_topics:
                    wait_for(lambda p=projection, s=service: p.position(s.name) == s.app.max_position(), 20, name)
    capsys.readouterr()
    assert replay(settings, ["catalog", "sessions", "proposals", "feedback"], False) == 0, capsys.readouterr().out
    assert replay(settings, ["catalog", "sessions", "proposals", "feedback"], True) == 0, capsys.readouterr().out


def test_a_throwaway_store_answers_reads_from_what_it_committed_and_only_that(tmp_path: Path) -> None:
    """A rebuild's store remembers the documents it committed, so its reads need not ask the
    database; a transaction that rolled back leaves nothing remembered, and a store that did
    not begin empty still asks the database for what it does not remember."""
    settings = Settings(data_dir=tmp_path, store="sqlite")
    store = open_view_store(settings, "feedback", "throwaway", durable=False)
    assert store.committed == {} and store.committed_whole
    with store.transaction() as txn:
        txn.put("opinion", "a", {"n": 1})
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.put("opinion", "b", {"n": 2})
        txn.flush()
        raise RuntimeError("rolled back")
    assert store.committed == {("opinion", "a"): '{"n":1}'}
    with store.transaction() as txn:
        assert txn.get("opinion", "a") == {"n": 1} and txn.get("opinion", "b") is None
        assert txn.put_new("opinion", "c", {"n": 3}) and not txn.put_new("opinion", "a", {"n": 4})
        txn.put("opinion", "d", {"n": 4})
        assert [d["n"] for d in txn.list("opinion")] == [1, 3, 4]  # sends what it holds
        assert txn.get("opinion", "c") == {"n": 3} and txn.get("opinion", "d") == {"n": 4}
        txn.delete("opinion", "d")
    assert store.dump() == {("opinion", "a"): {"n": 1}, ("opinion", "c"): {"n": 3}}
    store.datastore.close()

    again = open_view_store(settings, "feedback", "throwaway", durable=False)
    assert again.committed == {} and not again.committed_whole  # not empty: the database answers
    with again.transaction() as txn:
        assert txn.get("opinion", "c") == {"n": 3} and not txn.put_new("opinion", "a", {"n": 5})
    again.datastore.close()
    live = open_view_store(settings, "feedback", "throwaway")
    assert live.committed is None
    live.datastore.close()


def test_a_read_of_one_statement_is_sent_alone_and_holds_nothing_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A view read, a key read, a log read, a tracking read and an aggregate's read each send
    their one statement, without the BEGIN and ROLLBACK eventsourcing wraps reads in: on the
    threads serving commands each statement more was one more wait for Python's lock
    (bench/README.md). And the read ends with its statement: a checkpoint from elsewhere can
    still move every page."""
    import sqlite3

    import eventsourcing.sqlite

    from eventsourcing.sqlite import SQLiteApplicationRecorder

    from services.feedback.application import FeedbackApplication
    from services.feedback.domain import Opinion

    sent: list[str] = []
    connect = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(sent.append)
        return conn

    monkeypatch.setattr(eventsourcing.sqlite.sqlite3, "connect", traced)
    settings = Settings(data_dir=tmp_path, store="sqlite")
    views = open_view_store(settings, "feedback")
    with views.transaction(Tracking("test:feedback", 7)) as txn:
        txn.put("topic", "t1", {"title": "议题"})
        txn.put("topic", "t2", {"title": "另一议题"})
    app = FeedbackApplication(settings)

    def statements(read: object) -> list[str]:
        sent.clear()
        read()  # type: ignore[operator]
        return [s.split()[0] for s in sent]

    assert statements(lambda: views.get("topic", "t1")) == ["SELECT"]
    assert statements(lambda: views.list("topic")) == ["SELECT"]
    assert statements(lambda: views.max_tracking_id("test:feedback")) == ["SELECT"]
    assert statements(lambda: app.recorder.read_key("nobody")) == ["SELECT"]
    assert statements(lambda: app.notifications(0)) == ["SELECT"]
    # An aggregate's events, read for every command on it: the same rows as eventsourcing's read.
    opinion_id, _ = app.submit_opinion(
        {"name": "居民"}, topic=None, session=None, topic_id=None, session_id=None, channel="grassroots",
        platform_level="village_station", platform="清水村说事站", category="public_interest",
        content="村道路灯损坏", confidential=False, addressed_to=None)
    opinion = app.get(Opinion, opinion_id)
    app.answer(opinion_id, "partially_adopted", "分步实施", opinion.responsible)
    assert statements(lambda: app.repository.get(opinion.id)) == ["SELECT"]
    assert app.repository.get(opinion.id).status == "answered"
    for bounds in ({}, {"gt": 1}, {"lte": 1}, {"desc": True}, {"desc": True, "limit": 1}, {"gt": 0, "lte": 2}):
        ours = app.recorder.select_events(opinion.id, **bounds)
        assert ours == SQLiteApplicationRecorder.select_events(app.recorder, opinion.id, **bounds), bounds
        assert [e.originator_version for e in ours] == {
            "{}": [1, 2], "{'gt': 1}": [2], "{'lte': 1}": [1], "{'desc': True}": [2, 1],
            "{'desc': True, 'limit': 1}": [2], "{'gt': 0, 'lte': 2}": [1, 2]}[str(bounds)]
    assert views.get("topic", "t1") == {"title": "议题"} and views.get("topic", "t3") is None
    assert [d["title"] for d in views.list("topic")] == ["议题", "另一议题"]
    assert views.max_tracking_id("test:feedback") == 7

    for path in (tmp_path / "feedback-views.sqlite", tmp_path / "feedback-events.sqlite"):
        assert path.exists()
        other = connect(path)
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, f"a read left {path.name} held"
        other.close()
    app.close()
    views.datastore.close()


def test_a_throwaway_store_bounds_what_it_remembers_and_still_knows_what_it_never_wrote(tmp_path: Path) -> None:
    """Past ``committed_limit`` documents the oldest are dropped from memory and read from the
    database again; their keys are kept (Bloom filters, a new one twice as large as each fills),
    so a key never written stays known as absent."""
    store = open_view_store(Settings(data_dir=tmp_path, store="sqlite"), "feedback", "bounded", durable=False)
    store.committed_limit, store.evicted.first_capacity = 10, 4
    for n in range(30):
        with store.transaction() as txn:
            txn.put("opinion", f"{n:02d}", {"n": n})
            if n % 5 == 0:
                txn.delete("opinion", f"{n - 1:02d}")
        assert len(store.committed) <= store.committed_limit
        if n == 14:
            assert store.committed_whole and len(store.evicted) > 0
            assert not store.never_written(("opinion", "00")) and store.never_written(("opinion", "99"))
    assert store.committed_whole and len(store.evicted._filters) >= 3  # 4 + 8 + 16 keys
    assert all(("opinion", f"{n:02d}") in store.committed or not store.never_written(("opinion", f"{n:02d}"))
               for n in range(30))
    assert sum(store.never_written(("opinion", f"x{n}")) for n in range(1000)) >= 990
    with store.transaction() as txn:
        for n in range(30):
            deleted = n % 5 == 4 and n < 29
            assert txn.get("opinion", f"{n:02d}") == (None if deleted else {"n": n}), n
        assert txn.get("opinion", "99") is None and txn.put_new("opinion", "99", {"n": 99})
        assert not txn.put_new("opinion", "00", {"n": -1})
    assert store.dump()[("opinion", "00")] == {"n": 0}
    store.datastore.close()


def test_a_throwaway_store_writes_a_large_batch_as_any_store_does(settings: Settings) -> None:
    """A rebuild's store sends a large batch in one statement on its writer's thread (a JSON
    array on SQLite, arrays on PostgreSQL); the documents are the ones a live store writes,
    byte for byte, whatever the text holds."""
    odd = "引号\"反斜杠\\ 换行\n 制表\t \u2028 ☃ 'quote' %_"  # a key (ids, in life) never holds a NUL
    stores = [open_view_store(settings, "feedback", label, durable=durable)
              for label, durable in (("bulk_live", True), ("bulk_thrown", False))]
    try:
        for store in stores:
            with store.transaction(Tracking("bulk:feedback", 1)) as txn:
                for n in range(300):
                    txn.put("opinion" if n % 3 else "step", f"{n:04d}/{odd}", {"n": n, "text": odd + "\x00", "list": [None, 1.5]})
            with store.transaction(Tracking("bulk:feedback", 2)) as txn:
                for n in range(0, 300, 2):
                    txn.put("opinion" if n % 3 else "step", f"{n:04d}/{odd}", {"n": -n, "text": odd[::-1]})
                txn.delete("step", f"0003/{odd}")
        live, thrown = (store.dump() for store in stores)
        assert len(live) == 299 and thrown == live
        assert thrown[("opinion", f"0001/{odd}")] == {"n": 1, "text": odd + "\x00", "list": [None, 1.5]}
        assert stores[1].max_tracking_id("bulk:feedback") == 2
        with stores[1].reading() as r:  # read back from the database, not from memory
            assert r.get("opinion", f"0002/{odd}") == {"n": -2, "text": odd[::-1]}
    finally:
        for store in stores:
            store.datastore.close()


PREFIXED = ["a/", "a/1", "a/%", "a/_x", "a/\\", "a/中文", "a/\U0010fffd", "a0", "a", "A/1", "b/1", "a_1", "a%1"]


@pytest.mark.parametrize("made_by", ["this release", "an earlier release"])
def test_prefix_reads_are_exact_on_postgres_whatever_release_made_the_table(
        tmp_path: Path, kafka: KafkaEndpoint, postgres: PostgresEndpoint, made_by: str) -> None:
    """A PostgreSQL view store made now keeps its keys in the C collation: a prefix read is a
    range of the primary key (no second index on every write), ordered as SQLite orders it.
    A table an earlier release made (keys in the database's collation) keeps its pattern
    index and its LIKE reads. Either way a prefix read returns exactly the keys that begin
    with it, wildcards and all."""
    settings = make_settings("postgres", tmp_path, kafka, postgres)
    schema = schema_name(settings, "feedback", "collation")
    if made_by == "an earlier release":
        with admin_connection(settings) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f'CREATE TABLE "{schema}".view_documents (view TEXT NOT NULL, key TEXT NOT NULL, '
                         "doc TEXT NOT NULL, PRIMARY KEY (view, key))")
    store = open_view_store(settings, "feedback", "collation")
    try:
        with admin_connection(settings) as conn:
            indexes = {r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)).fetchall()}
        assert store.prefix_is_range == (made_by == "this release")
        assert ("view_documents_prefix" in indexes) == (made_by == "an earlier release")
        with store.transaction() as txn:
            for key in PREFIXED:
                txn.put("step", key, {"key": key})
        for prefix in ["a/", "a", "a/%", "a/_", "中", "b/", "z"]:
            got = [d["key"] for d in store.list("step", prefix)]
            assert sorted(got) == sorted(k for k in PREFIXED if k.startswith(prefix)), prefix
            if store.prefix_is_range:
                assert got == sorted(got, key=lambda k: k.encode()), prefix  # byte order, as SQLite's
    finally:
        store.datastore.close()
        drop_schemas(settings, settings.schema_prefix)


def test_many_prefixes_at_once_and_pages_read_what_one_prefix_reads(settings: Settings) -> None:
    """``lists`` (a topic's trace: every linked subject's steps, in one statement on SQLite) and
    ``page`` (the public's lists) give exactly what ``list`` gives, wildcards, the last code
    points and all."""
    store = open_view_store(settings, "feedback", "prefixes")
    try:
        with store.transaction() as txn:
            for key in PREFIXED:
                txn.put("step", key, {"key": key})
            txn.put("other", "a/1", {"key": "not a step"})
        prefixes = ["a/", "a", "a/%", "a/_", "中", "b/", "z", "a/\U0010fffd", "a/"]
        with store.reading() as r:
            # Every prefix a range (one statement, where keys compare by code point), and with
            # one that is none (the last code point has nothing past it: a statement each).
            for asked in (prefixes, [*prefixes, "\U0010ffff"]):
                assert r.lists("step", asked) == [r.list("step", p) for p in asked], asked
            assert r.lists("step", []) == []
        for prefix in ["", "a", "a/", "a/%"]:
            paged, after = [], ""
            while page := store.page("step", prefix, after, 2):
                paged += [doc for _, doc in page]
                after = page[-1][0]
            assert paged == store.list("step", prefix), prefix
    finally:
        store.datastore.close()


def test_stored_documents_are_compared_as_text_and_decoded_only_where_they_differ() -> None:
    """An audit replay compares the two stores' JSON: the same document is the same text (one
    encoder, sorted keys), so only differing texts are decoded; one an earlier encoder wrote
    with spaces is equal once decoded, and a changed field is named."""
    live = {("opinion", "a"): '{"n":1,"s":"x"}', ("opinion", "b"): '{"n": 2, "s": "y"}',
            ("opinion", "c"): '{"n":3}', ("opinion", "gone"): '{"n":4}'}
    rebuilt = {("opinion", "a"): '{"n":1,"s":"x"}', ("opinion", "b"): '{"n":2,"s":"y"}',
               ("opinion", "c"): '{"n":30}', ("opinion", "new"): '{"n":5}'}
    assert text_differences(live, rebuilt) == [
        ("opinion", "c", "n", 3, 30), ("opinion", "gone", "*", {"n": 4}, None),
        ("opinion", "new", "*", None, {"n": 5})]
    assert text_differences(live, live) == []
