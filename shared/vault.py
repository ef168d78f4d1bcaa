"""Personal data under a key of its own person, so it can be erased (crypto-shredding).

A citizen's name, phone, ID number and address are sealed (AES-256-GCM) under a
key that belongs to that person alone, and only the sealed form goes into an
event. Erasure destroys the key: every event stays exactly as stored (history
and audit intact), but nothing can open that person's data again.

Keys live in a small store of their own (``<service>-vault``, SQLite file or
PostgreSQL schema), never in the event store, a view or a message. Each key is
itself wrapped under the deployment's vault key (``CONSULT_VAULT_KEY``, or a
file made once in the data directory), so a copy of the database alone opens
nothing. On SQLite a destroyed key is overwritten on disk (``secure_delete``);
on PostgreSQL its row is gone at once and its bytes at the next ``VACUUM``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import Settings
from shared.pseudonyms import local_key
from shared.stores import open_view_store

_VIEW = "person_key"
_DESTROYED = "destroyed"
_SEALED = "v1:"


class Vault:
    """Per-person keys: ``seal`` and ``open`` a person's data, ``destroy`` the key."""

    def __init__(self, settings: Settings, service: str):
        secret = (settings.vault_key.get_secret_value().encode() if settings.vault_key
                  else local_key(settings.data_dir / "vault.key"))
        if len(secret) < 16:
            raise ValueError("CONSULT_VAULT_KEY must be at least 16 bytes long")
        self._wrap = AESGCM(hashlib.sha256(b"consultation-vault:" + secret).digest())
        self._store = open_view_store(settings, service, "vault", pool_size=1)

    # -- keys ------------------------------------------------------------------------
    def _key(self, ref: str, create: bool) -> bytes | None:
        doc = self._store.get(_VIEW, ref)
        if doc is None and create:
            nonce, key = os.urandom(12), AESGCM.generate_key(bit_length=256)
            wrapped = base64.b64encode(nonce + self._wrap.encrypt(nonce, key, ref.encode())).decode()
            with self._store.transaction() as txn:
                # Two submissions by one person at once: the first key stays, both use it.
                written = txn.put_new(_VIEW, ref, {"wrapped": wrapped})
            if written:
                return key
            doc = self._store.get(_VIEW, ref)
        if doc is None:
            return None
        raw = base64.b64decode(doc["wrapped"])
        return self._wrap.decrypt(raw[:12], raw[12:], ref.encode())

    def holds(self, ref: str) -> bool:
        return self._store.get(_VIEW, ref) is not None

    def keys_held(self) -> int:
        return len(self._store.list(_VIEW))

    def destroyed(self, ref: str) -> str | None:
        """When ``ref``'s key was last destroyed, if ever (a new key may exist since)."""
        doc = self._store.get(_DESTROYED, ref)
        return doc["on"] if doc else None

    # -- data ------------------------------------------------------------------------
    def seal(self, ref: str, data: dict[str, Any]) -> str:
        """``data`` encrypted under ``ref``'s key (made on first use)."""
        key = self._key(ref, create=True)
        assert key is not None
        nonce = os.urandom(12)
        plain = json.dumps(data, ensure_ascii=False, sort_keys=True).encode()
        return _SEALED + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plain, ref.encode())).decode()

    def open(self, ref: str, sealed: str | None) -> dict[str, Any] | None:
        """The data sealed for ``ref``, or None once the person's key is destroyed."""
        if not sealed or not sealed.startswith(_SEALED):
            return None
        key = self._key(ref, create=False)
        if key is None:
            return None
        raw = base64.b64decode(sealed[len(_SEALED):])
        try:
            return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], ref.encode()))
        except InvalidTag:
            return None

    def destroy(self, ref: str, on: str) -> bool:
        """Destroy ``ref``'s key for good; False if there was none."""
        with self._store.transaction() as txn:
            txn.overwrite_deleted()
            existed = txn.get(_VIEW, ref) is not None
            txn.delete(_VIEW, ref)
            txn.put(_DESTROYED, ref, {"on": on})
        return existed

    def close(self) -> None:
        self._store.datastore.close()
