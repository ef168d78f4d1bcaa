"""Saves that reach SQLite's writer together are committed together, and fail alone."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import ConnectionPoolClosedError, PersistenceError, RecordConflictError

from services.catalog.application import CatalogApplication
from services.catalog.domain import Topic
from services.feedback.application import FeedbackApplication
from shared.config import Settings
from shared.stores import open_view_store
from tests.conftest import at_once

TOPIC = {"source": "npc", "proposer": "县人大常委会", "content_type": "livelihood", "description": "说明"}


def test_queued_saves_share_one_commit_and_a_conflict_fails_only_its_own(tmp_path: Path) -> None:
    app = CatalogApplication(Settings(data_dir=tmp_path, store="sqlite"))
    recorder: Any = app.recorder
    try:
        first = app.propose_topic(title="议题", **TOPIC)
        stale, fresh = app.get(Topic, first), app.get(Topic, first)
        stale.screen("accepted", None, "县政府办")
        fresh.screen("rejected", "不属于协商范围", "县政府办")
        commits = []
        transaction = recorder._transaction

        def counted() -> Any:
            commits.append(1)
            return transaction()

        recorder._transaction = counted
        outcomes: dict[str, Any] = {}

        def save(name: str, aggregate: Any) -> None:
            try:
                app.save(aggregate)
                outcomes[name] = "stored"
            except RecordConflictError as error:
                outcomes[name] = error

        new = [Topic(title=f"议题{i}", **TOPIC) for i in range(6)]
        threads = [threading.Thread(target=save, args=(f"new{i}", t)) for i, t in enumerate(new)]
        threads += [threading.Thread(target=save, args=("stale", stale)),
                    threading.Thread(target=save, args=("fresh", fresh))]
        with recorder._leader:  # the writer is busy: every save queues behind it
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(recorder._queue) < len(threads) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(recorder._queue) == len(threads)
        for thread in threads:
            thread.join(10)

        assert len(commits) == 1  # eight saves, one transaction
        assert all(outcomes[f"new{i}"] == "stored" for i in range(6))
        # The same aggregate saved twice from one version: the first in the group wins, the
        # second is undone alone and told so.
        assert sorted(str(v) if v == "stored" else "conflict" for k, v in outcomes.items()
                      if k in ("stale", "fresh")) == ["conflict", "stored"]
        assert app.max_position() == 1 + 6 + 1
        assert all(str(app.get(Topic, t.id).id) == str(t.id) for t in new)
        status = app.get(Topic, first).status
        assert status == ("accepted" if outcomes["stale"] == "stored" else "rejected")
    finally:
        app.close()


def test_a_save_alone_is_committed_as_before(tmp_path: Path) -> None:
    app = CatalogApplication(Settings(data_dir=tmp_path, store="sqlite"))
    try:
        topic_id = app.propose_topic(title="议题", **TOPIC)
        stale = app.get(Topic, topic_id)
        app.screen_topic(topic_id, "accepted", None, "县政府办")
        stale.screen("rejected", "x", "县政府办")
        try:
            app.save(stale)
            raise AssertionError("a stale save must conflict")
        except RecordConflictError:
            pass
        assert app.max_position() == 2 and not app.recorder._queue  # type: ignore[attr-defined]
    finally:
        app.close()


class _FailingCommit:
    """SQLite refuses the next ``COMMIT`` on a pool's writer connection, as it refuses one on a
    full disk, leaving the transaction open: the connection's authorizer denies it once."""

    def __init__(self) -> None:
        self.failures = 1

    def __call__(self, action: int, arg1: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT" and self.failures:
            self.failures -= 1
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    @classmethod
    def next_on(cls, db: sqlite3.Connection) -> _FailingCommit:
        """On ``db`` (setting an authorizer makes SQLite prepare every statement again, the
        cached ``COMMIT`` too)."""
        failing = cls()
        db.set_authorizer(failing)
        return failing


def _writer(pool: Any) -> sqlite3.Connection:
    """The connection the next write through ``pool`` takes."""
    conn = pool.get_connection(is_writer=True)
    pool.put_connection(conn)
    return conn._sqlite_conn


def test_a_commit_that_fails_stores_nothing_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    app = CatalogApplication(Settings(data_dir=tmp_path, store="sqlite"))
    try:
        app.propose_topic(title="议题0", **TOPIC)
        failing = _FailingCommit.next_on(app.recorder.connection())  # type: ignore[attr-defined]
        try:
            app.propose_topic(title="议题1", **TOPIC)
            raise AssertionError("the save must fail with its commit")
        except PersistenceError:
            pass
        assert failing.failures == 0 and app.max_position() == 1
        app.propose_topic(title="议题2", **TOPIC)  # not "cannot start a transaction within a transaction"
        assert app.max_position() == 2
    finally:
        app.close()


def test_a_view_store_whose_commit_fails_takes_the_next_transaction(tmp_path: Path) -> None:
    """Views, relay records and the vault's own writes go through eventsourcing's SQLite
    transaction: its connection is rolled back too when the commit fails."""
    store = open_view_store(Settings(data_dir=tmp_path, store="sqlite"), "catalog")
    try:
        with store.transaction() as txn:
            txn.put("topic", "a", {"n": 1})
        failing = _FailingCommit.next_on(_writer(store.datastore.pool))
        try:
            with store.transaction() as txn:
                txn.put("topic", "b", {"n": 2})
            raise AssertionError("the transaction must fail with its commit")
        except PersistenceError:
            pass
        assert failing.failures == 0 and store.get("topic", "b") is None
        with store.transaction() as txn:
            txn.put("topic", "c", {"n": 3})
        assert store.get("topic", "c") == {"n": 3} and store.get("topic", "a") == {"n": 1}
    finally:
        store.datastore.close()


def test_saves_and_views_reuse_their_prepared_statements(tmp_path: Path) -> None:
    """SQLite calls a connection's authorizer while it prepares a statement, never when it
    runs one already prepared: after the first save, saves and view writes prepare none.
    (eventsourcing's own connections keep one statement: every save parsed all of its own.)"""
    settings = Settings(data_dir=tmp_path, store="sqlite")
    app = CatalogApplication(settings)
    store = open_view_store(settings, "catalog")
    prepared: list[tuple[int, str | None]] = []

    def counting(*args: Any) -> int:
        prepared.append(args[:2])
        return sqlite3.SQLITE_OK

    try:
        for db in (app.recorder.connection(), _writer(store.datastore.pool)):  # type: ignore[attr-defined]
            db.set_authorizer(counting)
        for i in range(2):  # the first of each prepares its statements (again: the authorizer is new)
            topic_id = app.propose_topic(title=f"议题{i}", **TOPIC)
            app.screen_topic(topic_id, "accepted", None, "县政府办")
            with store.transaction() as txn:
                txn.put("topic", topic_id, {"n": i})
            if i == 0:
                assert prepared, "the authorizer must see the first statements prepared"
                prepared.clear()
        assert prepared == []
        assert app.max_position() == 4 and store.get("topic", topic_id) == {"n": 1}
    finally:
        store.datastore.close()
        app.close()


def test_saves_and_the_pools_own_writes_take_turns_and_close_together(tmp_path: Path) -> None:
    """Saves go through a connection of their own; a person's key is destroyed through the
    pool's writer. Run at once, each waits for the other's commit, and nothing is refused."""
    app = FeedbackApplication(Settings(data_dir=tmp_path, store="sqlite"))
    fields = {"topic": None, "session": None, "topic_id": None, "session_id": None, "channel": "grassroots",
              "platform_level": "village_station", "platform": "清水村说事站", "category": "public_interest",
              "content": "村道路灯损坏", "confidential": False, "addressed_to": None}
    try:
        refs = [app.submit_opinion({"name": f"居民{i}"}, **fields)[1] for i in range(8)]
        erasing = iter(refs)
        work = itertools.cycle([lambda: app.submit_opinion({"name": "赵六", "phone": "13800138000"}, **fields),
                                lambda: app.vault.destroy(next(erasing), "2026-12-05")])
        lock = threading.Lock()

        def next_work() -> Any:
            with lock:
                step = next(work)
            return step()

        done, errors = at_once(next_work, 16, timeout=60)
        assert not errors and len(done) == 16
        assert app.max_position() == 16 and app.vault.keys_held() == 1  # 8 erased, 赵六's kept
        writer = app.recorder.connection()  # type: ignore[attr-defined]
    finally:
        app.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the store
        writer.execute("SELECT 1")
    with pytest.raises(ConnectionPoolClosedError):
        app.recorder.connection()  # type: ignore[attr-defined]
