"""The embedded response store: one SQLite file in WAL mode, shared by the processes of one machine.

Why SQLite in WAL mode: a committed row survives ``kill -9`` (the journal is replayed on next open),
several processes (``num_proc`` workers, notebooks, Ray workers on one machine) can read while one
writes, and a batch of 1,000 keys is one indexed query. Answers are written in batches by the store's
writer thread (:mod:`mapgen.store.base`), one transaction per batch.

A claim records its owner's process id and start time, so it is void as soon as that process dies, even
by ``kill -9``; storing the answer releases it (a trigger, in the same transaction).

When the file is damaged, reading it raises :class:`~mapgen.errors.StoreError` naming the file and the
way out (``mapgen cache clear``, which works on a damaged file, or ``cache=False``) before anything is
sent. A file locked by another process past the busy timeout (``database is locked``) is an outage,
ridden out (:mod:`mapgen.store.base`): the answers stay queued until the lock is gone. When storing fails
otherwise during a run (a full disk), the store warns once (:class:`~mapgen.store.StoreWarning`) and the
run goes on without storing: an answer already paid for always reaches the output.

Example:
    >>> import tempfile
    >>> from mapgen.core.request import Completion
    >>> store = SQLiteStore(tempfile.mkdtemp() + "/responses.sqlite3")
    >>> store.claim(["k1", "k2"], owner="run-a")
    ['k1', 'k2']
    >>> store.claim(["k1", "k3"], owner="run-b")  # k1 is being sent by a live owner
    ['k3']
    >>> store.put("k1", Completion(text="Paris"))  # storing the answer releases its claim
    >>> store.release(["k2"], owner="run-a")  # k2 failed: released unanswered
    >>> {key: answer.text for key, answer in store.wait_for(["k1", "k2"]).items()}
    {'k1': 'Paris'}
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mapgen.core.request import Completion
from mapgen.errors import StoreError
from mapgen.runtime.processes import is_running, process_start
from mapgen.store.base import BatchJob, DamagedAnswer, ResponseStore, decode

# SQLite caps the number of parameters in one statement; stay well below it.
_LOOKUP_CHUNK = 900
# Primary result codes of a file that is not a database, or is one no longer (sqlite3.SQLITE_CORRUPT and
# sqlite3.SQLITE_NOTADB, named only from Python 3.11).
_DAMAGED_CODES = (11, 26)
# Primary result codes of a database another connection holds: SQLITE_BUSY, SQLITE_LOCKED.
_BUSY_CODES = (5, 6)


class SQLiteStore(ResponseStore):
    """The response store in one SQLite file (see the module docs)."""

    _errors = (sqlite3.Error,)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            # NORMAL in WAL mode: a process crash loses nothing committed; only a power cut may lose the
            # last commits, which would be re-sent.
            connection.execute("PRAGMA synchronous=NORMAL")
            _set_up(connection)
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _is_damaged(self, error: BaseException) -> bool:
        """Whether SQLite found the file not a database, or malformed (not: locked, full, unreadable)."""
        if isinstance(error, DamagedAnswer):
            return True
        code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
        if code is not None:
            return code & 0xFF in _DAMAGED_CODES
        return isinstance(error, sqlite3.DatabaseError) and (
            "not a database" in str(error) or "malformed" in str(error)
        )

    def _is_transient(self, error: BaseException) -> bool:
        """Whether another connection held the database past the busy timeout: it passes."""
        if not isinstance(error, sqlite3.OperationalError):
            return False
        code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
        if code is not None:
            return code & 0xFF in _BUSY_CODES
        return "locked" in str(error) or "busy" in str(error)

    def _explain(self, error: BaseException) -> str:
        cause = f"{type(error).__name__}: {error}"
        if self._is_damaged(error):
            return (
                f"The response store {self.path} is damaged ({cause}). Run `mapgen cache clear` "
                "(or delete that file) to start a new store, or pass cache=False to run without it."
            )
        if "locked" in str(error):
            return (
                f"The response store {self.path} stayed locked by another process ({cause}). Wait for "
                "that process, or pass cache=False to run without the store."
            )
        return (
            f"The response store {self.path} cannot be used ({cause}). Check the disk and the file's "
            "permissions, set $MAPGEN_CACHE_DIR to keep the store elsewhere, or pass cache=False."
        )

    def _write(self, puts: dict[str, str], releases: Sequence[tuple[str, list[str]]]) -> None:
        with self._using() as connection:
            connection.execute("BEGIN")
            try:
                # A trigger deletes each stored key's claim in the same transaction.
                connection.executemany(
                    "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", puts.items()
                )
                for owner, keys in releases:
                    for chunk in _chunks(keys):
                        marks = ",".join("?" * len(chunk))
                        connection.execute(
                            f"DELETE FROM claims WHERE owner = ? AND key IN ({marks})", [owner, *chunk]
                        )
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise

    def _get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._using() as connection:
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                for key, value in connection.execute(query, chunk):
                    completion = decode(value)
                    if completion is not None:
                        found[key] = completion
        return found

    def _claim(self, keys: list[str], owner: str) -> list[str]:
        pid = os.getpid()
        started = process_start(pid)
        alive = functools.lru_cache(maxsize=None)(is_running)
        mine: set[str] = set()
        with self._using() as connection:
            # IMMEDIATE: take the write lock before reading, so no other process claims in between.
            connection.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(keys):
                    for key, value, holder, holder_pid, holder_started in _states(connection, chunk):
                        answered = value is not None and decode(value) is not None
                        if not answered and (
                            holder in (None, owner) or not alive(holder_pid, holder_started)
                        ):
                            mine.add(key)
                connection.executemany(
                    "INSERT OR REPLACE INTO claims (key, owner, pid, started) VALUES (?, ?, ?, ?)",
                    [(key, owner, pid, started) for key in mine],
                )
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        return [key for key in keys if key in mine]

    def wait_for(self, keys: Iterable[str], *, poll: float = 0.05) -> dict[str, Completion]:
        """See :meth:`ResponseStore.wait_for`; a claim is live while its process runs. Each poll is one
        query per 900 pending keys."""
        self.flush()
        answered: dict[str, Completion] = {}

        def poll_once(pending: list[str]) -> list[tuple]:
            with self._using() as connection:
                rows = [row for chunk in _chunks(pending) for row in _states(connection, chunk)]
                stored = {row[0]: decode(row[1]) for row in rows if row[1] is not None}
            answered.update((key, completion) for key, completion in stored.items() if completion)
            return rows

        pending = list(dict.fromkeys(keys))
        while pending:
            # Past an outage's window, no rows: the store is given up and the keys are the caller's.
            rows: list[tuple] = self._ride_out(functools.partial(poll_once, pending), otherwise=list)
            alive = functools.lru_cache(maxsize=None)(is_running)
            pending = [
                key
                for key, _, holder, pid, started in rows
                if key not in answered and holder is not None and alive(pid, started)
            ]
            if pending:
                time.sleep(poll)
        return answered

    def record_batch_jobs(self, jobs: dict[str, BatchJob]) -> None:
        def record() -> None:
            with self._using() as connection:
                connection.execute(
                    "BEGIN IMMEDIATE"
                )  # one transaction: a job is recorded whole or not at all
                try:
                    connection.executemany(
                        "INSERT OR REPLACE INTO batch_jobs (key, job_id, custom_id) VALUES (?, ?, ?)",
                        [(key, job.job_id, job.custom_id) for key, job in jobs.items()],
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise

        self._ride_out(record)  # a lock held long is waited out, not raised

    def batch_jobs(self, keys: Iterable[str] | None = None) -> dict[str, BatchJob]:
        wanted = None if keys is None else list(dict.fromkeys(keys))

        def read() -> list[tuple[str, str, str]]:
            with self._using() as connection:
                if wanted is None:
                    return list(connection.execute("SELECT key, job_id, custom_id FROM batch_jobs"))
                rows = []
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, job_id, custom_id FROM batch_jobs WHERE key IN ({marks})"
                    rows += connection.execute(query, chunk).fetchall()
                return rows

        return {key: BatchJob(job_id, custom_id) for key, job_id, custom_id in self._ride_out(read)}

    def forget_batch_jobs(self, keys: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(keys))

        def forget() -> None:
            with self._using() as connection:
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    connection.execute(f"DELETE FROM batch_jobs WHERE key IN ({marks})", chunk)

        self._ride_out(forget)

    def __len__(self) -> int:
        self.flush()
        with self._using() as connection:
            # Answers only: provenance records (mapgen.mapping.provenance) share the table under their own
            # prefix.
            query = "SELECT COUNT(*) FROM responses WHERE key NOT LIKE 'provenance:%'"
            return connection.execute(query).fetchone()[0]

    def _files(self) -> list[Path]:
        return [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]

    def size_bytes(self) -> int:
        """Bytes on disk, the write-ahead log included (works on a damaged file too)."""
        return sum(f.stat().st_size for f in self._files() if f.exists())

    def _delete(self, model: str | None, stored_before: int | None) -> int:
        # A value that is not JSON (a damaged answer) matches no model and has no time: it counts as old.
        with self._using() as connection:
            return connection.execute(
                "DELETE FROM responses WHERE key NOT LIKE 'provenance:%'"
                " AND (?1 IS NULL OR (json_valid(value) AND json_extract(value, '$.stored_by') = ?1))"
                " AND (?2 IS NULL OR coalesce(CASE WHEN json_valid(value)"
                " THEN json_extract(value, '$.stored_at') END, 0) < ?2)",
                (model, stored_before),
            ).rowcount

    def clear(self) -> None:
        """Delete every stored answer. A damaged file is removed, with its journal, and a new store begun.

        Raises:
            StoreError: the store cannot be cleared for another reason (a lock, the disk).
        """
        self.flush()
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                self._connection.execute("DELETE FROM responses")
                self._connection.execute("VACUUM")
            except (sqlite3.Error, OSError) as error:
                if not self._is_damaged(error):
                    raise StoreError(self._explain(error)) from error
                # Nothing in a damaged file can be read back: start afresh.
                self._forget_connection()
                for file in self._files():
                    file.unlink(missing_ok=True)
                try:
                    self._connection = self._connect()
                except (sqlite3.Error, OSError) as again:
                    raise StoreError(self._explain(again)) from again
            self._writes_resumed()


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        yield keys[start : start + _LOOKUP_CHUNK]


def _states(connection: sqlite3.Connection, keys: list[str]) -> sqlite3.Cursor:
    """For each key: its stored value, and its claim's owner, pid and start time (``None`` where none)."""
    wanted = ",".join(["(?)"] * len(keys))
    return connection.execute(
        f"WITH wanted(key) AS (VALUES {wanted}) "
        "SELECT wanted.key, responses.value, claims.owner, claims.pid, claims.started FROM wanted "
        "LEFT JOIN responses ON responses.key = wanted.key LEFT JOIN claims ON claims.key = wanted.key",
        keys,
    )


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode and the tables. Switching to WAL takes a lock that SQLite's busy timeout does not wait for
    when several workers open a new store at the same moment, so that step is retried."""
    for attempt in range(50):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # A rowid table: answers are hundreds of bytes, and inserting rows that large at random keys
            # into a WITHOUT ROWID table costs 4 times the CPU (stores made before keep theirs: same SQL).
            connection.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS claims"
                " (key TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL, started INTEGER)"
                " WITHOUT ROWID"
            )
            # Requests submitted to a provider's batch API and not yet collected (mapgen.mapping.batch_mode).
            connection.execute(
                "CREATE TABLE IF NOT EXISTS batch_jobs"
                " (key TEXT PRIMARY KEY, job_id TEXT NOT NULL, custom_id TEXT NOT NULL) WITHOUT ROWID"
            )
            # An answered key needs no claim: storing it releases the claim in the same statement.
            connection.execute(
                "CREATE TRIGGER IF NOT EXISTS release_answered AFTER INSERT ON responses"
                " BEGIN DELETE FROM claims WHERE key = NEW.key; END"
            )
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
