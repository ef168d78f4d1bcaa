"""Request field types: every text, list, number and date a command accepts, with its limits.

Officials type these into forms and departments send them over the e-government
bus; both make mistakes, and some senders are hostile. Each type here refuses,
with a 422 that names the field and the rule, what would otherwise be stored
for good in an event:

- text is NFC-normalised, may not contain control characters (NUL, escape, ...;
  multi-line text may contain line breaks and tabs), and may not be blank once
  white space and invisible format characters (zero-width space, ...) are removed;
- every text and list has a maximum size (below), so no accepted command can
  record an event larger than the relay can publish;
- numbers, flags and dates are strict: ``"2026"`` is not a year, ``0`` is not a date,
  ``"true"`` is not a flag;
- dates lie between 2000-01-01 and 2100-12-31, so working-day counts stay cheap.

| type | limit |
| --- | --- |
| ``Name`` (names, titles, departments, bodies) | 200 characters, one line |
| ``Line`` (a material's title, a short note) | 500 characters, one line |
| ``Text`` (descriptions, minutes, reasons, summaries) | 20,000 characters |
| lists | their own maximum, given where they are declared (``items(...)``) |
"""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt
from pydantic_core import PydanticCustomError

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)

NAME_MAX = 200
LINE_MAX = 500
TEXT_MAX = 20_000

#: Line breaks and tabs belong in minutes and descriptions; nowhere else.
_MULTILINE_ALLOWED = frozenset("\n\r\t")


def _clean(value: str, multiline: bool) -> str:
    value = unicodedata.normalize("NFC", value)
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs") and not (multiline and ch in _MULTILINE_ALLOWED):
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found U+{code})",
                {"code": f"{ord(ch):04X}"},
            )
    stripped = value.strip()
    visible = "".join(ch for ch in stripped if unicodedata.category(ch) != "Cf").strip()
    if not visible:
        raise PydanticCustomError("blank", "must not be blank")
    return stripped


def _single_line(value: str) -> str:
    return _clean(value, multiline=False)


def _multi_line(value: str) -> str:
    return _clean(value, multiline=True)


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_single_line)]
Line = Annotated[str, Field(min_length=1, max_length=LINE_MAX), AfterValidator(_single_line)]
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX), AfterValidator(_multi_line)]


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` strings (or dates, from code): never numbers or datetimes."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if not isinstance(value, str) or len(value) != 10:
        raise PydanticCustomError("date_format", "must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_format", "must be a date written YYYY-MM-DD") from None


#: A calendar day between 2000-01-01 and 2100-12-31.
Day = Annotated[date, BeforeValidator(_iso_date), Field(ge=FIRST_DAY, le=LAST_DAY)]
#: A year between 2000 and 2100 (a JSON number, not a string).
Year = Annotated[StrictInt, Field(ge=FIRST_DAY.year, le=LAST_DAY.year)]
#: true or false (JSON booleans only).
Flag = StrictBool


def items(kind: Any, most: int, least: int = 1) -> Any:
    """A JSON array of ``kind`` with between ``least`` and ``most`` entries."""
    return Annotated[list[kind], Field(min_length=least, max_length=most)]  # type: ignore[valid-type]

#: A month ``YYYY-MM`` between 2000-01 and 2100-12.
Month = Annotated[
    str, Field(pattern=r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$", description="YYYY-MM, 2000-01 to 2100-12")
]


# -- a citizen's contact details (kept sealed: see shared/vault.py) ------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if not 5 <= len(digits) <= 20 or any(ch not in "0123456789+- ()" for ch in value):
        raise PydanticCustomError("phone_format", "must be a phone number (5 to 20 digits; + - ( ) and spaces allowed)")
    return value.strip()


def _id_number(value: str) -> str:
    """A resident ID number (GB 11643): 17 digits and a check character."""
    value = value.strip().upper()
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        raise PydanticCustomError("id_number_format", "must be an 18-character resident ID number")
    if _ID_CHECK[sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS)) % 11] != value[17]:
        raise PydanticCustomError("id_number_checksum", "is not a valid resident ID number (check character)")
    return value


Phone = Annotated[str, Field(min_length=5, max_length=30), AfterValidator(_single_line), AfterValidator(_phone)]
IdNumber = Annotated[str, Field(min_length=18, max_length=18), AfterValidator(_id_number)]
#: A rating from 1 (worst) to 5 (best), as a JSON number.
Score = Annotated[StrictInt, Field(ge=1, le=5)]
