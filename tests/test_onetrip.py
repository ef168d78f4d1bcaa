"""On PostgreSQL a save is one round trip: one call of the store's function, which takes
the events table's lock as eventsourcing's recorder takes it, and stores nothing of a
save it refuses."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.catalog.application import CatalogApplication
from services.feedback.application import FeedbackApplication
from shared.config import Settings
from shared.stores import admin_connection, drop_schemas, open_view_store
from tests.conftest import KafkaEndpoint, PostgresEndpoint, at_once, make_settings

TOPIC = {"source": "npc", "proposer": "县人大常委会", "content_type": "livelihood", "description": "说明"}
FIELDS = {"topic": None, "session": None, "topic_id": None, "session_id": None, "channel": "grassroots",
          "platform_level": "village_station", "platform": "清水村说事站", "category": "public_interest",
          "content": "村道路灯损坏", "confidential": False, "addressed_to": None}


@pytest.fixture
def settings(postgres: PostgresEndpoint, tmp_path: Path) -> Iterator[Settings]:
    s = make_settings("postgres", tmp_path, KafkaEndpoint("127.0.0.1:9", False), postgres)
    yield s
    drop_schemas(s, s.schema_prefix)


def _syncs_per_save(app: FeedbackApplication, people: list[dict[str, str]]) -> list[int]:
    """How many times the client waited for the server in each save, read off libpq's
    own trace of the protocol on every connection the save used: each ``Sync`` message the
    client sends ends a round trip."""
    datastore = app.recorder.datastore
    get_connection = datastore.get_connection
    counts, executed = [], []
    with tempfile.TemporaryFile("w+") as trace:

        @contextmanager
        def traced() -> Iterator[Any]:
            with get_connection() as conn:
                conn.pgconn.trace(trace.fileno())
                try:
                    yield conn
                finally:
                    conn.pgconn.untrace()

        datastore.get_connection = traced
        try:
            for person in people:
                trace.seek(0)
                trace.truncate()
                app.submit_opinion(person, **FIELDS)
                trace.seek(0)
                messages = [line.split("\t")[3].strip() for line in trace if line.split("\t")[1:2] == ["F"]]
                # A statement is prepared once per connection, in a round trip of its own.
                counts.append(messages.count("Sync") - messages.count("Parse"))
                executed.append(messages.count("Execute"))
        finally:
            del datastore.get_connection
    assert executed == [1] * len(people)  # the keys, the lock and the events: one statement
    return counts


def test_a_save_of_an_opinion_is_one_round_trip(settings: Settings) -> None:
    """A new person's key written, or a returning person's checked, with the event."""
    app = FeedbackApplication(settings)
    try:
        new = [{"name": f"居民{i}", "phone": f"139{i:08d}"} for i in range(5)]
        assert _syncs_per_save(app, new) == [1, 1, 1, 1, 1]
        assert _syncs_per_save(app, new[:2]) == [1, 1]  # returning: their keys checked
        assert app.vault.keys_held() == 5
    finally:
        app.close()


def test_a_save_waits_for_the_events_tables_lock(settings: Settings) -> None:
    """The lock that keeps notification ids in commit order, so that no reader of the log
    passes a gap that a slower transaction fills later."""
    app = CatalogApplication(settings)
    try:
        app.propose_topic(title="议题0", **TOPIC)
        schema = app.recorder.datastore.schema
        with admin_connection(settings) as holder:
            holder.autocommit = False
            holder.execute(f'LOCK TABLE "{schema}"."{app.recorder.events_table_name}" IN EXCLUSIVE MODE')
            saved = threading.Event()
            thread = threading.Thread(target=lambda: (app.propose_topic(title="议题1", **TOPIC), saved.set()))
            thread.start()
            assert not saved.wait(1.0)  # held back by the lock
            holder.rollback()
        assert saved.wait(10)
        thread.join(10)
        assert app.max_position() == 2
    finally:
        app.close()


def test_no_notify_and_no_database_functions_of_eventsourcings(settings: Settings) -> None:
    os.environ["CATALOG_POSTGRES_ENABLE_DB_FUNCTIONS"] = "y"
    try:
        with pytest.raises(ValueError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
            CatalogApplication(settings)
    finally:
        del os.environ["CATALOG_POSTGRES_ENABLE_DB_FUNCTIONS"]


def test_replicas_starting_together_on_a_new_schema_all_start(settings: Settings) -> None:
    """Each makes the schemas, tables and functions if they are not there; one at a time.
    Without that, all but one failed on the catalog's unique indexes."""
    opened, errors = at_once(lambda: (CatalogApplication(settings), open_view_store(settings, "catalog")), 6)
    started = [app for app, _ in opened]
    views = [store for _, store in opened]
    try:
        assert not errors, errors
        assert len(started) == len(views) == 6
        started[0].propose_topic(title="议题", **TOPIC)
        assert all(app.max_position() == 1 for app in started)
    finally:
        for app in started:
            app.close()
        for store in views:
            store.datastore.close()
