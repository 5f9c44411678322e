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

import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from mapgen.llms.base import Completion, Request

STORE_FILE = "responses.sqlite3"
# SQLite caps the number of parameters in one statement; stay well below it.
_LOOKUP_CHUNK = 900


def cache_dir() -> Path:
    """``$MAPGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/mapgen``, else ``~/.cache/mapgen``."""
    if os.environ.get("MAPGEN_CACHE_DIR"):
        return Path(os.environ["MAPGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mapgen"


def request_key(llm_fingerprint: str, request: Request) -> str:
    """The store key of one request to one backend config (``llm_fingerprint`` is its JSON state)."""
    identity = [
        llm_fingerprint,
        request.prompt.messages(),
        request.index,
        request.schema,
        request.top_logprobs,
    ]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=repr).encode()).hexdigest()


class ResponseStore:
    """A key -> :class:`~mapgen.llms.base.Completion` table in one SQLite file, safe across threads
    and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        # One connection per process: a connection must not cross a fork.
        if self._connection is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            # NORMAL in WAL mode: a process crash loses nothing committed; only a power cut may lose the
            # last commits, which would be re-sent.
            connection.execute("PRAGMA synchronous=NORMAL")
            _set_up(connection)
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The stored completions among ``keys``."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        with self._lock:
            connection = self._connect()
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                for key, value in connection.execute(query, chunk):
                    found[key] = Completion(**json.loads(value), from_store=True)
        return found

    def put(self, key: str, completion: Completion) -> None:
        """Commit one successful completion now (failed ones are not stored, so they are retried)."""
        if completion.text is None:
            return
        value = {k: v for k, v in dataclasses.asdict(completion).items() if k not in ("error", "from_store")}
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def __len__(self) -> int:
        with self._lock:
            return self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def size_bytes(self) -> int:
        """Bytes on disk, the write-ahead log included."""
        files = [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
        return sum(f.stat().st_size for f in files if f.exists())

    def clear(self) -> None:
        """Delete every stored answer."""
        with self._lock:
            connection = self._connect()
            connection.execute("DELETE FROM responses")
            connection.execute("VACUUM")


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode and the table. Switching to WAL takes a lock that SQLite's busy timeout does not wait for
    when several workers open a new store at the same moment, so that step is retried."""
    for attempt in range(50):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS responses"
                " (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
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
