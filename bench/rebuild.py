"""3. Projection rebuild: the trace and the department views rebuilt from a feedback store,
against a raw paged SELECT + JSON decode of the same rows. Targets: at least 30 %, and at
least 20,000 events/s. 6. Audit: the ledger's hash chain recomputed over the same store
(what ``consult audit verify`` does), and every view replayed into fresh storage and compared
with the live views (``consult audit replay``), against a raw SELECT + SHA-256 of the same rows.
7. Growth: both at each size asked for (10k, 100k, 1M), so the cost's growth shows."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
from datetime import date
from typing import Any

from bench.common import Result, fresh_settings, timed
from services.feedback.application import FeedbackApplication
from services.feedback.domain import Opinion
from services.feedback.projections import FeedbackViews, Trace
from shared.ledger import Ledger
from shared.relay import RelayState
from shared.audit import replay
from shared.replay import apply, batches, rebuild
from shared.runtime import spec
from shared.stores import admin_connection, open_view_store, schema_name

REBUILD_TARGET, REBUILD_FLOOR = 0.3, 20_000
PAGE = 500
DEPARTMENTS = [f"县{n}局" for n in ("住建", "民政", "教育", "交通", "卫健", "财政", "水利", "农业")]


def fill(app: FeedbackApplication, events: int) -> None:
    """``events`` events: opinions on 200 topics, every other one answered (two events)."""
    today, batch = date(2026, 12, 4), []
    made = 0
    topics = [{"status": "accepted", "lead_department": d, "title": "议题"} for d in DEPARTMENTS]
    while made < events:
        i = made
        topic = topics[i % len(topics)]
        opinion = Opinion.submit(
            topic=topic, session=None, topic_id=f"00000000-0000-4000-8000-{i % 200:012d}", session_id=None,
            channel="online", platform_level=None, platform=None, category=None,
            author_ref=f"{i:032x}", author_sealed="sealed", person={}, organization=None,
            content=f"建议第{i}条：加强社区养老服务", confidential=False, addressed_to=None, today=today,
            calendar=app.calendar, answer_days=15)
        made += 1
        if made < events and i % 2 == 0:
            opinion.answer("partially_adopted", "分步实施", topic["lead_department"], today, app.calendar, 5)
            made += 1
        batch.append(opinion)
        if len(batch) >= 1000:
            app.save(*batch)
            batch = []
    if batch:
        app.save(*batch)


def _raw_pages(settings: Any, store: str, table: str, work: Any) -> float:
    """Events per second of a paged SELECT over the events table, ``work`` done on each row."""
    if store == "sqlite":
        conn: Any = sqlite3.connect(str(settings.data_dir / "feedback-events.sqlite"))
        sql = (f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
               "WHERE rowid > ? ORDER BY rowid LIMIT ?")
    else:
        conn = admin_connection(settings)
        sql = (f"SELECT notification_id, originator_id, originator_version, topic, state "
               f'FROM "{schema_name(settings, "feedback")}"."{table}" WHERE notification_id > %s '
               "ORDER BY notification_id LIMIT %s")
    rows = 0

    def loop() -> None:
        nonlocal rows
        last = 0
        while page := conn.execute(sql, (last, PAGE)).fetchall():
            for row in page:
                work(row)
            rows += len(page)
            last = page[-1][0]

    try:
        elapsed, _ = timed(loop)
    finally:
        conn.close()
    return rows / elapsed


def _decode(row: Any) -> None:
    json.loads(bytes(row[4]))


def _hash(row: Any) -> None:
    hashlib.sha256(bytes(row[4])).hexdigest()


def _live_views(settings: Any, app: FeedbackApplication) -> None:
    """The feedback service's live read models, made as its followers make them."""
    live = open_view_store(settings, "feedback")
    service = spec("feedback")
    projections = [cls(live) for cls in [*service.own_projections, *service.kafka_projections]]
    apply(projections, "feedback", batches(app))
    live.datastore.close()


def _quiet_replay(settings: Any) -> int:
    """``consult audit replay --service feedback``: every view rebuilt into fresh storage and
    compared with the live one; returns the differences it reported (one line each)."""
    out = io.StringIO()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(out), contextlib.redirect_stderr(null):
        replay(settings, ["feedback"], from_kafka=False)
    return sum(1 for line in out.getvalue().splitlines() if line.startswith("{"))


def run(store: str, sizes: list[int]) -> list[Result]:
    results = []
    for events in sizes:
        with fresh_settings(store) as settings:
            app = FeedbackApplication(settings)
            fill_seconds, _ = timed(fill, app, events)
            stored = app.max_position()
            elapsed, (views, replayed) = timed(rebuild, app, [Trace, FeedbackViews])
            views.datastore.close()
            table = app.recorder.events_table_name  # type: ignore[attr-defined]
            baseline = _raw_pages(settings, store, table, _decode)
            results.append(Result("rebuild (trace + dept views)", store, replayed, replayed / elapsed, baseline,
                                  REBUILD_TARGET, {"floor": f"{REBUILD_FLOOR:,}/s",
                                                   "floor_met": replayed / elapsed >= REBUILD_FLOOR,
                                                   "fill_s": round(fill_seconds, 1)}))
            state = RelayState.open(settings, "feedback")
            ledger = Ledger(app, state.store)
            verify_seconds, _ = timed(ledger.catch_up)
            state.close()
            baseline = _raw_pages(settings, store, table, _hash)
            results.append(Result("audit verify (hash chain)", store, stored, stored / verify_seconds, baseline))
            _live_views(settings, app)
            replay_seconds, found = timed(_quiet_replay, settings)
            results.append(Result("audit replay (all views)", store, stored, stored / replay_seconds, baseline,
                                  None, {"differences": found}))
            app.close()
    return results
