"""Phone and ID numbers are masked wherever they stand in free text; the quick look for a
number never lets one through."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.feedback import domain
from services.feedback.domain import mask_identifiers

_PIECES = st.sampled_from(["1", "3", "8", "0", "9", "x", "X", "-", " ", "+86", "+86-", "86 ", "0731-", "年",
                           "电话", "a", "13812345678", "138-1234-5678", "138 1234 5678", "07318888888",
                           "0731-88888888", "43010219900101123X", "2026"])


def _masked_in_full(text: str) -> str:
    text = domain._ID_NUMBER.sub("[身份证号]", text)  # noqa: SLF001 - the three as they were run always
    text = domain._PHONE.sub("[电话]", text)  # noqa: SLF001
    return domain._LANDLINE.sub("[电话]", text)  # noqa: SLF001


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_the_quick_look_masks_exactly_what_the_three_patterns_mask(text: str) -> None:
    assert mask_identifiers(text) == _masked_in_full(text)


def test_numbers_in_free_text_are_masked() -> None:
    assert mask_identifiers("我的电话138 1234 5678，身份证43010219900101123X，座机0731-88888888") == \
        "我的电话[电话]，身份证[身份证号]，座机[电话]"
    assert mask_identifiers("2026年第3季度，第12345条") == "2026年第3季度，第12345条"
