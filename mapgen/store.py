"""The response store: every paid answer, kept on disk as it arrives, so nothing is paid for twice.

``datasets`` writes a map's cache only when a whole shard finishes (and never for in-memory datasets),
so a crash at 99% would lose every answer. Here each successful answer is committed to a SQLite database
in WAL mode the moment it arrives, keyed by everything that determines it (the backend's fingerprint:
type, model, sampling parameters, prompt format; the prompt's messages; the generation index; the answer
schema). A re-run looks answers up before sending anything.

Why SQLite in WAL mode: a committed row survives ``kill -9`` (the journal is replayed on next open),
several processes (``num_proc`` workers, notebooks, Ray workers on one machine) can read while one
writes, and a batch of 1,000 keys is one indexed query. Failed answers are never stored: a re-run
retries them.

Two runs at once on one store (two notebooks, two scripts) must not pay twice either: a run *claims*
the keys it is about to send (:meth:`ResponseStore.claim`) and awaits those another live process has
claimed (:meth:`ResponseStore.wait_for`) instead of sending them again. A claim records its owner's
process id and start time, so it is void as soon as that process dies, even by ``kill -9``; storing the
answer releases it.

When the file is damaged, reading it raises :class:`~mapgen.errors.StoreError` naming the file and the
way out (``mapgen cache clear``, which works on a damaged file, or ``cache=False``) before anything is
sent. When storing fails during a run, the store warns once (:class:`StoreWarning`) and the run goes on
without storing: an answer already paid for always reaches the output.

The store lives in ``$MAPGEN_CACHE_DIR`` (default ``~/.cache/mapgen``), file ``responses.sqlite3``.

Example:
    >>> import tempfile
    >>> from mapgen.llms.base import Completion
    >>> store = ResponseStore(tempfile.mkdtemp() + "/responses.sqlite3")
    >>> store.put("k1", Completion(text="Paris", finish_reason="stop"))
    >>> store.get_many(["k1", "k2"])["k1"].text
    'Paris'
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mapgen.errors import StoreError
from mapgen.llms.base import Completion, Request
from mapgen.processes import is_running, process_start

STORE_FILE = "responses.sqlite3"
# SQLite caps the number of parameters in one statement; stay well below it.
_LOOKUP_CHUNK = 900
# Primary result codes of a file that is not a database, or is one no longer (sqlite3.SQLITE_CORRUPT and
# sqlite3.SQLITE_NOTADB, named only from Python 3.11).
_DAMAGED_CODES = (11, 26)


class StoreWarning(UserWarning):
    """The response store failed while answers were being stored: the run goes on without storing them."""


def cache_dir() -> Path:
    """``$MAPGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/mapgen``, else ``~/.cache/mapgen``."""
    if os.environ.get("MAPGEN_CACHE_DIR"):
        return Path(os.environ["MAPGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mapgen"


def request_key(llm_fingerprint: str, request: Request) -> str:
    """The store key of one request to one backend config (``llm_fingerprint`` is its JSON state)."""
    identity = [
        llm_fingerprint,
        *request.prompt.identity(),
        request.index,
        request.schema,
        request.top_logprobs,
    ]
    if request.attempt:  # a re-ask: its own answer (first asks keep the keys they always had)
        identity.append(["attempt", request.attempt])
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=repr).encode()).hexdigest()


class ResponseStore:
    """A key -> :class:`~mapgen.llms.base.Completion` table in one SQLite file, safe across threads
    and processes, with claims on the keys being sent so that concurrent runs send each one once.

    Example:
        >>> import tempfile
        >>> from mapgen.llms.base import Completion
        >>> store = ResponseStore(tempfile.mkdtemp() + "/responses.sqlite3")
        >>> store.claim(["k1", "k2"], owner="run-a")
        ['k1', 'k2']
        >>> store.claim(["k1", "k3"], owner="run-b")  # k1 is being sent by a live owner
        ['k3']
        >>> store.put("k1", Completion(text="Paris"))  # storing the answer releases its claim
        >>> store.release(["k2"], owner="run-a")  # k2 failed: released unanswered
        >>> {key: answer.text for key, answer in store.wait_for(["k1", "k2"]).items()}
        {'k1': 'Paris'}
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._write_error: StoreError | None = None  # the first failed write: storing stops after it

    def _connect(self) -> sqlite3.Connection:
        # One connection per process: a connection must not cross a fork.
        if self._connection is None or self._pid != os.getpid():
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
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _forget_connection(self) -> None:
        """Drop this process's connection, so that the next use opens the file anew."""
        if self._connection is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, under the lock; SQLite's errors come out as :class:`StoreError`."""
        with self._lock:
            try:
                yield self._connect()
            except (sqlite3.Error, OSError) as error:
                if _is_damaged(error):
                    self._forget_connection()
                raise StoreError(self._explain(error)) from error

    def _explain(self, error: BaseException) -> str:
        """What went wrong with the file, naming it, and the way out."""
        cause = f"{type(error).__name__}: {error}"
        if _is_damaged(error):
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

    def _stop_writing(self, error: StoreError) -> None:
        """Warn once that storing failed; the caller goes on without it."""
        if self._write_error is None:
            self._write_error = error
            warnings.warn(
                f"{error} Until it is cleared, this process stores no more answers: they still go into "
                "the output, and a re-run sends them again.",
                StoreWarning,
                stacklevel=3,
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The stored completions among ``keys``.

        Raises:
            StoreError: the store cannot be read (a damaged file, a lock held too long); says the way out.
        """
        found: dict[str, Completion] = {}
        with self._using() as connection:
            for chunk in _chunks(list(dict.fromkeys(keys))):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                for key, value in connection.execute(query, chunk):
                    completion = _completion(value)
                    if completion is not None:
                        found[key] = completion
        return found

    def put(self, key: str, completion: Completion) -> None:
        """Commit one successful completion now (failed ones are not stored, so they are retried), and
        release any claim on its key.

        Never raises: a store that cannot be written warns once (:class:`StoreWarning`) and stores
        nothing more in this process until :meth:`clear`, so a paid answer still reaches the output.
        """
        if completion.text is None or self._write_error is not None:
            return
        value = {
            k: v
            for k, v in dataclasses.asdict(completion).items()
            if k not in ("error", "error_kind", "from_store")
        }
        try:
            with self._using() as connection:
                # One statement: a trigger deletes the key's claim in the same transaction.
                connection.execute(
                    "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value))
                )
        except StoreError as error:
            self._stop_writing(error)

    def claim(self, keys: Sequence[str], owner: str) -> list[str]:
        """Claim for ``owner`` (a token the caller makes per call) the unanswered ``keys`` that no other
        live owner holds, in one transaction; return the keys ``owner`` holds now, in input order.

        The caller sends those, stores or :meth:`release` s each, and releases the rest in a ``finally``;
        the other unanswered keys are being sent elsewhere: :meth:`wait_for` them. A claim is live while
        the process that made it runs (the same pid, started at the same time), this process included.

        A store that cannot be written (a full disk) warns once, like :meth:`put`, and every key is
        the caller's: the run goes on without the store, as it would without claims.
        """
        keys = list(dict.fromkeys(keys))
        if self._write_error is not None:
            return keys
        try:
            return self._claim(keys, owner)
        except StoreError as error:
            self._stop_writing(error)
            return keys

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
                        answered = value is not None and _completion(value) is not None
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

    def release(self, keys: Iterable[str], owner: str) -> None:
        """Drop ``owner``'s claims on ``keys`` (answers that failed, or were never sent).

        Never raises: like :meth:`put`, a failure warns once; the claims then end with this process.
        """
        try:
            with self._using() as connection:
                for chunk in _chunks(list(dict.fromkeys(keys))):
                    marks = ",".join("?" * len(chunk))
                    connection.execute(
                        f"DELETE FROM claims WHERE owner = ? AND key IN ({marks})", [owner, *chunk]
                    )
        except StoreError as error:
            self._stop_writing(error)

    def wait_for(self, keys: Iterable[str], *, poll: float = 0.05) -> dict[str, Completion]:
        """Block until each of ``keys`` is answered in the store or no longer claimed by a live owner
        (released, or its process died); return the answered ones. The caller claims and sends the rest.

        Each poll is one query per 900 pending keys. Never wait for keys the caller itself holds.

        Raises:
            StoreError: the store cannot be read.
        """
        answered: dict[str, Completion] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            with self._using() as connection:
                rows = [row for chunk in _chunks(pending) for row in _states(connection, chunk)]
                stored = {row[0]: _completion(row[1]) for row in rows if row[1] is not None}
            answered.update((key, completion) for key, completion in stored.items() if completion)
            alive = functools.lru_cache(maxsize=None)(is_running)
            pending = [
                key
                for key, _, holder, pid, started in rows
                if key not in answered and holder is not None and alive(pid, started)
            ]
            if pending:
                time.sleep(poll)
        return answered

    def __len__(self) -> int:
        with self._using() as connection:
            return connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def _files(self) -> list[Path]:
        return [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]

    def size_bytes(self) -> int:
        """Bytes on disk, the write-ahead log included (works on a damaged file too)."""
        return sum(f.stat().st_size for f in self._files() if f.exists())

    def clear(self) -> None:
        """Delete every stored answer. A damaged file is removed, with its journal, and a new store begun.

        Raises:
            StoreError: the store cannot be cleared for another reason (a lock, the disk).
        """
        with self._lock:
            try:
                connection = self._connect()
                connection.execute("DELETE FROM responses")
                connection.execute("VACUUM")
            except (sqlite3.Error, OSError) as error:
                if not _is_damaged(error):
                    raise StoreError(self._explain(error)) from error
                # Nothing in a damaged file can be read back: start afresh.
                self._forget_connection()
                for file in self._files():
                    file.unlink(missing_ok=True)
                try:
                    self._connect()
                except (sqlite3.Error, OSError) as again:
                    raise StoreError(self._explain(again)) from again
            self._write_error = None


def _is_damaged(error: BaseException) -> bool:
    """Whether SQLite found the file not a database, or malformed (not: locked, full, unreadable)."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _DAMAGED_CODES
    return isinstance(error, sqlite3.DatabaseError) and (
        "not a database" in str(error) or "malformed" in str(error)
    )


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


_FIELDS = frozenset(field.name for field in dataclasses.fields(Completion)) - {"from_store"}


def _completion(value: str) -> Completion | None:
    """A stored answer; fields this version does not know (a newer mapgen's) are left out. ``None`` for
    one whose text is not text (an earlier release stored content parts as they came): it is asked again.

    Raises:
        sqlite3.DatabaseError: the stored value is not an answer (read as a damaged store).
    """
    try:
        data = json.loads(value)
        completion = Completion(**{k: v for k, v in data.items() if k in _FIELDS}, from_store=True)
    except (ValueError, TypeError, AttributeError) as error:
        raise sqlite3.DatabaseError(f"malformed stored answer ({type(error).__name__}: {error})") from None
    return completion if isinstance(completion.text, str) else None


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode and the tables. Switching to WAL takes a lock that SQLite's busy timeout does not wait for
    when several workers open a new store at the same moment, so that step is retried."""
    for attempt in range(50):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS responses"
                " (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS claims"
                " (key TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL, started INTEGER)"
                " WITHOUT ROWID"
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


_STORES: dict[Path, ResponseStore] = {}
_STORES_LOCK = threading.Lock()


def default_store() -> ResponseStore:
    """This process's store at :func:`cache_dir` (re-read each call, so tests can move it)."""
    path = cache_dir() / STORE_FILE
    with _STORES_LOCK:
        if path not in _STORES:
            _STORES[path] = ResponseStore(path)
        return _STORES[path]
