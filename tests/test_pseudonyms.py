"""Pseudonymous references: stable per name, keyed, shared by every service of one system."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import SecretStr

from shared.config import Settings
from shared.pseudonyms import Pseudonyms


def test_a_name_keeps_its_reference_and_a_key_decides_it(tmp_path: Path) -> None:
    one = Pseudonyms.for_settings(Settings(data_dir=tmp_path, pseudonym_key=SecretStr("k" * 32)))
    other = Pseudonyms.for_settings(Settings(data_dir=tmp_path, pseudonym_key=SecretStr("z" * 32)))
    assert one.ref("participant", "王委员") == one.ref("participant", " 王委员 ")
    assert one.ref("participant", "王委员") != other.ref("participant", "王委员")
    assert one.ref("participant", "王委员") != one.ref("author", "王委员")
    # Not a plain hash a list of names could reverse.
    assert one.ref("participant", "王委员") not in hashlib.sha256("participant:王委员".encode()).hexdigest()


def test_without_a_configured_key_services_starting_together_share_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:
        refs = set(pool.map(lambda _: Pseudonyms.for_settings(settings).ref("participant", "李"), range(16)))
    assert len(refs) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["pseudonym.key"]
    assert ((tmp_path / "data" / "pseudonym.key").stat().st_mode & 0o777) == 0o600


def test_references_stay_what_earlier_releases_stored() -> None:
    """Every stored event names its people by these: the same key must give the same
    reference in every release (HMAC-SHA256 of ``kind:name``, 32 hex digits)."""
    pseudonyms = Pseudonyms(b"k" * 32)
    assert pseudonyms.ref("participant", "王委员") == "0dff7423f30bde106e2e425b0daaaa02"
    # An ID number with spaces of any kind (here an ideographic one) and a small x.
    person = {"name": "x", "id_number": " 110101 19900101 1234x\u3000"}
    assert pseudonyms.person(person) == "26c4984d0731144eb8ddcb55423881b5"
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: pseudonyms.ref("participant", "王委员"), range(64))) == {
            "0dff7423f30bde106e2e425b0daaaa02"}
