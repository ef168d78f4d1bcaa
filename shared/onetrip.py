"""One round trip per save on PostgreSQL.

eventsourcing's PostgreSQL recorder sends a save as a pipeline: ``BEGIN``, ``SET LOCAL
lock_timeout``, ``LOCK TABLE``, ``NOTIFY``, the ``INSERT``, a sync, then ``COMMIT``, each
statement composed, converted and flushed on its own (libpq's trace of one save counted seven
waits for the server), the table lock held until the commit came back: a save of one opinion
cost about 930 µs, where its statements alone, sent by hand, cost about 530 µs.

Here a save is one call of a function the store defines (``consult_append_events``), made
outside any transaction, so the server runs it as one: a person's keys written or checked
(``shared.vault``), the table locked as eventsourcing locks it (so that notification ids
are committed in the order they are issued, and no reader passes over a gap that is filled
later), the events inserted, committed. One statement, prepared once per connection; one
round trip; the table lock held only while the server works.

No ``NOTIFY``: nothing here listens (followers are woken in process, and poll across
processes), and ``NOTIFY`` takes a lock at commit that every notifying database writer waits
for. eventsourcing's own database function (``POSTGRES_ENABLE_DB_FUNCTIONS``) skips the lock
and the keys, so it stays off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from shared.stores import one_maker_at_a_time

#: The SQLSTATE the function raises when a person's key is not the one sealed with.
KEY_RACED = "CK001"

_FUNCTION = "consult_append_events"
#: The same for the usual save, one event and at most one key, given as plain values: psycopg
#: takes about 40 µs to encode the arrays of one save, against 5 µs for its values.
_ONE = "consult_append_event"


class OneTripPostgresRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL application recorder, each save one function call."""

    #: The table of person keys this store's saves write and check (``shared.vault``), if any.
    keys_table: str | None = None

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        if datastore.enable_db_functions:
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS bypasses the table lock and the person keys")
        schema = Identifier(datastore.schema)
        self.sql_create_statements += [self._append_function(schema), self._append_one_function(schema)]
        id_type = SQL(datastore.originator_id_type)
        self.sql_append = SQL(
            "SELECT * FROM {schema}.{function}(%b::text[], %b::text[], %b::boolean[], %b::{id_type}[], "
            "%b::bigint[], %b::text[], %b::bytea[], %b::text)").format(
                schema=schema, function=Identifier(_FUNCTION), id_type=id_type).as_string(None).encode()
        self.sql_append_one = SQL(
            "SELECT * FROM {schema}.{function}(%b::text, %b::text, %b::boolean, %b::{id_type}, "
            "%b::bigint, %b::text, %b::bytea, %b::text)").format(
                schema=schema, function=Identifier(_ONE), id_type=id_type).as_string(None).encode()
        self._lock_timeout = f"{datastore.lock_timeout}s"  # as eventsourcing sets it, per transaction

    def create_table(self) -> None:
        with one_maker_at_a_time(self.datastore):  # replicas starting together
            super().create_table()

    def _append_function(self, schema: Identifier) -> SQL:
        return self._function(schema, _FUNCTION, """
    key_refs text[], key_wrapped text[], key_new boolean[],
    ids {id_type}[], versions bigint[], topics text[], states bytea[], lock_timeout text)""", """
    FOR i IN 1 .. coalesce(array_length(key_refs, 1), 0) LOOP""" + self._key_check(
            "key_refs[i]", "key_wrapped[i]", "key_new[i]") + """
    END LOOP;""", """
    RETURN QUERY INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id;""")

    def _append_one_function(self, schema: Identifier) -> SQL:
        return self._function(schema, _ONE, """
    key_ref text, key_wrapped text, key_new boolean,
    id {id_type}, version bigint, topic text, state bytea, lock_timeout text)""", """
    IF key_ref IS NOT NULL THEN""" + self._key_check("key_ref", "key_wrapped", "key_new") + """
    END IF;""", """
    RETURN QUERY INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        VALUES (id, version, topic, state) RETURNING notification_id;""")

    def _key_check(self, ref: str, wrapped: str, new: str) -> str:
        """A person's key written (``new``) or checked, or the save refused (``KEY_RACED``)."""
        return f"""
        IF {new} THEN
            INSERT INTO {{keys}} (ref, wrapped) VALUES ({ref}, {wrapped}) ON CONFLICT (ref) DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = {{raced}}, MESSAGE = {ref};
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM {{keys}} WHERE ref = {ref} AND wrapped = {wrapped}) THEN
            RAISE EXCEPTION USING ERRCODE = {{raced}}, MESSAGE = {ref};
        END IF;"""

    def _function(self, schema: Identifier, name: str, arguments: str, keys: str, insert: str) -> SQL:
        """The store's function ``name``: keys (on a store that has them), lock, insert."""
        return SQL("CREATE OR REPLACE FUNCTION {schema}.{function}(" + arguments + """
RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
BEGIN""" + (keys if self.keys_table else "") + """
    PERFORM set_config('lock_timeout', lock_timeout, true);
    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;""" + insert + """
END
$body$""").format(schema=schema, function=Identifier(name), table=Identifier(self.events_table_name),
                  id_type=SQL(self.datastore.originator_id_type), raced=Literal(KEY_RACED),
                  keys=SQL(self.keys_table or ""))

    def key_raced(self, ref: str) -> Exception:
        """The error a save raises when ``ref``'s key is not the one its data was sealed with."""
        return LookupError(f"a key of {ref} checked in a store that keeps none")

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], *,
                      person_keys: Sequence[tuple[str, str, bool]] = (), **kwargs: Any) -> Sequence[int] | None:
        if not stored_events and not person_keys:
            return []
        lock_timeout = self._lock_timeout
        if len(stored_events) == 1 and len(person_keys) <= 1:
            [e] = stored_events
            ref, wrapped, new = person_keys[0] if person_keys else (None, None, None)
            sql, params = self.sql_append_one, (ref, wrapped, new, e.originator_id, e.originator_version,
                                                e.topic, e.state, lock_timeout)
        else:
            sql, params = self.sql_append, (
                [ref for ref, _, _ in person_keys], [wrapped for _, wrapped, _ in person_keys],
                [new for _, _, new in person_keys], [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events], [e.topic for e in stored_events],
                [e.state for e in stored_events], lock_timeout)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            try:
                cursor.execute(sql, params, prepare=True)
            except psycopg.Error as error:
                if error.sqlstate == KEY_RACED:  # raised inside the statement: nothing was stored
                    raise self.key_raced(error.diag.message_primary or "") from None
                raise
            return [row[0] for row in cursor.fetchall()]
