"""Personal data under a key of its own person, so it can be erased (crypto-shredding).

A citizen's name, phone, ID number and address are sealed (AES-256-GCM) under a
key that belongs to that person alone, and only the sealed form goes into an
event. Erasure destroys the key: every event stays exactly as stored (history
and audit intact), but nothing can open that person's data again.

Keys live in a table of their own beside the service's events (``person_keys``),
never in an event, a view or a message. A new person's key is written in the same
transaction as the event that first uses it (``KeyedSQLiteRecorder``,
``KeyedPostgresRecorder``): one commit, not two, and a command refused or lost in
a crash leaves no key behind. Each key is itself wrapped under the deployment's
vault key (``CONSULT_VAULT_KEY``, or a file made once in the data directory), so a
copy of the database alone opens nothing. On SQLite a destroyed key is overwritten
on disk (``secure_delete``); on PostgreSQL its row is gone at once and its bytes at
the next ``VACUUM``. The small store ``<service>-vault`` records when each key was
destroyed; keys an earlier release kept there move beside the events at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL

from shared.config import Settings
from shared.groupcommit import GroupedSQLiteRecorder
from shared.onetrip import OneTripPostgresRecorder
from shared.pseudonyms import local_key
from shared.stores import one_statement, open_view_store

_VIEW = "person_key"
_DESTROYED = "destroyed"
_SEALED = "v1:"


class KeyRaced(Exception):
    """Another request made this person's key first; seal again under that one."""


_KEYS_TABLE = "person_keys"


class _KeyedRecorder:
    """What the event store's recorder does for the vault: keys inside its own transactions."""

    datastore: Any
    param = "?"
    keys_table = _KEYS_TABLE
    keys_table_options = ""

    def _keys_sql(self) -> None:
        t, p = self.keys_table, self.param
        self.sql_create_keys = (f"CREATE TABLE IF NOT EXISTS {t} (ref TEXT PRIMARY KEY, wrapped TEXT NOT NULL)"
                                f"{self.keys_table_options}")
        self.sql_insert_key = f"INSERT INTO {t} (ref, wrapped) VALUES ({p}, {p}) ON CONFLICT (ref) DO NOTHING RETURNING 1"
        self.sql_select_key = f"SELECT wrapped FROM {t} WHERE ref = {p}"
        self.sql_check_key = f"SELECT 1 FROM {t} WHERE ref = {p} AND wrapped = {p}"
        self.sql_delete_key = f"DELETE FROM {t} WHERE ref = {p} RETURNING 1"
        self.sql_count_keys = f"SELECT COUNT(*) AS n FROM {t}"

    def _insert_keys(self, cursor: Any, keys: Sequence[tuple[str, str, bool]]) -> None:
        """Write each new key; check each key sealed with is still the person's. Either
        way a key that is not (made meanwhile by another request, or destroyed) undoes
        the whole save (``KeyRaced``), and the data is sealed again."""
        for ref, wrapped, new in keys:
            cursor.execute(self.sql_insert_key if new else self.sql_check_key, (ref, wrapped))
            if cursor.fetchone() is None:  # a returned row, not rowcount: psycopg's pipeline mode
                raise KeyRaced(ref)

    def read_key(self, ref: str) -> str | None:
        with one_statement(self.datastore) as cursor:
            cursor.execute(self.sql_select_key, (ref,))
            row = cursor.fetchone()
        return row["wrapped"] if row else None

    def adopt_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Keys made elsewhere (an earlier release's vault store), kept as they are."""
        with self.datastore.transaction(commit=True) as cursor:
            for ref, wrapped in keys:
                cursor.execute(self.sql_insert_key, (ref, wrapped))
                cursor.fetchone()

    def delete_key(self, ref: str) -> bool:
        with self.datastore.transaction(commit=True) as cursor:
            self._overwrite_deleted(cursor)
            cursor.execute(self.sql_delete_key, (ref,))
            return cursor.fetchone() is not None

    def count_keys(self) -> int:
        with one_statement(self.datastore) as cursor:
            cursor.execute(self.sql_count_keys)
            return int(cursor.fetchone()["n"])

    def _overwrite_deleted(self, cursor: Any) -> None:
        """Make a deletion overwrite the bytes on disk, where the database can."""


class KeyedSQLiteRecorder(_KeyedRecorder, GroupedSQLiteRecorder):
    """SQLite event store with ``person_keys`` beside the events (saves grouped as every
    service's are: ``shared.groupcommit``)."""

    #: The keys in their primary key's B-tree alone: a new person's key is one page written
    #: in the save's commit, not two (a table and its index). Stores made before keep theirs.
    keys_table_options = " WITHOUT ROWID"

    def __init__(self, datastore: Any, **kwargs: Any):
        self._keys_sql()  # the base constructor asks for the DDL
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), self.sql_create_keys]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], *,
                       person_keys: Sequence[tuple[str, str, bool]] = (), **kwargs: Any) -> Sequence[int] | None:
        self._insert_keys(c, person_keys)
        return super()._insert_events(c, stored_events, **kwargs)

    def _overwrite_deleted(self, cursor: Any) -> None:
        cursor.execute("PRAGMA secure_delete = ON")


class KeyedPostgresRecorder(_KeyedRecorder, OneTripPostgresRecorder):
    """PostgreSQL event store with ``person_keys`` beside the events (same schema): each save
    writes or checks its keys in the one statement that stores its events
    (``shared.onetrip``), so a key that is not the person's (``KeyRaced``) stores nothing."""

    param = "%s"

    def __init__(self, datastore: Any, **kwargs: Any):
        self.keys_table = f'"{datastore.schema}".{_KEYS_TABLE}'
        self._keys_sql()
        super().__init__(datastore, **kwargs)
        # After the functions is as good as before them: plpgsql finds a table when it runs.
        self.sql_create_statements.append(SQL(self.sql_create_keys))  # type: ignore[arg-type]

    def key_raced(self, ref: str) -> Exception:
        return KeyRaced(ref)


#: ``ServiceApplication.recorders`` for a service whose events carry sealed persons.
KEYED_RECORDERS = {"sqlite": f"{__name__}:KeyedSQLiteRecorder", "postgres": f"{__name__}:KeyedPostgresRecorder"}


class Vault:
    """Per-person keys: ``seal`` and ``open`` a person's data, ``destroy`` the key."""

    def __init__(self, settings: Settings, service: str, recorder: Any):
        secret = (settings.vault_key.get_secret_value().encode() if settings.vault_key
                  else local_key(settings.data_dir / "vault.key"))
        if len(secret) < 16:
            raise ValueError("CONSULT_VAULT_KEY must be at least 16 bytes long")
        self._wrap = AESGCM(hashlib.sha256(b"consultation-vault:" + secret).digest())
        if not isinstance(recorder, _KeyedRecorder):
            raise TypeError(f"{service}'s event store keeps no person keys: set its recorders to KEYED_RECORDERS")
        self._keys: _KeyedRecorder = recorder
        self._store = open_view_store(settings, service, "vault", pool_size=1)
        #: ref -> (key, ready to seal with; wrapped key) this process sealed with lately; never
        #: used to open.
        self._sealing: dict[str, tuple[AESGCM, str]] = {}
        self._adopt_earlier_keys()

    def _adopt_earlier_keys(self) -> None:
        """Keys an earlier release kept in the vault store move beside the events: copied
        first, then overwritten where they were (a crash between leaves both; adopted again)."""
        if not self._store.list(_VIEW):  # moved already (or never there): the erasure dates stay unread
            return
        moving = [(key, doc["wrapped"]) for (view, key), doc in self._store.dump().items() if view == _VIEW]
        self._keys.adopt_keys(moving)
        with self._store.transaction() as txn:
            txn.overwrite_deleted()
            for ref, _ in moving:
                txn.delete(_VIEW, ref)

    # -- keys ------------------------------------------------------------------------
    def _unwrap(self, ref: str, wrapped: str) -> bytes:
        raw = base64.b64decode(wrapped)
        return self._wrap.decrypt(raw[:12], raw[12:], ref.encode())

    def _key(self, ref: str) -> bytes | None:
        """The person's key as stored now (opening data never trusts a remembered key:
        another instance of the service may have destroyed it)."""
        wrapped = self._keys.read_key(ref)
        return None if wrapped is None else self._unwrap(ref, wrapped)

    def _sealing_key(self, ref: str) -> tuple[AESGCM, tuple[str, str, bool]]:
        """A key to seal with, and its row for the save: the one this process sealed with
        last for ``ref``, to be checked in the save's transaction, or else a new one, to be
        written there. Nothing is read first: a new person costs one transaction, and a
        guess that turns out wrong costs a retry (``raced``)."""
        known = self._sealing.get(ref)
        if known is not None:
            return known[0], (ref, known[1], False)
        nonce, key = os.urandom(12), AESGCM.generate_key(bit_length=256)
        wrapped = base64.b64encode(nonce + self._wrap.encrypt(nonce, key, ref.encode())).decode()
        return self._remember(ref, key, wrapped), (ref, wrapped, True)

    def _remember(self, ref: str, key: bytes, wrapped: str) -> AESGCM:
        if len(self._sealing) >= 100_000:
            self._sealing.clear()
        sealing = AESGCM(key)  # made once: its key schedule is half of sealing a person
        self._sealing[ref] = (sealing, wrapped)
        return sealing

    def raced(self, ref: str) -> None:
        """A save found ``ref``'s key was not the one sealed with: learn the stored one."""
        wrapped = self._keys.read_key(ref)
        if wrapped is None:
            self._sealing.pop(ref, None)
        else:
            self._remember(ref, self._unwrap(ref, wrapped), wrapped)

    def holds(self, ref: str) -> bool:
        return self._keys.read_key(ref) is not None

    def keys_held(self) -> int:
        return self._keys.count_keys()

    def destroyed(self, ref: str) -> str | None:
        """When ``ref``'s key was last destroyed, if ever (a new key may exist since)."""
        doc = self._store.get(_DESTROYED, ref)
        return doc["on"] if doc else None

    # -- data ------------------------------------------------------------------------
    def seal(self, ref: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``data`` encrypted under a key of ``ref``'s, and what the save of the event that
        carries it must be given (``app.save(..., **extra)``): the key, to be written or
        checked in the same transaction. ``KeyRaced`` from the save: ``raced``, seal again."""
        sealing, row = self._sealing_key(ref)
        nonce = os.urandom(12)
        plain = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)  # JSON as ``open`` reads it
        sealed = _SEALED + base64.b64encode(nonce + sealing.encrypt(nonce, plain, ref.encode())).decode()
        return sealed, {"person_keys": [row]}

    def open(self, ref: str, sealed: str | None) -> dict[str, Any] | None:
        """The data sealed for ``ref``, or None once the person's key is destroyed."""
        if not sealed or not sealed.startswith(_SEALED):
            return None
        key = self._key(ref)
        if key is None:
            return None
        raw = base64.b64decode(sealed[len(_SEALED):])
        try:
            return orjson.loads(AESGCM(key).decrypt(raw[:12], raw[12:], ref.encode()))
        except InvalidTag:
            return None

    def destroy(self, ref: str, on: str) -> bool:
        """Destroy ``ref``'s key for good; False if there was none."""
        # Recorded first: a crash before the key is gone leaves it held, and erasing again finishes.
        with self._store.transaction() as txn:
            txn.put(_DESTROYED, ref, {"on": on})
        self._sealing.pop(ref, None)
        return self._keys.delete_key(ref)

    def close(self) -> None:
        self._store.datastore.close()
