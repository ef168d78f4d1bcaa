"""Events are stored and read as eventsourcing's own JSON transcoder stores and reads them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, TranscodingNotRegisteredError, \
    UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.transcoder import OrjsonTranscoder


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


STANDARD, OURS = _registered(JSONTranscoder()), _registered(OrjsonTranscoder())


class Kind(str, Enum):
    ONLINE = "online"


_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.uuids() | st.decimals(allow_nan=False) | st.sampled_from(list(Kind))
           | st.datetimes(timezones=st.just(timezone(timedelta(hours=8)))))
_values = st.recursive(
    _leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN wherever it sits."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=8))
def test_any_state_is_written_and_read_as_eventsourcing_does(state: dict[str, Any]) -> None:
    try:
        expected = STANDARD.encode(state)
    except (UnicodeEncodeError, ValueError, TranscodingNotRegisteredError) as error:  # a lone surrogate
        with pytest.raises(type(error)):
            OURS.encode(state)
        return
    assert OURS.encode(state) == expected  # the same bytes
    assert _same(OURS.decode(expected), STANDARD.decode(expected))


def test_values_orjson_writes_otherwise_go_through_the_standard_encoder() -> None:
    state = {"id": UUID(int=7), "nan": float("nan"), "big": 2**70, "when": datetime(2026, 12, 5, tzinfo=timezone.utc),
             "kind": Kind.ONLINE, "nested": [{"id": UUID(int=8), "n": Decimal("1.5")}], "keys": {1: "a"}}
    stored = OURS.encode(state)
    assert stored == STANDARD.encode(state)
    read = OURS.decode(stored)
    assert read["id"] == UUID(int=7) and read["nested"][0] == {"id": UUID(int=8), "n": Decimal("1.5")}
    assert math.isnan(read["nan"]) and read["big"] == 2**70 and read["keys"] == {"1": "a"}
    assert read["when"] == datetime(2026, 12, 5, tzinfo=timezone.utc)
    # Read back exactly: orjson alone reads an integer beyond 64 bits as a float.
    wide = OURS.decode(b'{"a":[{"b":-9223372036854775809}],"c":1e19,"d":18446744073709551615}')
    assert wide == {"a": [{"b": -9223372036854775809}], "c": 1e19, "d": 2**64 - 1}
    assert type(wide["a"][0]["b"]) is int and type(wide["c"]) is float


def test_an_unknown_marked_type_is_refused_as_eventsourcing_refuses_it() -> None:
    stored = b'{"a":{"_type_":"no_such_type","_data_":"x"}}'
    with pytest.raises(TranscodingNotRegisteredError):
        STANDARD.decode(stored)
    with pytest.raises(TranscodingNotRegisteredError):
        OURS.decode(stored)
    with pytest.raises(TranscodingNotRegisteredError):
        OURS.encode({"a": object()})
