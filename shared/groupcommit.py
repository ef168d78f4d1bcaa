"""Group commit for SQLite event stores: saves that arrive together are committed together.

SQLite has one writer. Under concurrent commands every save waited for the writer, and
the writer waited for the disk once per save: at 32 clients most of a request's time was
spent queued behind other requests' commits. Here the first save to reach the writer
commits every save queued behind it in the same transaction (one wait for the disk),
each in a savepoint of its own, so a save that fails (a version taken meanwhile, a
person's key raced) is undone alone and raises its own error; the others are committed.
A save that arrives alone is committed alone.

The transaction is written on a sqlite3 connection of the saves' own (``connection``), not
through eventsourcing's pool, cursor and transaction wrappers, which cost a fifth of a lone
save's time (about 30 µs against the 150-200 µs of its statements and commit). It begins
``IMMEDIATE``: the write lock is taken, or waited for, before the first statement, so a save
whose first statement reads (a returning person's key checked) is never refused halfway for
a write that another connection made meanwhile, as a deferred transaction is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ConnectionPoolClosedError, DatabaseError, DataError, IntegrityError, InterfaceError, InternalError,
    OperationalError, PersistenceError, StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnection
from eventsourcing.utils import retry

from shared.stores import adapt_connections, one_statement

#: Saves committed in one transaction at most: a bound on how long the first one waits.
GROUP_LIMIT = 64


class _Save:
    __slots__ = ("done", "error", "events", "ids", "kwargs")

    def __init__(self, events: Sequence[StoredEvent], kwargs: dict[str, Any]):
        self.events, self.kwargs = events, kwargs
        self.ids: Sequence[int] | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupedSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, committing concurrent saves together."""

    def __init__(self, datastore: Any, *args: Any, **kwargs: Any):
        adapt_connections(datastore)  # every connection the pool makes, the saves' own included
        super().__init__(datastore, *args, **kwargs)
        self._queue: list[_Save] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self._writer: SQLiteConnection | None = None
        close = datastore.close

        def close_with_writer() -> None:  # the store closes its pool, and the saves' connection
            with self._leader:
                if self._writer is not None:
                    self._writer.close()
            close()

        datastore.close = close_with_writer

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        save = _Save(stored_events, kwargs)
        with self._queue_lock:
            self._queue.append(save)
        with self._leader:  # whoever holds it commits what is queued, its own save or not
            if not save.done:
                with self._queue_lock:
                    group, self._queue = self._queue[:GROUP_LIMIT], self._queue[GROUP_LIMIT:]
                self._commit(group)
        if save.error is not None:
            raise save.error
        return save.ids

    def _commit(self, group: list[_Save]) -> None:
        try:
            with self._transaction() as cursor:
                if len(group) == 1:  # alone: its error is the transaction's
                    [save] = group
                    save.ids = self._insert_events(cursor, save.events, **save.kwargs)
                    return
                for save in group:
                    cursor.execute("SAVEPOINT save")
                    try:
                        save.ids = self._insert_events(cursor, save.events, **save.kwargs)
                    except sqlite3.IntegrityError as error:
                        cursor.execute("ROLLBACK TO save")
                        save.error = IntegrityError(error)
                        save.error.__cause__ = error
                    except Exception as error:  # noqa: BLE001 - this save's own refusal (KeyRaced)
                        cursor.execute("ROLLBACK TO save")
                        save.error = error
                    cursor.execute("RELEASE save")
        except BaseException as error:
            for save in group:  # the transaction itself failed: nothing of the group is stored
                if save.error is None:
                    save.ids, save.error = None, error
            if not isinstance(error, Exception):
                raise
        finally:
            for save in group:
                save.done = True

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as eventsourcing reads
    def select_events(self, originator_id: UUID | str, *, gt: int | None = None, lte: int | None = None,
                      desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        """An aggregate's events, as eventsourcing selects them, in a statement sent alone
        (``one_statement``): every command on an aggregate that exists, every scheduler's
        look at one, begins here. eventsourcing wraps the read in ``BEGIN`` and ``ROLLBACK``,
        and under load each of the two was one more wait for Python's lock."""
        statement = self.select_events_statement
        params: list[Any] = [originator_id.hex if isinstance(originator_id, UUID) else originator_id]
        for clause, bound in (("AND originator_version>? ", gt), ("AND originator_version<=? ", lte)):
            if bound is not None:
                statement += clause
                params.append(bound)
        statement += f"ORDER BY originator_version {'DESC' if desc else 'ASC'} "
        if limit is not None:
            statement += "LIMIT ? "
            params.append(limit)
        with one_statement(self.datastore) as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        return [StoredEvent(originator_id=self.convert_originator_id(r[0]), originator_version=r[1], topic=r[2],
                            state=r[3]) for r in rows]

    def connection(self) -> sqlite3.Connection:
        """The saves' own connection, made once, used by the leader alone.

        Taken from the pool for every save, as eventsourcing's writes are, the pool's locks and
        conditions cost 8-10 µs of a save's 120 µs of Python and SQLite. The store's other
        writes (a key destroyed, say) still go through the pool; SQLite orders the two: whichever
        begins second waits for the first to commit (``BEGIN IMMEDIATE``, the lock timeout).
        """
        if self.datastore.pool.closed:
            raise ConnectionPoolClosedError
        if self._writer is None:
            self._writer = self.datastore.pool._create_connection()  # noqa: SLF001 - as the pool makes them
        return self._writer._sqlite_conn  # noqa: SLF001

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction on the saves' connection, sqlite3's errors raised as
        eventsourcing's (a version taken meanwhile is its ``IntegrityError``)."""
        db = self.connection()
        cursor = db.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
                cursor.execute("COMMIT")  # prepared once; ``db.commit()`` prepares it every time
            except BaseException:
                db.rollback()  # a commit that failed leaves its transaction open otherwise
                raise
        except sqlite3.Error as error:
            raise _as_persistence_error(error) from error
        finally:
            cursor.close()


def _as_persistence_error(error: sqlite3.Error) -> PersistenceError:
    """sqlite3's error as eventsourcing raises it (its transactions map them the same way)."""
    for kind, ours in ((sqlite3.IntegrityError, IntegrityError), (sqlite3.OperationalError, OperationalError),
                       (sqlite3.InterfaceError, InterfaceError), (sqlite3.DataError, DataError),
                       (sqlite3.InternalError, InternalError), (sqlite3.DatabaseError, DatabaseError)):
        if isinstance(error, kind):
            return ours(error)
    return PersistenceError(error)


#: ``ServiceApplication.recorders`` of every service: one round trip per save on PostgreSQL.
RECORDERS = {"sqlite": f"{__name__}:GroupedSQLiteRecorder", "postgres": "shared.onetrip:OneTripPostgresRecorder"}
