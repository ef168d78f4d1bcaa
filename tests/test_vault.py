"""Each person's key is written in the transaction of the first event that uses it.

One commit per opinion, not two; a refusal or a crash leaves no key; two requests of
one new person at once end with one key that opens both; keys an earlier release kept
in the vault store move beside the events at start-up. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import RecordConflictError

from services.feedback.application import FeedbackApplication
from services.feedback.domain import Opinion
from shared.config import Settings
from shared.stores import drop_schemas, open_view_store
from shared.vault import KeyRaced
from tests.conftest import KafkaEndpoint, at_once, make_settings

PERSON = {"name": "赵六", "phone": "13800138000", "address": "幸福路8号"}
FIELDS: dict[str, Any] = {
    "topic": None, "session": None, "topic_id": None, "session_id": None, "channel": "grassroots",
    "platform_level": "village_station", "platform": "清水村说事站", "category": "public_interest",
    "content": "村道路灯损坏", "confidential": False, "addressed_to": None,
}


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    pg = request.getfixturevalue("postgres") if request.param == "postgres" else None
    s = make_settings(request.param, tmp_path, KafkaEndpoint("127.0.0.1:9", False), pg)
    yield s
    if pg is not None:
        drop_schemas(s, s.schema_prefix)


def _opened(app: FeedbackApplication, opinion_id: str) -> dict[str, Any] | None:
    opinion = app.get(Opinion, opinion_id)
    return app.open_person(opinion.author_ref, opinion.author_sealed)


def test_a_new_persons_key_is_written_with_their_first_opinion_and_opens_it(settings: Settings) -> None:
    app = FeedbackApplication(settings)
    try:
        assert app.vault.keys_held() == 0
        first, ref = app.submit_opinion(PERSON, **FIELDS)
        again, same = app.submit_opinion(PERSON, **FIELDS)
        assert same == ref and app.vault.keys_held() == 1
        assert _opened(app, first) == _opened(app, again) == PERSON
        # A save that fails writes no key: the transaction it was in is gone.
        stranger = app.person_ref({"name": "孙八"})
        one, two = app.get(Opinion, first), app.get(Opinion, first)
        for opinion in (one, two):
            opinion.answer("adopted", None, opinion.responsible, app.clock.today(), app.calendar, 5)
        app.save(one)
        with pytest.raises(RecordConflictError):
            app.save(two, person_keys=[(stranger, "wrapped", True)])
        assert app.vault.keys_held() == 1 and not app.vault.holds(stranger)
    finally:
        app.close()


def test_a_key_destroyed_by_another_instance_is_never_sealed_with_again(settings: Settings) -> None:
    """Two instances of the service on one store: one remembers the key it sealed with, the
    other erases the person. The first's next opinion gets a new key; the old data stays shut."""
    one, other = FeedbackApplication(settings), FeedbackApplication(settings)
    try:
        before, ref = one.submit_opinion(PERSON, **FIELDS)
        other.erase_author(ref, "县政府办", "本人申请")
        after, same = one.submit_opinion(PERSON, **FIELDS)
        assert same == ref
        assert _opened(one, before) is None and _opened(other, before) is None
        assert _opened(one, after) == _opened(other, after) == PERSON
        assert one.vault.keys_held() == 1
    finally:
        one.close()
        other.close()


def test_two_requests_of_one_new_person_at_once_share_one_key(settings: Settings) -> None:
    app, elsewhere = FeedbackApplication(settings), FeedbackApplication(settings)
    try:
        # In one process the second request seals under the key the first made.
        ref, _, key_a = app.seal_person({"name": "周九"})
        _, _, key_b = app.seal_person({"name": "周九"})
        assert key_a["person_keys"] == [(ref, key_a["person_keys"][0][1], True)]
        assert key_b["person_keys"] == [(ref, key_a["person_keys"][0][1], False)]
        # Two instances each make a key for a person neither has seen: the second save loses.
        ref, made = app.person_ref(PERSON), []
        for instance in (app, elsewhere):
            _, sealed, with_key = instance.seal_person(PERSON)
            made.append((instance, Opinion.submit(
                **FIELDS, author_ref=ref, author_sealed=sealed, person=PERSON, organization=None,
                today=app.clock.today(), calendar=app.calendar, answer_days=5), with_key))
        assert made[0][2] != made[1][2]
        app.save(made[0][1], **made[0][2])
        with pytest.raises(KeyRaced):
            elsewhere.save(made[1][1], **made[1][2])
        assert made[1][1].id not in app.repository  # the loser stored nothing
        # Through the command it seals again under the stored key.
        again, _ = elsewhere.submit_opinion(PERSON, **FIELDS)
        assert _opened(app, again) == _opened(app, str(made[0][1].id)) == PERSON

        # Through the command, from threads: every opinion stored, every one opened by one key.
        person = {"name": "李四", "phone": "13900139000"}
        ids, errors = at_once(lambda: app.submit_opinion(person, **FIELDS)[0], 8, timeout=30)
        assert not errors and len(ids) == 8
        assert all(_opened(app, i) == person for i in ids)
        assert app.vault.keys_held() == 2
    finally:
        app.close()
        elsewhere.close()


def test_keys_an_earlier_release_kept_in_the_vault_store_move_beside_the_events(settings: Settings) -> None:
    app = FeedbackApplication(settings)
    opinion_id, ref = app.submit_opinion(PERSON, **FIELDS)
    wrapped = app.vault._keys.read_key(ref)
    assert wrapped is not None
    # The layout an earlier release left: the key in the vault store, none beside the events.
    app.vault._keys.delete_key(ref)
    app.close()
    earlier = open_view_store(settings, "feedback", "vault")
    with earlier.transaction() as txn:
        txn.put("person_key", ref, {"wrapped": wrapped})
    earlier.datastore.close()

    app = FeedbackApplication(settings)
    try:
        assert _opened(app, opinion_id) == PERSON and app.vault.keys_held() == 1
        left = open_view_store(settings, "feedback", "vault")
        assert [k for (view, k) in left.dump() if view == "person_key"] == []
        left.datastore.close()
        app.erase_author(ref, "县政府办", "本人申请")
        assert _opened(app, opinion_id) is None and app.vault.keys_held() == 0
    finally:
        app.close()
    if not settings.postgres:
        # Erased for good: the key's bytes are not left in the events file either.
        with sqlite3.connect(settings.data_dir / "feedback-events.sqlite") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert wrapped.encode() not in (settings.data_dir / "feedback-events.sqlite").read_bytes()
