"""Events to and from their stored JSON, by orjson, as eventsourcing's JSON transcoder has them.

eventsourcing encodes an event's state with the standard library's ``json``: 8 µs for an
opinion, a tenth of a save's Python, and 5 µs to read one back. orjson writes the same bytes
in under 2 µs when every value is one both write alike: text, whole numbers that fit in 64
bits, booleans, None, lists and dicts with text keys, and datetimes (passed to the same
``default`` as the standard encoder's). A state holding anything else is encoded by
eventsourcing's own encoder, exactly as before: a UUID (orjson writes it as plain text where
eventsourcing marks it), a float (``1e-06`` is ``1e-6`` to orjson; NaN is null), a Decimal,
an Enum, a date.
Reading gives what eventsourcing's decoder gives: each ``{"_type_", "_data_"}`` pair decoded by
its registered transcoding, an unknown name refused; JSON orjson would read otherwise (NaN, an
integer beyond 64 bits: a float of 2**63 or more, to be safe) is read by the standard decoder.
"""

from __future__ import annotations

from datetime import datetime
from collections.abc import Callable
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

#: Values both encoders write alike (a datetime through the transcodings, via ``default``).
_LEAVES = frozenset({str, int, bool, type(None), datetime})
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: orjson reads an integer beyond 64 bits as a float, so a float this wide may have been one:
#: the event goes to the standard decoder (a regular expression looking for long numbers in
#: the JSON first cost four times orjson's whole read).
WIDE = 2.0**63
#: What ``read_marked`` looks into: containers, and floats (a wide one).
NESTED = frozenset({dict, list, float})


class Wide(Exception):
    """A float orjson read where the JSON may have held an integer beyond 64 bits."""


def read_marked(value: Any, marked: Callable[[dict[str, Any]], Any]) -> Any:
    """``value`` as orjson read it, each nested dict of two keys given to ``marked``,
    innermost first, as the standard decoder's ``object_hook`` is; ``Wide`` for a float of
    2**63 or more. Dicts are changed in place: they are the read's own."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(item) in NESTED:
                value[key] = read_marked(item, marked)
        return marked(value) if len(value) == 2 else value
    if kind is list:
        return [read_marked(v, marked) if type(v) in NESTED else v for v in value]
    if kind is float and abs(value) >= WIDE:
        raise Wide
    return value


def _alike(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and (type(v) in _LEAVES or _alike(v)) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(type(v) in _LEAVES or _alike(v) for v in value)
    return kind in _LEAVES


class OrjsonTranscoder(JSONTranscoder):
    """eventsourcing's ``JSONTranscoder``, its work done by orjson where the result is the same."""

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict and _alike(obj):
            try:
                return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)
            except orjson.JSONEncodeError:
                pass  # an integer wider than 64 bits, or a type with no transcoding: as before
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            return read_marked(orjson.loads(data), self._decode_obj)
        except (orjson.JSONDecodeError, Wide):  # what only the standard decoder reads (NaN, huge integers)
            return super().decode(data)
