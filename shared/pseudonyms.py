"""Pseudonymous references for people, so events can say "the same person" without a name.

A reference is an HMAC of the person's name under a secret key: stable (the same
name gives the same reference in every event, so attendance can be matched and
counted) but not reversible by hashing a list of common names, as a plain hash
would be. The key comes from ``CONSULT_PSEUDONYM_KEY``; when that is unset
(the embedded default) one is generated once and kept in the data directory.
Every node of one deployment must share the key, or their references differ.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.config import Settings


class Pseudonyms:
    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("CONSULT_PSEUDONYM_KEY must be at least 16 bytes long")
        self._key = key
        # Keyed once; each reference copies it. Through the one-shot ``hmac.digest`` OpenSSL
        # looked SHA-256 up again on every call: 1.8 µs against 1.2, and more in a busy process.
        self._mac = hmac.new(key, digestmod="sha256")

    @classmethod
    def for_settings(cls, settings: Settings) -> Pseudonyms:
        if settings.pseudonym_key:
            return cls(settings.pseudonym_key.get_secret_value().encode())
        return cls(local_key(settings.data_dir / "pseudonym.key"))

    def ref(self, kind: str, name: str) -> str:
        """A reference for ``name`` within ``kind`` (participant, author, ...): 32 hex digits."""
        mac = self._mac.copy()  # never updated itself: safe to copy from any thread
        mac.update(f"{kind}:{name.strip()}".encode())
        return mac.hexdigest()[:32]

    def person(self, person: dict[str, Any]) -> str:
        """One reference per person: by ID number, else phone, else name.

        The same reference in every event lets a citizen follow their own opinions
        (their token carries the same identity) and be erased in one step. A name alone
        is the weakest identity: two people of one name who give neither phone nor ID
        number share a reference.
        """
        identity = person.get("id_number") or person.get("phone") or person["name"]
        return self.ref("person", "".join(identity.split()).upper())  # every whitespace out, as ``\s``


def local_key(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(32)) -> bytes:
    """The key in ``path``, made by ``make`` on first use. Written aside and linked into
    place, so two services starting at once agree on one key and never read a half-written
    file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        # Created owner-only: the key is never readable by others, not even for a moment.
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(make())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another service made it first; use theirs
        finally:
            draft.unlink()
    return path.read_text().strip().encode()
