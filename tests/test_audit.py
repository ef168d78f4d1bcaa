"""Issue 12 (the ledger): every kind of tampering with a stored event is named by service,
position and event id; an untouched store, and one after an erasure, verify clean; a forged
digest is caught. On SQLite and PostgreSQL, with digests read back from Kafka and from a file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.audit import check, seal
from shared.config import Settings
from shared.stores import schema_name
from tests.conftest import PostgresEndpoint
from tests.harness import RunningSystem, wait_for

TOPIC = {"title": "老旧小区加装电梯", "description": "征集意见", "source": "npc", "proposer": "县人大常委会",
         "content_type": "livelihood"}
ITEM = {"channel": "grassroots", "platform_level": "village_station", "platform": "和平村说事站",
        "category": "public_interest", "author": {"name": "刘大爷", "phone": "13812345678"}, "content": "路灯坏了"}


class Store:
    """Plain SQL on a service's event table, as someone with write access would use it."""

    def __init__(self, settings: Settings, service: str, postgres: PostgresEndpoint | None):
        self.settings, self.service, self.postgres = settings, service, postgres
        if postgres is None:
            self.table, self.id = "stored_events", "rowid"
        else:
            self.table, self.id = f'"{schema_name(settings, service)}".{service}_events', "notification_id"

    @contextmanager
    def sql(self) -> Iterator[Callable[..., list[Any]]]:
        if self.postgres is None:
            conn = sqlite3.connect(self.settings.data_dir / f"{self.service}-events.sqlite")
            try:
                yield lambda q, *a: conn.execute(q.replace("%s", "?"), a).fetchall()
                conn.commit()
            finally:
                conn.close()
        else:
            with self.postgres.connect() as conn:
                yield lambda q, *a: (cur := conn.execute(q, a)) and (cur.fetchall() if cur.description else [])

    def row(self, position: int) -> tuple[Any, ...]:
        with self.sql() as q:
            return q(f"SELECT originator_id, originator_version, topic, state FROM {self.table} "
                     f"WHERE {self.id} = %s", position)[0]

    def put(self, position: int, row: tuple[Any, ...]) -> None:
        with self.sql() as q:
            q(f"INSERT INTO {self.table} (originator_id, originator_version, topic, state, {self.id}) "
              "VALUES (%s, %s, %s, %s, %s)", *row, position)

    def delete(self, position: int) -> None:
        with self.sql() as q:
            q(f"DELETE FROM {self.table} WHERE {self.id} = %s", position)

    def set_state(self, position: int, state: bytes) -> None:
        with self.sql() as q:
            q(f"UPDATE {self.table} SET state = %s WHERE {self.id} = %s", state, position)

    def renumber(self, old: int, new: int) -> None:
        with self.sql() as q:
            q(f"UPDATE {self.table} SET {self.id} = %s WHERE {self.id} = %s", new, old)


def verified(settings: Settings, capsys: pytest.CaptureFixture[str], **kwargs: Any) -> tuple[int, str]:
    code = check(settings, kwargs.pop("names", ["catalog"]), kwargs.pop("digests", None), None)
    return code, capsys.readouterr().out


def test_every_kind_of_tampering_is_named_and_an_erasure_is_not(
        settings: Settings, request: pytest.FixtureRequest, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    postgres = request.getfixturevalue("postgres") if settings.postgres else None
    tuned = settings.model_copy(update={"audit_seal_interval": 0.5})
    with RunningSystem(tuned, ["catalog", "feedback"]) as system:
        for i in range(8):
            system.post("/catalog/topics", {**TOPIC, "title": f"议题{i}"}, expect=201)
        ref = system.post("/feedback/opinions", ITEM, expect=201).json()["author_ref"]
        system.post(f"/feedback/authors/{ref}/erasure", {"requested_by": "县政府办公室", "reason": "本人申请"},
                    expect=201)
        for name in ("catalog", "feedback"):
            service = system.services[name]
            wait_for(lambda s=service: s.ledger.ledger.head()[0] == s.app.max_position(), 20, f"{name} chained")
        # The running services seal on their own and publish the digests to Kafka.
        wait_for(lambda: all(system.services[n].ledger.ledger.digests() for n in ("catalog", "feedback")), 20,
                 "digests sealed")
    digests = tmp_path / "digests.jsonl"
    assert seal(tuned, ["catalog", "feedback"], digests) == 0
    capsys.readouterr()

    # Untouched, and after an erasure (only the person's key went): intact, from Kafka and from the file.
    for source in ({}, {"digests": digests}):
        code, out = verified(tuned, capsys, names=["catalog", "feedback"], **source)
        assert code == 0 and "intact" in out, out
        assert "catalog: 8 events recomputed" in out and "problem(s)" in out

    store = Store(tuned, "catalog", postgres)
    ids = {p: _event_id(store, p) for p in range(1, 9)}

    # Altered.
    original = store.row(3)
    store.set_state(3, bytes(original[3]).replace("议题2".encode(), "议题X".encode()))
    code, out = verified(tuned, capsys, digests=digests)
    assert code == 1 and f"catalog: altered at position 3 (event {ids[3]})" in out, out
    assert "digest_mismatch" in out
    store.set_state(3, bytes(original[3]))

    # Deleted.
    deleted = store.row(4)
    store.delete(4)
    code, out = verified(tuned, capsys, digests=digests)
    assert code == 1 and f"catalog: deleted at position 4 (event {ids[4]})" in out, out
    store.put(4, deleted)

    # Reordered: two events swap places.
    store.renumber(2, 1000)
    store.renumber(5, 2)
    store.renumber(1000, 5)
    code, out = verified(tuned, capsys, digests=digests)
    assert code == 1 and f"catalog: moved at position 2 (event {ids[5]})" in out, out
    assert f"catalog: moved at position 5 (event {ids[2]})" in out
    store.renumber(5, 1000)
    store.renumber(2, 5)
    store.renumber(1000, 2)

    # Inserted: later events renumbered to make room for a forged one at position 4.
    for position in range(8, 3, -1):
        store.renumber(position, position + 1)
    forged = store.row(3)
    store.put(4, ("00000000-0000-4000-8000-000000000001", 1, forged[2], forged[3]))
    code, out = verified(tuned, capsys, digests=digests)
    assert code == 1 and "catalog: inserted at position 4" in out, out
    store.delete(4)
    for position in range(5, 10):
        store.renumber(position, position - 1)

    # A forged digest: the head changed, the signature kept.
    lines = [json.loads(line) for line in digests.read_text().splitlines()]
    lines[0]["head"] = "f" * 64
    forged_file = tmp_path / "forged.jsonl"
    forged_file.write_text("".join(json.dumps(d) + "\n" for d in lines))
    code, out = verified(tuned, capsys, digests=forged_file)
    assert code == 1 and "bad_signature" in out, out

    # Put back exactly, the store verifies again.
    code, out = verified(tuned, capsys, digests=digests)
    assert code == 0, out


def _event_id(store: Store, position: int) -> str:
    from uuid import UUID

    from shared.envelope import event_id

    originator, version, _, _ = store.row(position)
    return event_id(store.service, str(UUID(str(originator))), version)


def test_a_missing_digest_topic_is_a_clear_message(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    lonely = settings.model_copy(update={"topic_prefix": "nothing-here."})
    assert check(lonely, ["catalog"], None, None) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_public_key_is_exported_for_auditors(tmp_path: Path) -> None:
    # Run as the operator does (a separate process: `consult` configures the process's logging).
    done = subprocess.run([sys.executable, "-m", "shared.cli", "audit", "public-key", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert oct((tmp_path / "audit-signing.key").stat().st_mode & 0o777) == "0o600"
