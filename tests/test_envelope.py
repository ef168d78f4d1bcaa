"""Envelopes made straight from the stored JSON are the ones the mapper's domain events give.

``ServiceApplication.envelope`` reads a stored event's state with orjson instead of making
a domain event (``plain_state``), and ``CloudEvent.to_bytes`` writes with orjson instead
of pydantic. Both are shortcuts: here each is held to the long way, value for value and
byte for byte, and shown to step aside where it cannot follow it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import JSONTranscoder, Mapper

from services.catalog.application import CatalogApplication
from services.feedback.application import FeedbackApplication
from services.feedback.domain import Opinion
from shared.application import _plain, plain_state
from shared.config import Settings
from shared.envelope import CloudEvent


def _mapper(**kwargs: Any) -> Mapper[uuid.UUID]:
    app = CatalogApplication.__new__(CatalogApplication)
    transcoder = JSONTranscoder()
    app.register_transcodings(transcoder)
    return Mapper(transcoder, **kwargs)


def test_plain_state_is_what_the_mapper_reads_made_plain() -> None:
    mapper = _mapper()
    ids = [uuid.uuid4() for _ in range(3)]
    when = datetime(2026, 12, 4, 9, 30, 1, 250, tzinfo=UTC)
    state = {
        "timestamp": when, "title": "议题\u2028说明", "count": 3, "share": 0.25, "flag": True, "none": None,
        "topic_id": ids[0], "units": [ids[1], {"unit": "县住建局", "id": ids[2], "due": when}],
        "nested": {"deep": [[ids[0]], {"_type_": "not a marker", "x": 1}]},
        "due_date": date(2026, 12, 31).isoformat(),
    }
    stored = mapper.transcoder.encode(state)
    assert plain_state(mapper, stored) == _plain(mapper.transcoder.decode(stored))
    assert plain_state(mapper, stored)["units"][1]["id"] == str(ids[2])


def test_plain_state_leaves_to_the_mapper_what_it_cannot_read_plainly() -> None:
    mapper = _mapper()
    # A Decimal is a value type the short way has no plain form for.
    assert plain_state(mapper, mapper.transcoder.encode({"amount": Decimal("1.5")})) is None
    assert plain_state(mapper, b'{"x": NaN}') is None
    assert plain_state(mapper, b'{"x": -9223372036854775809}') is None  # orjson: a float
    ciphered = _mapper(cipher=AESCipher(_cipher_env()))
    assert plain_state(ciphered, ciphered.transcoder.encode({"title": "议题"})) is None
    assert plain_state(_mapper(compressor=ZlibCompressor()), b'{"title": "x"}') is None


def _cipher_env() -> Any:
    from eventsourcing.utils import Environment
    return Environment(env={"CIPHER_KEY": AESCipher.create_key(16)})


@pytest.mark.parametrize("time", [datetime(2026, 1, 1, tzinfo=UTC),
                                  datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=8))),
                                  datetime(2026, 1, 1, 1, 2, 3, 400_000)])
def test_to_bytes_is_pydantics_json_byte_for_byte(time: datetime) -> None:
    for data in [{"a": 1.5, "b": [1, None, "x"], "c": {"d": None}, "e": 1e16, "f": 0.1},
                 {"text": "中\u2028\x00\"\\"}, {"wide": 2 ** 70}, {"amount": Decimal("1.5")}]:
        event = CloudEvent(id="x", source="/consultation/catalog", type="consultation.catalog.X.v1",
                           subject="s", time=time, data=data, sequence=1, actor=None, note="extension",
                           empty=None)
        assert event.to_bytes() == event.model_dump_json(exclude_none=True).encode()


def test_every_stored_event_envelopes_as_its_domain_event_does(tmp_path: Path) -> None:
    """Across events of every shape two services store (first events and later ones, upcast
    fields, redacted persons, a confidential opinion's text), both ways give the same envelope."""
    settings = Settings(data_dir=tmp_path, store="sqlite")
    catalog = CatalogApplication(settings)
    topic_id = catalog.propose_topic(title="议题", description="说明", source="npc", proposer="县人大常委会",
                                     content_type="livelihood")
    catalog.propose_topic(title="群众议题", description="说明", source="public_solicitation", proposer="张三",
                          content_type="livelihood", proposer_kind="person")
    catalog.screen_topic(topic_id, "accepted", None, "县政府办")
    feedback = FeedbackApplication(settings)
    for confidential in (False, True):
        opinion, _ = feedback.submit_opinion(
            {"name": "赵六", "phone": "13800138000"}, topic=None, session=None, topic_id=None,
            session_id=None, channel="grassroots", platform_level="village_station", platform="清水村说事站",
            category="public_interest", content="村道路灯损坏，电话13800138000", confidential=confidential,
            addressed_to=None)
        department = feedback.get(Opinion, opinion).responsible
        feedback.answer(opinion, "adopted", None, department)
        feedback.deliver_feedback(opinion, "sms", "已采纳，电话13800138000", department)
    for app in (catalog, feedback):
        notifications = app.notifications(0)
        assert len(notifications) >= 3
        for notification in notifications:
            fresh = type(app)(settings)  # nothing remembered: later events read their first one
            short = fresh.envelope(notification)
            long = fresh._envelope_of(fresh.mapper.to_domain_event(notification), notification.id)
            assert short == long, notification.topic
            # Made without validation (``CloudEvent.of_own``): validated, it is the same envelope.
            validated = CloudEvent(**{k: getattr(short, k) for k in short.model_fields_set})
            assert validated == short and validated.model_fields_set == short.model_fields_set
            assert CloudEvent.model_validate(short.model_dump()) == short
            assert validated.to_bytes() == short.to_bytes()
            assert CloudEvent.model_validate_json(short.to_bytes()) == short
            assert short.to_bytes() == long.model_dump_json(exclude_none=True).encode()
            fresh.close()
        app.close()


def test_the_log_reads_what_eventsourcing_reads(settings: Settings) -> None:
    """``notifications`` is a plain paged query of the store (not ``select_notifications``):
    the same records, the aggregate's id as ``str(uuid)``, on both databases."""
    app = CatalogApplication(settings)
    try:
        ids = [app.propose_topic(title=f"议题{i}", description="说明", source="npc", proposer="县人大常委会",
                                 content_type="livelihood") for i in range(3)]
        app.screen_topic(ids[1], "accepted", None, "县政府办")
        ours = app.notifications(0)
        theirs = app.recorder.select_notifications(1, 500)
        assert [tuple(n) for n in ours] == [
            (n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state)) for n in theirs]
        assert len(ours) == 4 and ours[3].originator_id == ids[1]
        assert app.notifications(ours[0].id, 2) == ours[1:3] and app.notifications(ours[-1].id) == []
        assert all(isinstance(n.state, bytes) for n in ours)
    finally:
        app.close()
