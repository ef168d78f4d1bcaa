"""Where each service keeps its events and its read models.

One service, one event store (SQLite file or PostgreSQL schema ``<service>``),
plus one view store (``<service>-views`` / schema ``<service>_views``) holding
read models and the tracking records that make their updates idempotent.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import orjson
import psycopg
import rbloom
from eventsourcing.persistence import (InfrastructureFactory, IntegrityError, InterfaceError, OperationalError,
                                       Tracking)
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLITE3_DEFAULT_LOCK_TIMEOUT, SQLiteConnection, SQLiteDatastore, SQLiteTrackingRecorder
from eventsourcing.utils import Environment
from psycopg.sql import SQL

from shared.config import Settings


def schema_name(settings: Settings, service: str, label: str = "") -> str:
    return f"{settings.schema_prefix}{service}{'_' + label if label else ''}"


def tls_parameters(settings: Settings) -> dict[str, str]:
    """libpq's TLS parameters from the settings (``POSTGRES_SSLMODE`` and the certificates)."""
    given = {"sslmode": settings.postgres_sslmode, "sslrootcert": settings.postgres_sslrootcert,
             "sslcert": settings.postgres_sslcert, "sslkey": settings.postgres_sslkey}
    return {k: str(v) for k, v in given.items() if v}


def use_postgres_tls(settings: Settings) -> None:
    """Every PostgreSQL connection of this process uses the configured TLS.

    eventsourcing opens its pools with host, port, user, password and database only;
    libpq reads the rest from its environment (``PGSSLMODE``, ...), so that is where it is set.
    """
    for name, value in tls_parameters(settings).items():
        os.environ[f"PG{name.upper()}"] = value


def admin_connection(settings: Settings) -> psycopg.Connection:
    """A connection for schema work (create, drop), with the configured TLS."""
    return psycopg.connect(
        host=settings.postgres_host, port=settings.postgres_port, user=settings.postgres_user,
        password=settings.postgres_password or None, dbname=settings.postgres_dbname, autocommit=True,
        **tls_parameters(settings))


def drop_schemas(settings: Settings, prefix: str) -> None:
    """Drop every schema whose name starts with ``prefix``: a throwaway system's stores."""
    with admin_connection(settings) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
                            (prefix.replace("_", "\\_") + "%",)).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _ensure_schema(settings: Settings, schema: str) -> None:
    # eventsourcing creates tables, not schemas.
    with admin_connection(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_MAKER + schema,))
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


_MAKER = "consult-schema:"


@contextmanager
def one_maker_at_a_time(datastore: Any) -> Iterator[None]:
    """Make a PostgreSQL store's schema objects while no other process makes them.

    ``IF NOT EXISTS`` does not hold when two sessions make the same object at once: replicas
    of a service starting together on a new database failed on the catalog's unique
    indexes (``pg_namespace``, ``pg_type``, ``pg_proc``), all but one of them. A session
    lock on the schema's name, held while eventsourcing makes the types, tables and
    functions (each in a transaction of its own), lets one process make them and the
    others find them made.
    """
    with datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_MAKER + datastore.schema,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_MAKER + datastore.schema,))


def store_env(settings: Settings, service: str, label: str = "", pool_size: int | None = None) -> dict[str, str]:
    """eventsourcing settings for one store of one service (``pool_size``: the configured one)."""
    if settings.postgres:
        pool_size = pool_size or settings.postgres_pool_size
        schema = schema_name(settings, service, label)
        use_postgres_tls(settings)
        _ensure_schema(settings, schema)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": settings.postgres_host,
            "POSTGRES_PORT": str(settings.postgres_port),
            "POSTGRES_USER": settings.postgres_user,
            "POSTGRES_PASSWORD": settings.postgres_password,
            "POSTGRES_DBNAME": settings.postgres_dbname,
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
        }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    filename = f"{service}-{label}.sqlite" if label else f"{service}-events.sqlite"
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(settings.data_dir / filename),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


@contextmanager
def one_statement(datastore: Any) -> Iterator[Any]:
    """A cursor for a read that is one statement, run without ``BEGIN`` and ``ROLLBACK``.

    eventsourcing wraps every read in a transaction of its own. A single statement already
    is one, on one snapshot, on both databases, so the wrapper only added two statements:
    on PostgreSQL two more round trips; on SQLite, on the threads that serve commands, two
    more times the thread let go of Python's lock and waited to take it back. Reads of
    several statements that must agree keep a transaction (``ViewStore.reading``).
    """
    if isinstance(datastore, SQLiteDatastore):
        with datastore.get_connection(commit=False) as conn:
            cursor = conn._sqlite_conn.cursor()  # noqa: SLF001 - the connection eventsourcing made
            try:
                yield cursor
            except sqlite3.OperationalError as error:  # as eventsourcing's transactions raise them,
                raise OperationalError(error) from error  # so that its retries still apply
            except sqlite3.InterfaceError as error:
                raise InterfaceError(error) from error
            finally:
                cursor.close()  # ends the statement, and with it the read's snapshot
        return
    with datastore.get_connection() as conn, conn.cursor() as cursor:  # autocommit connections
        yield cursor


class _SQLiteConnection(SQLiteConnection):
    """eventsourcing's SQLite connection, rolled back when its commit fails.

    sqlite3 leaves the transaction open when ``COMMIT`` itself fails (a full disk, an I/O
    error). The connection went back to its pool in that state, and every later transaction
    on it was refused ("cannot start a transaction within a transaction") until the process
    restarted, long after the disk had room again.
    """

    def commit(self) -> None:
        try:
            if self._sqlite_conn.in_transaction:  # sqlite3's ``commit()`` prepares it each time
                self._sqlite_conn.execute("COMMIT")
        except BaseException:
            self._sqlite_conn.rollback()
            raise


#: Statements each SQLite connection keeps prepared. eventsourcing opens its connections with
#: ``cached_statements=True``, which sqlite3 reads as a cache of one: every statement of a
#: save (``BEGIN``, the key's check, the insert) was parsed again each time, a third of a
#: save's time in SQLite on a disk that does not wait (62 µs against 40; ninth round).
STATEMENT_CACHE = 128


def adapt_connections(datastore: SQLiteDatastore) -> None:
    """Every connection ``datastore``'s pool makes from now on keeps its statements prepared
    (``STATEMENT_CACHE``) and rolls back a failed commit (``_SQLiteConnection``)."""
    pool = datastore.pool
    make = pool._create_connection  # noqa: SLF001 - eventsourcing makes its connections here

    def create_connection() -> SQLiteConnection:
        connection = make()  # eventsourcing's: the store in WAL mode, rows as ``sqlite3.Row``
        made = connection._sqlite_conn  # noqa: SLF001
        # The same connection again but for its cache, which sqlite3 sets only when it connects.
        # Opened before the first is closed: an in-memory store shared in cache lives on.
        ours = sqlite3.connect(pool.db_name, uri=True, check_same_thread=False, isolation_level=None,
                               cached_statements=STATEMENT_CACHE,
                               timeout=pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
        ours.row_factory = made.row_factory
        made.close()
        connection._sqlite_conn = ours  # noqa: SLF001
        connection.__class__ = _SQLiteConnection
        return connection

    pool._create_connection = create_connection  # noqa: SLF001


class Duplicate(Exception):
    """The event was already applied to these read models."""


_fallback = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _encode(doc: dict[str, Any]) -> str:
    """A document as stored: JSON text, keys sorted (orjson: a rebuild writes every document
    of a service, and the standard encoder was a third of its time). What orjson has no JSON
    for (an integer wider than 64 bits) goes through the standard encoder."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _fallback(doc)


#: What ``ViewTransaction`` holds for a key it has not written (None is a held deletion).
_NOT_HELD = object()


class ViewTransaction:
    """Read-model documents inside one database transaction.

    Writes are held until the transaction ends and then sent together (``executemany``):
    a batch of events often writes one document several times (an opinion submitted and
    answered in the same batch), and one statement per write was most of a rebuild's
    time. Reads see the held writes; ``list`` sends them first.
    """

    def __init__(self, store: ViewStoreMixin, cursor: Any, opener: Callable[[], Any] | None = None):
        self._store = store
        self._cursor = cursor
        #: A transaction handed to the store's writer (``write_behind``) has no cursor until
        #: it must ask the database; then ``opener`` gives it one, and it ends as any other.
        self._opener = opener
        # (view, key) -> the document's JSON, or None for a deletion; the last write wins.
        self._held: dict[tuple[str, str], str | None] = {}
        #: What this transaction sent, for the store's own record once it commits.
        self.sent: dict[tuple[str, str], str | None] = {}

    @property
    def cursor(self) -> Any:
        if self._cursor is None:
            assert self._opener is not None
            self._cursor = self._opener()
        return self._cursor

    @property
    def opened(self) -> bool:
        return self._cursor is not None

    def _known(self, view: str, key: str) -> Any:
        """The document's JSON as held here or as the store knows it was committed (None:
        absent); ``_NOT_HELD`` when only the database can say."""
        held = self._held.get((view, key), _NOT_HELD)
        if held is _NOT_HELD and self._store.committed is not None:
            # Sent already by this transaction (a ``list`` flushes), else committed before.
            held = self.sent.get((view, key), _NOT_HELD)
            if held is _NOT_HELD:
                held = self._store.committed.get((view, key), _NOT_HELD)
                if held is _NOT_HELD and self._store.never_written((view, key)):
                    held = None
        return held

    def get(self, view: str, key: str) -> dict[str, Any] | None:
        held = self._known(view, key)
        if held is not _NOT_HELD:
            return None if held is None else orjson.loads(held)  # type: ignore[arg-type]
        self.cursor.execute(self._store.sql_get_for_update, (view, key))
        row = self.cursor.fetchone()
        return self._store._doc(row) if row else None

    def put(self, view: str, key: str, doc: dict[str, Any]) -> None:
        self._held[(view, key)] = _encode(doc)

    def put_new(self, view: str, key: str, doc: dict[str, Any]) -> bool:
        """Write ``doc`` unless the key is taken (then the first writer's stays); True if written."""
        held = self._known(view, key)
        if held is not _NOT_HELD:
            if held is not None:
                return False
            self.put(view, key, doc)
            return True
        self.cursor.execute(
            self._store.sql_put_new, (view, key, _encode(doc))
        )
        # A returned row, not rowcount: in psycopg's pipeline mode rowcount is unknown (-1).
        return self.cursor.fetchone() is not None

    def delete(self, view: str, key: str) -> None:
        self._held[(view, key)] = None

    def overwrite_deleted(self) -> None:
        """Make this transaction's deletions overwrite the bytes on disk (SQLite)."""
        if isinstance(self._store, SQLiteViewStore):
            self.cursor.execute("PRAGMA secure_delete = ON")

    def list(self, view: str, prefix: str = "") -> list[dict[str, Any]]:
        cursor = self.cursor
        self.flush()
        return self._store._list(cursor, view, prefix)

    def flush(self) -> None:
        """Send the held writes."""
        if not self._held:
            return
        held, self._held = self._held, {}
        if self._store.committed is not None:
            self.sent.update(held)
        self._store.send(self.cursor, held)


class Forgotten:
    """Keys a throwaway store dropped from memory: Bloom filters (``rbloom``), each twice the
    size of the one before, so it grows with the store and never says "absent" of a key it
    was given. One in a million keys never given is taken for one given: the database then
    answers for it, as it does for every key a store not begun empty does not remember.
    An exact set of 4,000,000 hashes (a rebuild of 1,000,000 events) took about 300 MB and
    was capped at 2,000,000 keys: past that, every new key asked the database, and the
    rebuild fell from 23,000 to 15,000 events/s. These take 3.6 bytes a key."""

    first_capacity = 1_000_000
    false_positives = 1e-6

    def __init__(self) -> None:
        self._filters: list[rbloom.Bloom] = []
        self._room = 0  # keys the newest filter takes before it is full
        self._given = 0

    def __contains__(self, key: object) -> bool:
        return any(key in f for f in self._filters)

    def __len__(self) -> int:
        """Keys given (a key given twice counts twice)."""
        return self._given

    def update(self, keys: list[Any]) -> None:
        self._given += len(keys)
        while keys:
            if self._room == 0:
                capacity = self.first_capacity << len(self._filters)
                self._filters.append(rbloom.Bloom(capacity, self.false_positives))
                self._room = capacity
            taken, keys = keys[:self._room], keys[self._room:]
            self._filters[-1].update(taken)
            self._room -= len(taken)


class _Writer:
    """One thread committing a store's handed-over transactions, in order.

    A rebuild spent a third of its time in SQLite's upserts and commits; the database
    does that work without Python's lock, so it overlaps the making of the next batch.
    At most two transactions wait, so memory stays bounded and a failure is known soon.
    """

    def __init__(self, store: ViewStoreMixin):
        self._store = store
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def submit(self, trackings: tuple[Tracking, ...], held: dict[tuple[str, str], str | None]) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= 2):
            self._pending.popleft().result()  # raises what failed
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="view-writer")
        self._pending.append(self._pool.submit(self._store._write, trackings, held))

    def drain(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None and not self._pending:
                self._pool.shutdown()  # an idle store keeps no thread
                self._pool = None


class ViewReader:
    """Reads inside one transaction (``ViewStore.reading``)."""

    def __init__(self, store: ViewStoreMixin, cursor: Any):
        self._store, self._cursor = store, cursor

    def get(self, view: str, key: str) -> dict[str, Any] | None:
        self._cursor.execute(self._store.sql_get, (view, key))
        row = self._cursor.fetchone()
        return self._store._doc(row) if row else None

    def list(self, view: str, prefix: str = "") -> list[dict[str, Any]]:
        return self._store._list(self._cursor, view, prefix)

    def lists(self, view: str, prefixes: list[str]) -> list[list[dict[str, Any]]]:
        """``list(view, prefix)`` of each prefix, in one statement where keys are ranges."""
        return self._store._lists(self._cursor, view, prefixes)


class ViewStoreMixin:
    """Documents keyed by (view, key), written in the transaction that tracks the event.

    Tracking is multi-row: a set of (projection:source, sequence) pairs already
    applied, so re-delivered or re-published events are recognised whatever order
    partitions interleave them in.
    """

    datastore: Any
    param = "?"
    lock_clause = ""
    #: A document's field, in SQL (the documents are JSON text).
    json_field = "json_extract(doc, '$.{}')"
    #: SQLite's planner, without statistics, prefers the primary key's (view, …) to the
    #: partial index; told, it fails loudly should the index ever not fit the query.
    open_steps_hint = " INDEXED BY view_documents_open_steps"

    def _doc_sql(self, t: str = "view_documents", key: str = "TEXT") -> None:
        p = self.param
        self.sql_create_documents = (
            f"CREATE TABLE IF NOT EXISTS {t} (view TEXT NOT NULL, key {key} NOT NULL, "
            "doc TEXT NOT NULL, PRIMARY KEY (view, key))"
        )
        self.sql_get = f"SELECT doc FROM {t} WHERE view = {p} AND key = {p}"
        self.sql_get_for_update = self.sql_get + self.lock_clause
        self.sql_put = (
            f"INSERT INTO {t} (view, key, doc) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (view, key) DO UPDATE SET doc = excluded.doc"
        )
        self.sql_put_new = (
            f"INSERT INTO {t} (view, key, doc) VALUES ({p}, {p}, {p}) ON CONFLICT (view, key) DO NOTHING "
            "RETURNING 1"
        )
        self.sql_delete = f"DELETE FROM {t} WHERE view = {p} AND key = {p}"
        self.sql_delete_view = f"DELETE FROM {t} WHERE view = {p}"
        self.sql_view_names = f"SELECT DISTINCT view FROM {t}"
        # SQLite: every [view, key, doc] of a JSON array in one statement (``_put_all``).
        self.sql_put_json = (
            f"INSERT INTO {t} (view, key, doc) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
            "json_extract(value, '$[2]') FROM json_each(?) WHERE true "
            "ON CONFLICT (view, key) DO UPDATE SET doc = excluded.doc"
        )
        self.sql_list = (
            f"SELECT doc FROM {t} WHERE view = {p} AND key LIKE {p} ESCAPE '\\' ORDER BY key"
        )
        # The same, with the prefix's range beside the pattern: SQLite's LIKE is case-blind, so
        # it cannot use the (view, key) index and scanned the whole view for every prefix (a
        # trace of thousands of subjects took seconds); the range is exact and indexed.
        self.sql_list_range = (
            f"SELECT doc FROM {t} WHERE view = {p} AND key >= {p} AND key < {p} "
            f"AND key LIKE {p} ESCAPE '\\' ORDER BY key"
        )
        # A page: the next keys after one, in order, at most so many (``page``); as above, with
        # and without the prefix's range.
        self.sql_page = (
            f"SELECT key, doc FROM {t} WHERE view = {p} AND key >= {p} "
            f"AND key LIKE {p} ESCAPE '\\' ORDER BY key LIMIT {p}"
        )
        self.sql_page_range = (
            f"SELECT key, doc FROM {t} WHERE view = {p} AND key >= {p} AND key < {p} "
            f"AND key LIKE {p} ESCAPE '\\' ORDER BY key LIMIT {p}"
        )
        self.sql_list_all = f"SELECT view, key, doc FROM {t} ORDER BY view, key"
        self.sql_any = f"SELECT 1 FROM {t} LIMIT 1"
        # Steps neither met nor missed (shared.deadlines), in an index of their own by due date.
        f = self.json_field
        open_steps = f"view = 'deadline' AND {f.format('met_on')} IS NULL AND {f.format('missed_on')} IS NULL"
        self.sql_index_open_steps = (
            f"CREATE INDEX IF NOT EXISTS view_documents_open_steps ON {t} ({f.format('due')}) WHERE {open_steps}")
        self.sql_open_steps_due_before = (
            f"SELECT doc FROM {t}{self.open_steps_hint} WHERE {open_steps} AND {f.format('due')} < {p}")

    @staticmethod
    def _doc(row: Any) -> dict[str, Any]:
        return orjson.loads(row["doc"])

    #: Whether keys compare by code point here, so a prefix is also a range (SQLite's BINARY).
    prefix_is_range = False

    def _list(self, cursor: Any, view: str, prefix: str) -> list[dict[str, Any]]:
        pattern, upper = self._pattern(prefix)
        if upper is not None:
            cursor.execute(self.sql_list_range, (view, prefix, upper, pattern))
        else:
            cursor.execute(self.sql_list, (view, pattern))
        return [self._doc(row) for row in cursor.fetchall()]

    #: The documents of one view under each of many key ranges, each row with its range's
    #: place (from 0) as ``place``; where keys compare by code point (``prefix_is_range``).
    sql_lists: str | None = None

    def _lists(self, cursor: Any, view: str, prefixes: list[str]) -> list[list[dict[str, Any]]]:
        ranges = [self._pattern(prefix)[1] for prefix in prefixes]
        if self.sql_lists is None or len(prefixes) < 2 or None in ranges:  # None: not a range here
            return [self._list(cursor, view, prefix) for prefix in prefixes]
        # A topic of 20,000 subjects: one statement, not 20,000 (on SQLite 0.90 s to 0.32 s
        # for its trace; on PostgreSQL each had been a round trip).
        found: list[list[dict[str, Any]]] = [[] for _ in prefixes]
        cursor.execute(self.sql_lists, self._lists_args(view, prefixes, ranges))
        for row in cursor.fetchall():
            found[row["place"]].append(self._doc(row))
        return found

    @staticmethod
    def _lists_args(view: str, firsts: list[str], pasts: list[str | None]) -> tuple[Any, ...]:
        """The ranges as ``sql_lists`` takes them: SQLite, a JSON array of [first, past]."""
        return orjson.dumps([[f, p] for f, p in zip(firsts, pasts)]).decode(), view

    def _pattern(self, prefix: str) -> tuple[str, str | None]:
        """The LIKE pattern of ``prefix``, and the first key past its range where keys compare
        by code point (None: the pattern alone decides)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        last = ord(prefix[-1]) if prefix else 0
        # The next code point bounds the range; none past the last, none into the surrogates.
        if self.prefix_is_range and prefix and (last < 0xD7FF or 0xE000 <= last < 0x10FFFF):
            return pattern, prefix[:-1] + chr(last + 1)
        return pattern, None

    def page(self, view: str, prefix: str = "", after: str = "", limit: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` documents of ``view`` whose keys begin with ``prefix`` and follow the
        key ``after``, in key order, each with its key (the next page's ``after``).

        A list a client may ask for without bound (the public's) is read this way: each
        request costs what one page costs, however much the view holds.
        """
        self.drain()
        pattern, upper = self._pattern(prefix)
        # From the prefix itself (a key may be just the prefix), or from the key after ``after``:
        # that key is read too and left out (no text param can hold the NUL that would follow it).
        following = bool(after) and after >= prefix
        start, asked = (after, limit + 1) if following else (prefix, limit)
        with one_statement(self.datastore) as cursor:
            if upper is not None:
                cursor.execute(self.sql_page_range, (view, start, upper, pattern, asked))
            else:
                cursor.execute(self.sql_page, (view, start, pattern, asked))
            rows = cursor.fetchall()
        if following and rows and rows[0]["key"] == after:
            rows = rows[1:]
        return [(row["key"], self._doc(row)) for row in rows[:limit]]

    def transaction(self, *trackings: Tracking) -> Any:
        """One atomic change: tracking first (so a concurrent twin waits, then fails)."""
        if self._writer is not None:
            return self._handed_over(trackings)
        return self._transaction(trackings)

    def send(self, cursor: Any, held: dict[tuple[str, str], str | None], whole: bool = False) -> None:
        """Write ``held`` (JSON, or None for a deletion) in the transaction of ``cursor``;
        ``whole``: in as few statements as the database can (on the writer's thread)."""
        deletes = [key for key, doc in held.items() if doc is None]
        # In key order: a B-tree takes sorted inserts faster than scattered ones.
        puts = sorted((view, key, doc) for (view, key), doc in held.items() if doc is not None)
        if deletes:
            cursor.executemany(self.sql_delete, deletes)
        if puts:
            self._put_all(cursor, puts, whole)

    def _put_all(self, cursor: Any, puts: list[tuple[str, str, str]], whole: bool) -> None:
        cursor.executemany(self.sql_put, puts)

    #: Other processes write this store too (the relay's records, which ``consult relay`` and
    #: ``consult audit`` change while the service runs): see ``SQLiteViewStore._lock_first``.
    shared_with_processes = False

    def _lock_first(self, cursor: Any, always: bool = False) -> None:
        """Before a write transaction's first statement (SQLite's write lock, there)."""

    @contextmanager
    def _tracked(self, trackings: tuple[Tracking, ...], lock_first: bool = False) -> Iterator[Any]:
        """A database transaction (pipelined where it can be) that begins with ``trackings``;
        ``lock_first``: holding the write lock from the start, whoever else writes the store."""
        with self.datastore.transaction(commit=True) as cursor, self._pipelined(cursor):
            self._lock_first(cursor, lock_first)
            for tracking in trackings:
                self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]
            yield cursor

    @contextmanager
    def _transaction(self, trackings: tuple[Tracking, ...]) -> Iterator[ViewTransaction]:
        try:
            with self._tracked(trackings) as cursor:
                txn = ViewTransaction(self, cursor)
                yield txn
                txn.flush()
        except IntegrityError as error:
            raise Duplicate(str(error)) from error
        if self.committed is not None:
            self._remember(txn.sent)

    #: For a store only this object writes, begun empty (a rebuild's, an audit replay's):
    #: the JSON of documents committed lately, so reads need not ask the database (on
    #: PostgreSQL each was a round trip, most of a rebuild's time). None: not such a store.
    committed: dict[tuple[str, str], str | None] | None = None
    #: Whether every key ever written is known (in ``committed`` or ``evicted``): then one
    #: that is in neither is absent.
    committed_whole = False
    committed_limit = 200_000
    #: The keys of documents dropped from ``committed`` to bound its memory (a Bloom
    #: filter): a key it has never seen is surely absent from the database.
    evicted: Forgotten

    #: A throwaway store's writer (``write_behind``); None: each transaction commits as it ends.
    _writer: _Writer | None = None

    def write_behind(self) -> None:
        """Commit on a thread of its own while the next transaction is made (a store only
        this object writes, remembering what it committed: a rebuild's). A transaction that
        must ask the database waits for the writer first, and then ends as any other."""
        assert self.committed is not None, "remember_commits first: reads come from memory"
        self._writer = _Writer(self)

    def drain(self) -> None:
        """Wait until everything handed to the writer is committed (raising its failure).

        Every read of the database waits for it first: the writer's connection may be the
        one the read would get, and SQLite's connections are not to be shared at once."""
        if self._writer is not None:
            self._writer.drain()

    def max_tracking_id(self, application_name: str) -> int | None:
        self.drain()
        with one_statement(self.datastore) as cursor:  # as eventsourcing reads it on PostgreSQL
            return self._max_tracking_id(application_name, cursor)  # type: ignore[attr-defined]

    def has_tracking_id(self, application_name: str, notification_id: int | None) -> bool:
        self.drain()
        return super().has_tracking_id(application_name, notification_id)  # type: ignore[misc]

    def insert_tracking(self, tracking: Tracking) -> None:
        self.drain()
        super().insert_tracking(tracking)  # type: ignore[misc]

    @contextmanager
    def _handed_over(self, trackings: tuple[Tracking, ...]) -> Iterator[ViewTransaction]:
        stack = ExitStack()

        def begin() -> Any:
            self.drain()  # the database holds everything handed over before this
            return stack.enter_context(self._tracked(trackings))

        txn = ViewTransaction(self, None, begin)
        try:
            with stack:
                yield txn
                if txn.opened:
                    txn.flush()
        except IntegrityError as error:
            raise Duplicate(str(error)) from error
        if txn.opened:
            self._remember(txn.sent)
            return
        held = txn._held
        assert self._writer is not None
        self._writer.submit(trackings, held)
        self._remember(held)  # this store's reads see it at once; only this object writes it

    def _write(self, trackings: tuple[Tracking, ...], held: dict[tuple[str, str], str | None]) -> None:
        """One handed-over transaction, committed (on the writer's thread)."""
        with self._tracked(trackings) as cursor:
            self.send(cursor, held, whole=True)

    # -- a projection's version (``shared.projection.start_over_if_changed``) -------------
    def _tracking_table(self) -> str:
        return "tracking"  # eventsourcing's SQLite name for it

    def projection_built_by(self, name: str) -> int | None:
        """The version of projection ``name`` whose documents this store holds: as recorded
        (a tracking record ``name@version``), 1 for a store written before versions were
        recorded, None for one it never wrote."""
        recorded = self.recorded_version(name)
        if recorded is not None:
            return recorded
        p = self.param
        with one_statement(self.datastore) as cursor:
            # Its tracking records are "name:service" (own log) and "name:service:subject"
            # (Kafka). Once, for a store of an earlier release (the version is recorded then):
            # a scan of the table.
            cursor.execute(f"SELECT 1 FROM {self._tracking_table()} WHERE substr(application_name, 1, {p}) = {p} "
                           "LIMIT 1", (len(name) + 1, f"{name}:"))
            return 1 if cursor.fetchone() else None

    def recorded_version(self, name: str) -> int | None:
        return self.max_tracking_id(f"{name}@version")

    def view_names(self) -> list[str]:
        """The views this store holds documents of."""
        self.drain()
        with one_statement(self.datastore) as cursor:
            cursor.execute(self.sql_view_names)
            return sorted(row["view"] for row in cursor.fetchall())

    def record_version(self, name: str, version: int) -> None:
        """Note that ``version`` of projection ``name`` builds this store's documents."""
        with contextlib.suppress(IntegrityError):  # recorded meanwhile by another process
            with self._tracked((Tracking(f"{name}@version", version),), lock_first=True):
                pass

    def start_over(self, name: str, views: tuple[str, ...], version: int) -> bool:
        """In one transaction: record ``version`` of projection ``name``, and delete every
        document of ``views`` and every tracking record of the projection, so it applies
        every event again. False, with nothing changed, when another process recorded that
        version first (its followers may be rebuilding already)."""
        self.drain()
        p = self.param
        try:
            # The version's record first: a twin doing the same at the same moment waits for
            # it, then fails on it, and deletes nothing of what this one starts writing.
            with self._tracked((Tracking(f"{name}@version", version),), lock_first=True) as cursor:
                cursor.executemany(self.sql_delete_view, [(view,) for view in views])
                cursor.execute(f"DELETE FROM {self._tracking_table()} WHERE substr(application_name, 1, {p}) = {p}",
                               (len(name) + 1, f"{name}:"))
                cursor.execute(f"DELETE FROM {self._tracking_table()} WHERE application_name = {p} "
                               f"AND notification_id <> {p}", (f"{name}@version", version))
        except IntegrityError:
            return False
        return True

    def remember_commits(self) -> None:
        """Take this store as written by this object alone from now on (see ``committed``)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.sql_any)
            empty = cursor.fetchone() is None
        self.committed, self.committed_whole, self.evicted = {}, empty, Forgotten()

    def never_written(self, key: tuple[str, str]) -> bool:
        """True when ``key`` is surely absent, without asking the database."""
        return self.committed_whole and key not in self.evicted

    def _remember(self, sent: dict[tuple[str, str], str | None]) -> None:
        assert self.committed is not None
        if len(self.committed) + len(sent) > self.committed_limit:
            self._evict(len(self.committed) + len(sent) - self.committed_limit // 2)
        self.committed.update(sent)

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest documents from memory. Their keys are kept (in a Bloom
        filter: a few bytes each, not the document), so a key never written is still known
        to be absent: in a rebuild of 100,000 events on PostgreSQL, losing that made every
        new key a round trip (7,100 against 9,200 events/s)."""
        assert self.committed is not None
        old = list(itertools.islice(self.committed, min(count, len(self.committed))))
        for key in old:
            del self.committed[key]
        if self.committed_whole:
            self.evicted.update(old)

    def _pipelined(self, cursor: Any) -> Any:
        """Statements sent without waiting for each answer, where the database allows it."""
        return nullcontext()

    def get(self, view: str, key: str) -> dict[str, Any] | None:
        self.drain()
        with one_statement(self.datastore) as cursor:
            return ViewReader(self, cursor).get(view, key)

    def list(self, view: str, prefix: str = "") -> list[dict[str, Any]]:
        self.drain()
        with one_statement(self.datastore) as cursor:
            return ViewReader(self, cursor).list(view, prefix)

    def _open_steps_index(self) -> list[str]:
        """The DDL of ``open_steps_due_before``'s index, for a store being made; none for one
        made to be thrown away (``open_view_store(durable=False)``): no scheduler reads it."""
        return [self.sql_index_open_steps] if _pragmas.get() is None else []

    def open_steps_due_before(self, before: str) -> list[dict[str, Any]]:
        """``deadline`` documents neither met nor missed whose ``due`` (an ISO date) is before
        ``before``: what the deadline scheduler asks for once a minute.

        Read through a partial index of the open steps by due date, made with the store's
        tables when it is opened (over the documents already there, when a store made by an
        earlier release is upgraded; before any follower writes: made while they wrote, on
        PostgreSQL, it held their transactions up), so the read is a range of the steps that
        can be overdue, however many steps were opened and closed before. Listing the view
        read every step ever opened: two documents an opinion, a million opinions two
        million documents a minute. A rebuild's store does without the index.
        """
        self.drain()
        with one_statement(self.datastore) as cursor:
            cursor.execute(self.sql_open_steps_due_before, (before,))
            return [self._doc(row) for row in cursor.fetchall()]

    @contextmanager
    def reading(self) -> Iterator[ViewReader]:
        """Many reads on one connection and one snapshot (a query answered from thousands of
        documents: a topic's trace), instead of a connection and a transaction per read."""
        self.drain()
        with self.datastore.transaction(commit=False) as cursor:
            yield ViewReader(self, cursor)

    def dump(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every document: what a rebuild is compared against."""
        return {key: orjson.loads(doc) for key, doc in self.dump_text().items()}

    def dump_text(self) -> dict[tuple[str, str], str]:
        """Every document as stored (its JSON): ``shared.replay.text_differences`` compares
        these, and decodes only what differs."""
        self.drain()
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.sql_list_all)
            return {(r["view"], r["key"]): r["doc"] for r in cursor.fetchall()}


class SQLiteViewStore(ViewStoreMixin, SQLiteTrackingRecorder):
    prefix_is_range = True
    sql_lists = ("SELECT CAST(p.key AS INTEGER) AS place, d.doc AS doc FROM json_each(?) AS p "
                 "CROSS JOIN view_documents AS d ON d.view = ? AND d.key >= json_extract(p.value, '$[0]') "
                 "AND d.key < json_extract(p.value, '$[1]') ORDER BY place, d.key")

    def _lock_first(self, cursor: Any, always: bool = False) -> None:
        """Take the write lock as the transaction begins (``BEGIN IMMEDIATE``) in a store that
        other processes write too.

        eventsourcing begins SQLite transactions deferred: the lock is taken at the first
        write. A transaction that has read by then, and finds another process committed
        meanwhile, is refused at once ("database is locked") instead of waiting its turn:
        measured, ``consult relay retry`` against a relay writing its records failed 1,798
        times in 2,188. Taken first, the lock is waited for (``SQLITE_LOCK_TIMEOUT``).
        """
        if self.shared_with_processes or always:
            cursor.execute("ROLLBACK")  # the deferred BEGIN, which has taken nothing yet
            cursor.execute("BEGIN IMMEDIATE")

    def __init__(self, datastore: Any, **kwargs: Any):
        self._doc_sql()  # the base constructor asks for the DDL
        adapt_connections(datastore)
        # A store made to be thrown away (``open_view_store``): every connection of its pool,
        # made from now on (before any is: the tables are created after this), keeps its
        # journal in memory and does not wait for the disk. Others keep WAL and FULL.
        if _pragmas.get() is not None:
            pool = datastore.pool
            make, pragmas = pool._create_connection, _pragmas.get()

            def create_connection() -> Any:
                connection = make()
                for pragma in pragmas.split(";"):
                    connection._sqlite_conn.execute(f"PRAGMA {pragma}")
                return connection

            pool._create_connection = create_connection
        super().__init__(datastore, **kwargs)

    def _put_all(self, cursor: Any, puts: list[tuple[str, str, str]], whole: bool) -> None:
        if not whole or len(puts) < 64:
            return super()._put_all(cursor, puts, whole)
        # One statement over a JSON array: SQLite runs all of it without taking Python's lock
        # back between rows, which ``executemany`` does for every row (and a thread that
        # waits for that lock waits out the interpreter's switch interval each time).
        cursor.execute(self.sql_put_json, (orjson.dumps(puts).decode(),))

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), self.sql_create_documents, *self._open_steps_index()]


class PostgresViewStore(ViewStoreMixin, PostgresTrackingRecorder):
    param = "%s"
    lock_clause = " FOR UPDATE"
    json_field = "(doc::jsonb ->> '{}')"
    open_steps_hint = ""  # its planner weighs the partial index by its statistics

    def _pipelined(self, cursor: Any) -> Any:
        # psycopg's pipeline mode: a batch's many small writes go out together instead of one
        # round trip each (a read inside the transaction waits for what went before it).
        return cursor.connection.pipeline()

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        table = f'"{datastore.schema}".view_documents'
        # Keys compare byte by byte (the C collation), as on SQLite: a prefix is then a range
        # of the primary key's own index, and each key written costs a memcmp, not the
        # locale's comparison.
        self._doc_sql(table, key='TEXT COLLATE "C"')
        self.sql_create_statements.append(SQL(self.sql_create_documents))  # type: ignore[arg-type]
        # A table made before that, under a database collation other than C: LIKE 'prefix%'
        # uses an index only with the pattern operator class (without it every prefix read
        # scanned the view). A store of C keys does without this second index on every write.
        self._sql_collation = self._key_collation(table)
        self.sql_create_statements += [SQL(sql) for sql in self._open_steps_index()]  # type: ignore[arg-type]
        self.sql_create_statements.append(SQL(  # type: ignore[arg-type]
            f"DO $$ BEGIN IF ({self._sql_collation}) NOT IN ('C', 'POSIX') THEN "
            f"CREATE INDEX IF NOT EXISTS view_documents_prefix ON {table} (view, key text_pattern_ops); "
            "END IF; END $$"))
        self.sql_put_arrays = (
            f"INSERT INTO {table} (view, key, doc) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[]) "
            "ON CONFLICT (view, key) DO UPDATE SET doc = excluded.doc")
        # Each range an index scan of its own (LATERAL), the ranges two arrays.
        self.sql_lists = (
            "SELECT r.place - 1 AS place, d.doc AS doc "
            "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(first, past, place) "
            f"CROSS JOIN LATERAL (SELECT key, doc FROM {table} WHERE view = %s AND key >= r.first "
            "AND key < r.past) AS d ORDER BY r.place, d.key")

    def _tracking_table(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'

    @staticmethod
    def _key_collation(table: str) -> str:
        """SQL giving the collation the key column compares by (the database's, if its own)."""
        return ("SELECT CASE WHEN c.collname = 'default' THEN (SELECT datcollate FROM pg_database "
                "WHERE datname = current_database()) ELSE c.collname END AS collation FROM pg_attribute a "
                f"JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = '{table}'::regclass "
                "AND a.attname = 'key'")

    def create_table(self) -> None:
        with one_maker_at_a_time(self.datastore):
            super().create_table()
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL(self._sql_collation))  # type: ignore[arg-type]
            self.prefix_is_range = cursor.fetchone()["collation"] in ("C", "POSIX")

    @staticmethod
    def _lists_args(view: str, firsts: list[str], pasts: list[str | None]) -> tuple[Any, ...]:
        return firsts, pasts, view

    def unlogged(self) -> None:
        """Write this store's tables past the write-ahead log (a store made to be thrown away,
        as SQLite's throwaway store does not wait for the disk). A rebuild's PostgreSQL
        server spent more of the machine than its Python did, much of it on the log."""
        schema = self.datastore.schema
        with self.datastore.transaction(commit=True) as cursor:
            for table in ("view_documents", self.tracking_table_name):
                cursor.execute(SQL(f'ALTER TABLE "{schema}"."{table}" SET UNLOGGED'))  # type: ignore[arg-type]

    def _put_all(self, cursor: Any, puts: list[tuple[str, str, str]], whole: bool) -> None:
        if not whole or len(puts) < 64:
            return super()._put_all(cursor, puts, whole)
        # One statement over three arrays: psycopg's executemany prepares every row in Python,
        # holding Python's lock, which the writer's thread then takes from the rebuild.
        views, keys, docs = (list(column) for column in zip(*puts, strict=True))
        cursor.execute(self.sql_put_arrays, (views, keys, docs))


ViewStore = SQLiteViewStore | PostgresViewStore


def open_view_store(settings: Settings, service: str, label: str = "views",
                    pool_size: int | None = None, durable: bool = True,
                    shared_with_processes: bool = False) -> ViewStore:
    """A document store with tracking records: read models, the relay's records, the vault.

    A store made to be thrown away (``durable=False``: a rebuild's, an audit replay's) is
    written by the object returned alone: it remembers what it committed
    (``remember_commits``), and on SQLite keeps its journal in memory and commits without
    waiting for the disk.
    Every other store waits: a Kafka-fed view commits its consumer offset once its
    transaction returns, and an offset that outlived a transaction lost to a power cut
    would skip that event for good. A store other processes write too
    (``shared_with_processes``) takes its write lock as each write transaction begins.
    """
    env = {**store_env(settings, service, label, pool_size), "SINGLE_ROW_TRACKING": "f"}
    factory = InfrastructureFactory.construct(Environment(f"{service}_{label}", env))
    cls = PostgresViewStore if settings.postgres else SQLiteViewStore
    with _sqlite_pragmas(None if durable else _THROWAWAY):
        store: ViewStore = factory.tracking_recorder(cls)  # type: ignore[arg-type,assignment]
    store.shared_with_processes = shared_with_processes
    if not durable:
        if isinstance(store, PostgresViewStore):
            store.unlogged()
        store.remember_commits()
        store.write_behind()
    return store


#: A throwaway store's pragmas: its rollback journal in memory (pages written once, not to
#: the WAL and again at each checkpoint) and no waiting for the disk; lost in a crash, as
#: the store would be anyway.
_THROWAWAY = "journal_mode = MEMORY;synchronous = OFF"

#: The pragmas a SQLite view store being made gets; None: SQLite's own (WAL, FULL), and a
#: durable store of either database (``_open_steps_index``).
_pragmas: ContextVar[str | None] = ContextVar("sqlite_pragmas", default=None)


@contextmanager
def _sqlite_pragmas(pragmas: str | None) -> Iterator[None]:
    token = _pragmas.set(pragmas)
    try:
        yield
    finally:
        _pragmas.reset(token)
