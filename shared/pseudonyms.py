"""Pseudonymous references for people, so events can say "the same person" without a name.

A reference is an HMAC of the person's name under a secret key: stable (the same
name gives the same reference in every event, so attendance can be matched and
counted) but not reversible by hashing a list of common names, as a plain hash
would be. The key comes from ``CONSULT_PSEUDONYM_KEY``; when that is unset
(the embedded default) one is generated once and kept in the data directory.
Every node of one deployment must share the key, or their references differ.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from shared.config import Settings


class Pseudonyms:
    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("CONSULT_PSEUDONYM_KEY must be at least 16 bytes long")
        self._key = key

    @classmethod
    def for_settings(cls, settings: Settings) -> Pseudonyms:
        if settings.pseudonym_key:
            return cls(settings.pseudonym_key.get_secret_value().encode())
        return cls(local_key(settings.data_dir / "pseudonym.key"))

    def ref(self, kind: str, name: str) -> str:
        """A reference for ``name`` within ``kind`` (participant, author, ...): 32 hex digits."""
        digest = hmac.new(self._key, f"{kind}:{name.strip()}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]


def local_key(path: Path) -> bytes:
    """The key in ``path``, made on first use. Written aside and linked into place, so two
    services starting at once agree on one key and never read a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        # Created owner-only: the key is never readable by others, not even for a moment.
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another service made it first; use theirs
        finally:
            draft.unlink()
    return path.read_text().strip().encode()
