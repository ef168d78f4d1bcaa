"""1. Append: opinions submitted through the feedback application (one event each), against a
raw loop of one INSERT + COMMIT per row of the same size on the same database
(sqlite3 / psycopg). Target: at least 50 %."""

from __future__ import annotations

import sqlite3

from bench.common import Result, fresh_settings, timed
from services.feedback.application import FeedbackApplication
from shared.stores import admin_connection

TARGET = 0.5


def _submit(app: FeedbackApplication, i: int) -> None:
    app.submit_opinion({"name": f"居民{i}", "phone": "13912345678"}, topic=None, session=None, topic_id=None,
                       session_id=None, channel="grassroots", platform_level="village_station",
                       platform="清水村说事站", category="public_interest", content=f"村道路灯损坏，第{i}处",
                       confidential=False, addressed_to=None)


def _event_size(app: FeedbackApplication) -> int:
    [notification] = app.notifications(app.max_position() - 1, 1)
    return len(notification.state)


def _raw_sqlite(path: str, rows: int, size: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # as eventsourcing's own SQLite store runs
    db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, originator TEXT, version INT, topic TEXT, state BLOB)")
    payload = b"x" * size
    elapsed, _ = timed(lambda: [db.execute("BEGIN") and db.execute(
        "INSERT INTO raw (originator, version, topic, state) VALUES (?, 1, 'raw', ?)", (str(i), payload))
        and db.execute("COMMIT") for i in range(rows)])
    db.close()
    return rows / elapsed


def _raw_postgres(settings, schema: str, rows: int, size: int) -> float:  # noqa: ANN001
    with admin_connection(settings) as conn:
        conn.autocommit = False
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".raw (id BIGSERIAL PRIMARY KEY, originator TEXT, version INT, '
                     "topic TEXT, state BYTEA)")
        conn.commit()
        payload = b"x" * size

        def loop() -> None:
            for i in range(rows):
                conn.execute(f'INSERT INTO "{schema}".raw (originator, version, topic, state) '
                             "VALUES (%s, 1, 'raw', %s)", (str(i), payload))
                conn.commit()

        elapsed, _ = timed(loop)
    return rows / elapsed


def run(store: str, events: int, sizes: list[int] | None = None) -> list[Result]:
    """``events`` appends into a store already holding each of ``sizes`` events (growth)."""
    return [result for size in (sizes or [0]) for result in _run(store, events, size)]


def _run(store: str, events: int, held: int) -> list[Result]:
    from bench.rebuild import fill

    with fresh_settings(store) as settings:
        app = FeedbackApplication(settings)
        if held:
            fill(app, held)
        _submit(app, 0)  # warm: keys, tables, connections
        elapsed, _ = timed(lambda: [_submit(app, i) for i in range(1, events + 1)])
        size = _event_size(app)
        app.close()
        if store == "sqlite":
            baseline = _raw_sqlite(str(settings.data_dir / "raw.sqlite"), events, size)
        else:
            baseline = _raw_postgres(settings, f"{settings.schema_prefix}raw", events, size)
    return [Result("append (feedback opinions)", store, events, events / elapsed, baseline, TARGET,
                   {"event_bytes": size, "store_held": held})]
