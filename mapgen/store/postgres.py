"""The response store in PostgreSQL: one database for every node, process and run of a cluster.

Point mapgen at it with ``MAPGEN_STORE=postgresql://user:password@host:5432/database`` (or
``store="postgresql://..."`` on the map functions); the user needs to create tables in that database's
default schema once (``mapgen_responses``, ``mapgen_claims``, ``mapgen_holders``,
``mapgen_batch_jobs``), or an administrator
creates them beforehand with the statements in :data:`SCHEMA`. Any libpq URL works (``?sslmode=require``,
``?options=-csearch_path%3Dmapgen`` to keep the tables in a schema of their own).

The same guarantees as the SQLite store: each answer is committed as it arrives (the writer thread sends
every answer queued since its last transaction in one statement: one round trip per batch, not per
answer), failed answers are never stored, the keys are the same.

**Claims across machines.** A process is a *holder*: a row with its host, pid, process start time and a
heartbeat (``seen``, the database's clock, so hosts' clocks need not agree) that its writer thread
refreshes every :data:`HEARTBEAT` seconds while the process lives. A claim names its owner (one map call)
and its holder. A claim is live while its holder is: on the same host (same hostname, boot and pid
namespace), while the holder's process runs (so a ``kill -9`` frees its claims at once, as with SQLite);
from another host, while its heartbeat is younger than :data:`LEASE` seconds. An expired claim is taken
over by the next run that wants its key (one conditional ``UPDATE``, so two runs never both take it). A
process that is alive but stalled longer than the lease (stopped, or cut off from the database) may see
its keys sent again by another run: at most what it had in flight.

Each process opens one connection (a forked ``num_proc`` worker opens its own); the connection is
reopened after the server restarts. A restart, a failover or a network cut while a run goes on is an
outage, ridden out (:mod:`mapgen.store.base`): the answers stay queued and are written once the server
is back, within :data:`~mapgen.store.base.OUTAGE_WINDOW`. Errors are :class:`~mapgen.errors.StoreError`
naming the URL with its password masked.

Example:
    >>> from mapgen.store import mask_url
    >>> mask_url("postgresql://mapgen:s3cret@127.0.0.1:5432/answers")
    'postgresql://mapgen:***@127.0.0.1:5432/answers'
"""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from mapgen.core.request import Completion
from mapgen.errors import StoreError
from mapgen.runtime.processes import is_running, process_start
from mapgen.store.base import BatchJob, DamagedAnswer, ResponseStore, decode, mask_url

LEASE = 30.0
"""Seconds a holder's heartbeat keeps its claims live for processes on other hosts."""
HEARTBEAT = 5.0
"""Seconds between a holder's heartbeats."""
_CHUNK = 10_000  # keys per statement: one array parameter each
# The server going away: admin shutdown (a restart, pg_ctl stop -m fast), crash shutdown, still starting up.
_GOING_AWAY = frozenset({"57P01", "57P02", "57P03"})
_T = TypeVar("_T")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mapgen_responses (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mapgen_holders"
    " (id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL, started bigint,"
    " seen timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE IF NOT EXISTS mapgen_claims"
    " (key text PRIMARY KEY, owner text NOT NULL, holder text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mapgen_batch_jobs"
    " (key text PRIMARY KEY, job_id text NOT NULL, custom_id text NOT NULL)",
)
# Serializes the set-up of a new database by several workers at once (CREATE IF NOT EXISTS races).
_SETUP_LOCK = 0x6D617067656E  # "mapgen"

_PUT = (
    "WITH stored AS (INSERT INTO mapgen_responses (key, value)"
    " SELECT * FROM unnest(%s::text[], %s::text[])"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING key)"
    " DELETE FROM mapgen_claims WHERE key IN (SELECT key FROM stored)"
)
_STATES = (
    "SELECT w.key, r.value, c.owner, h.host, h.pid, h.started,"
    " coalesce(h.seen > clock_timestamp() - make_interval(secs => %s), false)"
    " FROM unnest(%s::text[]) AS w(key)"
    " LEFT JOIN mapgen_responses r ON r.key = w.key"
    " LEFT JOIN mapgen_claims c ON c.key = w.key"
    " LEFT JOIN mapgen_holders h ON h.id = c.holder"
)


def _value(cursor: psycopg.Cursor) -> Any:
    """The one value of a query that returns one row (an aggregate's)."""
    row = cursor.fetchone()
    assert row is not None  # an aggregate returns a row, even over no rows
    return row[0]


@functools.lru_cache(maxsize=1)
def this_host() -> str:
    """Where a pid means this machine's process: hostname, boot, and pid namespace."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(path).read_text().strip() if "boot" in path else os.readlink(path))
        except OSError:
            parts.append("?")
    return "/".join(parts)


class PostgresStore(ResponseStore):
    """The response store in a PostgreSQL database (see the module docs)."""

    _errors = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = mask_url(url)
        password = conninfo_to_dict(url).get("password")
        self._password = str(password) if password else None
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._holder: str | None = None
        self._idle_interval = None

    def _connect(self) -> psycopg.Connection:
        params: dict[str, Any] = {"connect_timeout": 10, "application_name": "mapgen"}
        params.update(conninfo_to_dict(self.url))
        connection = psycopg.connect(autocommit=True, **params)
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                for statement in SCHEMA:
                    connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        return connection

    def _is_damaged(self, error: BaseException) -> bool:
        return isinstance(error, DamagedAnswer)

    def _is_disconnected(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.OperationalError) or bool(
            self._connection is not None and self._connection.broken
        )

    def _is_transient(self, error: BaseException) -> bool:
        """A connection that failed or broke (no answer from the server: ``sqlstate`` none, or class 08), or a
        server shutting down or starting up: not an error the server answered a statement with."""
        if not isinstance(error, psycopg.OperationalError):
            return False
        state = error.sqlstate
        return state is None or state.startswith("08") or state in _GOING_AWAY

    def _explain(self, error: BaseException) -> str:
        cause = f"{type(error).__name__}: {error}".strip()
        if self._password:
            cause = cause.replace(self._password, "***")
        if self._is_damaged(error):
            return (
                f"The response store {self.where} is damaged ({cause}). Run `mapgen cache clear` to empty "
                "it, or pass cache=False to run without it."
            )
        return (
            f"The response store {self.where} cannot be used ({cause}). Check that the server is up and "
            "that $MAPGEN_STORE (or store=) names it, or pass cache=False to run without the store."
        )

    def _transact(self, work: Callable[[psycopg.Connection], _T]) -> _T:
        """``work`` on this process's connection; retried on a new connection after a dropped one, and
        after a deadlock between two transactions (up to 3 tries)."""
        for attempt in range(3):
            try:
                with self._using() as connection:
                    return work(connection)
            except StoreError as error:
                cause = error.__cause__
                retry = isinstance(cause, (psycopg.OperationalError, psycopg.errors.DeadlockDetected))
                if not retry or attempt == 2:
                    raise
                time.sleep(0.1 * 4**attempt)
        raise AssertionError("unreachable")

    def _write(self, puts: dict[str, str], releases: Sequence[tuple[str, list[str]]]) -> None:
        def write(connection: psycopg.Connection) -> None:
            if not releases:  # the common case: one statement, committed on its own
                connection.execute(_PUT, (list(puts), list(puts.values())))
                return
            # One round trip: the statements go out together (pipeline mode) in one transaction.
            with connection.pipeline(), connection.transaction():
                if puts:
                    connection.execute(_PUT, (list(puts), list(puts.values())))
                for owner, keys in releases:
                    connection.execute(
                        "DELETE FROM mapgen_claims WHERE owner = %s AND key = ANY(%s::text[])", (owner, keys)
                    )

        self._transact(write)

    def _get_many(self, keys: list[str]) -> dict[str, Completion]:
        def read(connection: psycopg.Connection) -> dict[str, Completion]:
            found: dict[str, Completion] = {}
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows = connection.execute(
                    "SELECT key, value FROM mapgen_responses WHERE key = ANY(%s::text[])", (chunk,)
                )
                for key, value in rows:
                    completion = decode(value)
                    if completion is not None:
                        found[key] = completion
            return found

        return self._transact(read)

    def _live(self, host: str | None, pid: int | None, started: int | None, fresh: bool) -> bool:
        """Whether a claim's holder lives: by its process on this host, by its heartbeat elsewhere."""
        if host is None or pid is None:
            return False  # no holder row: it was cleaned up long after its last heartbeat
        if host == this_host():
            return is_running(pid, started)
        return fresh

    def _register(self, connection: psycopg.Connection) -> str:
        """This process as a holder (once), with its heartbeat started; old holders are cleaned up."""
        if self._holder is None:
            holder = uuid.uuid4().hex
            pid = os.getpid()
            with connection.transaction():
                connection.execute(
                    "DELETE FROM mapgen_holders WHERE seen < clock_timestamp() - interval '1 day'"
                )
                connection.execute(
                    "INSERT INTO mapgen_holders (id, host, pid, started) VALUES (%s, %s, %s, %s)",
                    (holder, this_host(), pid, process_start(pid)),
                )
            self._holder = holder
            self._idle_interval = HEARTBEAT
            self._next_tick = time.monotonic() + HEARTBEAT
            self._start_writer()
        return self._holder

    def _tick(self) -> None:
        if self._holder is not None:
            self._transact(
                lambda connection: connection.execute(
                    "UPDATE mapgen_holders SET seen = clock_timestamp() WHERE id = %s", (self._holder,)
                )
            )

    def _claim(self, keys: list[str], owner: str) -> list[str]:
        def claim(connection: psycopg.Connection) -> set[str]:
            holder = self._register(connection)
            alive = functools.lru_cache(maxsize=None)(self._live)
            mine: set[str] = set()
            new: list[str] = []
            dead: dict[str, str] = {}  # key -> the dead owner it is taken from
            with connection.transaction():
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    for key, value, holder_owner, host, pid, started, fresh in connection.execute(
                        _STATES, (LEASE, chunk)
                    ).fetchall():
                        if value is not None and decode(value) is not None:
                            continue
                        if holder_owner is None:
                            new.append(key)
                        elif holder_owner == owner:
                            mine.add(key)
                        elif not alive(host, pid, started, fresh):
                            dead[key] = holder_owner
                # In key order, so that two runs claiming overlapping keys lock them in the same order.
                # Conditional: a key claimed by another run since the read above is not ours.
                for (key,) in connection.execute(
                    "INSERT INTO mapgen_claims (key, owner, holder) SELECT w.key, %s, %s"
                    " FROM unnest(%s::text[]) AS w(key) ORDER BY w.key"
                    " ON CONFLICT (key) DO NOTHING RETURNING key",
                    (owner, holder, new),
                ).fetchall():
                    mine.add(key)
                if dead:
                    taken = sorted(dead)
                    for (key,) in connection.execute(
                        "UPDATE mapgen_claims c SET owner = %s, holder = %s"
                        " FROM unnest(%s::text[], %s::text[]) AS d(key, owner)"
                        " WHERE c.key = d.key AND c.owner = d.owner RETURNING c.key",
                        (owner, holder, taken, [dead[key] for key in taken]),
                    ).fetchall():
                        mine.add(key)
            return mine

        mine = self._transact(claim)
        return [key for key in keys if key in mine]

    def wait_for(self, keys: Iterable[str], *, poll: float = 0.05) -> dict[str, Completion]:
        """See :meth:`ResponseStore.wait_for`; a claim is live as the module docs say. Each poll is one
        query per 10,000 pending keys."""
        self.flush()
        answered: dict[str, Completion] = {}
        pending = list(dict.fromkeys(keys))
        while pending:

            def states(connection: psycopg.Connection, pending: list[str] = pending) -> list[tuple]:
                rows = []
                for start in range(0, len(pending), _CHUNK):
                    rows += connection.execute(_STATES, (LEASE, pending[start : start + _CHUNK])).fetchall()
                for row in rows:
                    if row[1] is not None:
                        completion = decode(row[1])
                        if completion is not None:
                            answered[row[0]] = completion
                return rows

            # Past an outage's window, no rows: the store is given up and the keys are the caller's.
            rows: list[tuple] = self._ride_out(functools.partial(self._transact, states), otherwise=list)
            alive = functools.lru_cache(maxsize=None)(self._live)
            pending = [
                key
                for key, _, holder_owner, host, pid, started, fresh in rows
                if key not in answered and holder_owner is not None and alive(host, pid, started, fresh)
            ]
            if pending:
                time.sleep(poll)
        return answered

    def record_batch_jobs(self, jobs: dict[str, BatchJob]) -> None:
        keys = list(jobs)

        def record(connection: psycopg.Connection) -> None:
            connection.execute(
                "INSERT INTO mapgen_batch_jobs (key, job_id, custom_id)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, custom_id = EXCLUDED.custom_id",
                (keys, [jobs[k].job_id for k in keys], [jobs[k].custom_id for k in keys]),
            )

        self._ride_out(functools.partial(self._transact, record))  # an outage is waited out, not raised

    def batch_jobs(self, keys: Iterable[str] | None = None) -> dict[str, BatchJob]:
        def read(connection: psycopg.Connection) -> list[tuple[str, str, str]]:
            if keys is None:
                return connection.execute("SELECT key, job_id, custom_id FROM mapgen_batch_jobs").fetchall()
            wanted = list(dict.fromkeys(keys))
            rows = []
            for start in range(0, len(wanted), _CHUNK):
                rows += connection.execute(
                    "SELECT key, job_id, custom_id FROM mapgen_batch_jobs WHERE key = ANY(%s::text[])",
                    (wanted[start : start + _CHUNK],),
                ).fetchall()
            return rows

        rows = self._ride_out(functools.partial(self._transact, read))
        return {key: BatchJob(job_id, custom_id) for key, job_id, custom_id in rows}

    def forget_batch_jobs(self, keys: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(keys))

        def forget(connection: psycopg.Connection) -> None:
            connection.execute("DELETE FROM mapgen_batch_jobs WHERE key = ANY(%s::text[])", (wanted,))

        self._ride_out(functools.partial(self._transact, forget))

    def __len__(self) -> int:
        self.flush()
        # Answers only: provenance records (mapgen.mapping.provenance) share the table under their own prefix.
        query = "SELECT count(*) FROM mapgen_responses WHERE key NOT LIKE 'provenance:%'"
        return self._transact(lambda c: _value(c.execute(query)))

    def size_bytes(self) -> int:
        """Bytes the answers' table takes in the database, its index and TOAST data included."""
        self.flush()
        return self._transact(
            lambda c: _value(c.execute("SELECT pg_total_relation_size('mapgen_responses')"))
        )

    def _delete(self, model: str | None, stored_before: int | None) -> int:
        # PostgreSQL 15 has no test for valid JSON: only values as mapgen writes them ("{...}") are read.
        def delete(connection: psycopg.Connection) -> int:
            fields = "CASE WHEN value LIKE '{%%}' THEN value::jsonb END"
            cursor = connection.execute(
                f"DELETE FROM mapgen_responses WHERE key NOT LIKE 'provenance:%%'"
                f" AND (%(model)s::text IS NULL OR ({fields}) ->> 'stored_by' = %(model)s)"
                f" AND (%(before)s::bigint IS NULL"
                f" OR coalesce((({fields}) ->> 'stored_at')::bigint, 0) < %(before)s)",
                {"model": model, "before": stored_before},
            )
            return cursor.rowcount

        return self._transact(delete)

    def clear(self) -> None:
        """Delete every stored answer (the claims of runs in progress stay)."""
        self.flush()
        self._transact(lambda c: c.execute("TRUNCATE mapgen_responses"))
        self._writes_resumed()
