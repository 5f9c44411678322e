"""What every response store shares: the answer's encoding, and the write-behind path that commits answers
in batches on a thread of its own, so the caller's thread (an event loop receiving answers) only encodes
and queues.

Writes (:meth:`ResponseStore.put`, and :meth:`ResponseStore.release` of one failed key) go into a queue in
arrival order; the store's writer thread takes everything queued and commits it in one transaction, at
once: under load, the answers that arrived while the previous transaction ran (a group commit). Nothing
waits on a timer, so an answer is committed within one transaction of arriving; a ``kill -9`` loses what
was in flight and the few answers queued behind the running transaction. :meth:`ResponseStore.flush`
waits until everything queued before it is committed; every read flushes first (a process reads its own
writes), and the map functions flush before they return a batch.

**Outages.** When a store this process has already used goes away for a while (a PostgreSQL server
restarting, a SQLite file locked by another process past the busy timeout), nothing is lost and nothing
raises: the writer keeps what is queued and tries again with a bounded backoff (:data:`BACKOFF_MAX`), and
storing resumes with the first write that succeeds; a read counts the keys as missing; a claim, and a wait
for another run's keys, wait for the store (a claim cannot tell which keys a live other run holds, and
granting them would pay twice). Since :meth:`ResponseStore.put` waits once :data:`MAX_UNCOMMITTED` answers
are queued, a map pauses during a long outage instead of paying for answers it cannot keep. Only when the
store stays away for :attr:`ResponseStore.outage_window` seconds (:data:`OUTAGE_WINDOW`: 5 minutes) is it
given up: one :class:`StoreWarning`, what is queued is dropped, and the run goes on without storing (or
claiming) until a read finds the store back.

A forked process (``num_proc`` workers) starts with an empty queue, no writer thread and no connection:
it opens its own. The parent's connection is kept, unused, so that closing it does not end the parent's
session (PostgreSQL) or drop its locks (SQLite).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import tenacity

from mapgen.core.request import Completion
from mapgen.core.urls import mask_url
from mapgen.errors import DamagedAnswer, StoreError, StoreWarning
from mapgen.runtime import interrupts


class StoreURL(str):
    """A store URL whose ``repr`` hides its password (:func:`mapgen.core.urls.mask_url`: the parser that
    refuses credentials in a backend's URLs), so a map function's repr can show it safely.

    Example:
        >>> StoreURL("postgresql://app:s3cret@db/mapgen")
        'postgresql://app:***@db/mapgen'
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url(str(self)))


# The fields an answer is stored with, and their defaults: computed once, so new fields of Completion are
# stored without a change here. The error fields never are (failed answers are not stored), nor what
# parsing found (repaired: each read parses anew), nor the retries that sending it took (a reuse takes none).
_NOT_STORED = frozenset({"error", "error_kind", "from_store", "repaired", "retries"})
_NO_DEFAULT = object()
_STORED = tuple(
    (field.name, _NO_DEFAULT if field.default is dataclasses.MISSING else field.default)
    for field in dataclasses.fields(Completion)
    if field.name not in _NOT_STORED
)
_KNOWN = frozenset(name for name, _ in _STORED)
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def encode(completion: Completion, *, stored_by: str | None = None, stored_at: int | None = None) -> str:
    """One answer as compact JSON, leaving out fields at their default (``None``): small, and cheap to make.
    ``stored_by`` (the model, as ``generation_model`` names it) and ``stored_at`` (Unix seconds) are kept
    beside the answer for :meth:`ResponseStore.delete`; :func:`decode` ignores them.

    Example:
        >>> encode(Completion(text="Paris", finish_reason="stop"))
        '{"text":"Paris","finish_reason":"stop"}'
    """
    values = {}
    for name, default in _STORED:
        value = getattr(completion, name)
        if value is not None and value != default:
            values[name] = value
    if stored_by is not None:
        values["stored_by"] = stored_by
    if stored_at is not None:
        values["stored_at"] = stored_at
    return _encode_json(values)


def decode(value: str | bytes) -> Completion | None:
    """A stored answer, from this or any earlier release; keys this version does not know (a newer
    mapgen's fields) are ignored. ``None`` for one whose text is not text (an earlier release stored content
    parts as they came): it is asked again.

    Raises:
        DamagedAnswer: the value is not an answer.

    Example:
        >>> decode('{"text": "Paris", "logprob_sum": -1.5}').text
        'Paris'
    """
    try:
        data = json.loads(value)
        completion = Completion(**{k: v for k, v in data.items() if k in _KNOWN}, from_store=True)
    except (ValueError, TypeError, AttributeError) as error:
        raise DamagedAnswer(f"malformed stored answer ({type(error).__name__}: {error})") from None
    return completion if isinstance(completion.text, str) else None


class BatchJob(NamedTuple):
    """Where a request sent through a provider's batch API is being answered: the provider's job id
    (``batch_...`` at OpenAI, ``msgbatch_...`` at Anthropic) and the request's ``custom_id`` in it."""

    job_id: str
    custom_id: str


MAX_UNCOMMITTED = 32
"""Answers a process may have queued but not committed: when the writer falls this far behind, :meth:`put`
waits for it. A ``kill -9`` re-sends at most what was in flight and this many."""
OUTAGE_WINDOW = 300.0
"""Seconds an outage of a store (a server restarting, a file locked by another process) is ridden out
before the store is given up for this process: the default of :attr:`ResponseStore.outage_window`. Longer
than a claim's lease (:data:`mapgen.store.postgres.LEASE`), like a connection pool's reconnect window."""
BACKOFF_MAX = 2.0
"""Seconds at most between two tries to reach a store during an outage (the first after 0.05 s, then
doubling; each with up to 0.05 s of jitter): storing resumes within about this long of the store's return."""
_T = TypeVar("_T")
# Queue items: ("put", key, value), ("release", owner, keys), ("flush", event).
_Item = tuple[Any, ...]
_STORES: weakref.WeakSet[ResponseStore] = weakref.WeakSet()
# Connections inherited across a fork: kept so that their finalizers never run in the child.
_INHERITED: list[Any] = []


class ResponseStore:
    """A key -> :class:`~mapgen.core.request.Completion` table shared by threads, processes and runs, with
    claims on the keys being sent so that concurrent runs send each one once. Backends:
    :class:`~mapgen.store.sqlite.SQLiteStore`, :class:`~mapgen.store.postgres.PostgresStore`; open one with
    :func:`mapgen.store.open_store`.

    Subclasses give :attr:`where` (the file, or the URL without its password), ``_connect()``,
    ``_errors`` (their driver's exceptions), ``_write(puts, releases)`` (one transaction), and the reads.
    """

    where: str
    outage_window: float = OUTAGE_WINDOW
    """Seconds an outage is ridden out before the store is given up (see :mod:`mapgen.store.base`); set it on
    the store a map uses: ``mapgen.store.open_store(url).outage_window = 60``."""
    _errors: tuple[type[BaseException], ...] = ()
    _idle_interval: float | None = None  # the writer's ``_tick`` runs this often (a lease's heartbeat)

    def __init__(self) -> None:
        # Whether this process (or the parent it was forked from) has reached the store: an error that
        # passes is an outage only then; before, it is a misconfiguration, raised before anything is sent.
        self._reached = False
        self._reset()
        _STORES.add(self)

    def _reset(self) -> None:
        """This process's fresh state: at construction, and in a forked child."""
        self._lock = threading.Lock()  # one user of the connection at a time
        self._start_lock = threading.Lock()
        self._connection: Any = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._next_tick = 0.0
        self._queued = itertools.count(1)  # answers queued so far (next() is atomic under the GIL)
        self._committed = 0  # of which committed (or dropped after a failure); written by the writer only
        self._write_error: StoreError | None = None  # the first failed write: storing stops after it
        self._warned = False
        self._down_since: float | None = None  # when the outage going on began (time.monotonic())
        self._gave_up = False  # _write_error is an outage that outlasted outage_window: a success ends it

    # -- the connection ---------------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _forget_connection(self) -> None:
        """Close this process's connection, so that the next use opens the store anew."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def _is_damaged(self, error: BaseException) -> bool:
        return isinstance(error, DamagedAnswer)

    def _is_disconnected(self, error: BaseException) -> bool:
        """Whether the connection broke (a server restart): the next use reconnects."""
        return False

    def _is_transient(self, error: BaseException) -> bool:
        """Whether the driver's ``error`` passes by itself (the server is restarting, another process holds
        a lock): an outage, ridden out (:meth:`_ride_out`), once this process has reached the store."""
        return False

    @contextlib.contextmanager
    def _using(self) -> Iterator[Any]:
        """This process's connection, under the lock; the driver's errors come out as :class:`StoreError`."""
        caught: tuple[type[BaseException], ...] = (*self._errors, OSError, DamagedAnswer)
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    self._reached = True
                yield self._connection
            except caught as error:
                if self._is_damaged(error) or self._is_disconnected(error):
                    self._forget_connection()
                raise StoreError(self._explain(error)) from error
            self._came_back()

    # -- outages --------------------------------------------------------------------------------------
    def _ride_out(
        self,
        work: Callable[[], _T],
        *,
        wait: bool = True,
        otherwise: Callable[[], _T] | None = None,
        warn: bool = True,
    ) -> _T:
        """``work()``, riding out an outage of the store: with ``wait``, tried again with a bounded backoff
        until it succeeds or the outage has lasted :attr:`outage_window`, when the store is given up
        (warning once, with ``warn``: the caller's thread). Past an outage's tries, ``otherwise()`` is the
        result; without ``otherwise``, the :class:`StoreError` is raised, as any other error is."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._in_outage),
            stop=lambda _: not wait or self._outage_outlasted(),
            wait=tenacity.wait_exponential(multiplier=0.05, max=BACKOFF_MAX) + tenacity.wait_random(0, 0.05),
            reraise=True,
        )
        try:
            return retrying(work)
        except StoreError as error:
            if not self._in_outage(error):
                raise
            if self._outage_outlasted():
                self._give_up(error)
                if warn:
                    self._warn_if_failed()
            if otherwise is None:
                raise
            return otherwise()

    def _in_outage(self, error: BaseException) -> bool:
        """Whether ``error`` is an outage of a store this process has reached; the outage's start is noted."""
        cause = error.__cause__ if isinstance(error, StoreError) else None
        if not (self._reached and cause is not None and self._is_transient(cause)):
            return False
        if self._down_since is None:
            self._down_since = time.monotonic()
        return True

    def _outage_outlasted(self) -> bool:
        return self._down_since is not None and time.monotonic() - self._down_since >= self.outage_window

    def _give_up(self, error: StoreError) -> None:
        """The outage outlasted :attr:`outage_window`: store nothing more until the store is back."""
        if self._write_error is None:
            self._write_error = StoreError(f"{error} It stayed away for {self.outage_window:g} s.")
            self._gave_up = True

    def _came_back(self) -> None:
        """The store answered: an outage is over, and storing resumes if it was given up."""
        self._down_since = None
        if self._gave_up:
            self._gave_up = False
            self._writes_resumed()

    def _explain(self, error: BaseException) -> str:
        """What went wrong with the store, naming it, and the way out."""
        raise NotImplementedError

    # -- writes ---------------------------------------------------------------------------------------
    def put(self, key: str, completion: Completion, *, model: str | None = None) -> None:
        """Store one successful completion (failed ones are not stored, so they are retried), and release
        any claim on its key; committed by the writer thread within one transaction (:meth:`flush` waits).
        ``model`` (the name ``generation_model`` shows) and the time are kept for :meth:`delete`.

        Never raises: an outage is ridden out (see :mod:`mapgen.store.base`); a store that cannot be
        written warns once (:class:`StoreWarning`) and stores nothing more in this process until
        :meth:`clear` (or, after an outage, until it is back), so a paid answer still reaches the output.
        """
        if completion.text is None or self._write_error is not None:
            return
        self._enqueue(("put", key, encode(completion, stored_by=model, stored_at=int(time.time()))))
        if next(self._queued) - self._committed >= MAX_UNCOMMITTED:
            self.flush()  # the writer fell behind (a slow disk or database): wait, so a kill loses little

    def release(self, keys: Iterable[str], owner: str, *, wait: bool = True) -> None:
        """Drop ``owner``'s claims on ``keys`` (answers that failed, or were never sent), after the writes
        queued before; with ``wait``, return once that is committed.

        Never raises: like :meth:`put`, a failure warns once; the claims then end with this process.
        """
        keys = list(dict.fromkeys(keys))
        if keys:
            self._enqueue(("release", owner, keys))
        if wait:
            self.flush()

    def flush(self) -> None:
        """Wait until every write queued so far is committed (or has failed: then warn, once)."""
        if self._writer is not None:
            done = threading.Event()
            self._enqueue(("flush", done))
            done.wait()
        self._warn_if_failed()

    def _enqueue(self, item: _Item) -> None:
        self._queue.put(item)
        if self._writer is None:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            with self._start_lock:
                if self._writer is None:
                    writer = threading.Thread(target=self._drain, name="mapgen-store-writer", daemon=True)
                    writer.start()
                    self._writer = writer

    def _drain(self) -> None:
        """The writer thread: commit whatever is queued, in one transaction, as soon as it is there."""
        while True:
            if self._idle_interval is not None and time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + self._idle_interval
                with contextlib.suppress(Exception):
                    self._tick()
            timeout = None if self._idle_interval is None else max(0.0, self._next_tick - time.monotonic())
            try:
                items = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                continue
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(self._queue.get_nowait())
            puts: dict[str, str] = {}
            releases: list[tuple[str, list[str]]] = []
            flushed: list[threading.Event] = []
            done = 0
            for item in items:
                if item[0] == "put":
                    puts[item[1]] = item[2]
                    done += 1
                elif item[0] == "release":
                    releases.append((item[1], item[2]))
                else:
                    flushed.append(item[1])
            if self._write_error is not None:
                puts = {}
            if puts or releases:
                try:
                    # An outage is ridden out: the answers stay queued until a write succeeds.
                    self._ride_out(functools.partial(self._write, puts, releases), warn=False)
                except Exception as error:  # the thread must live on: flush() waits for it
                    if not isinstance(error, StoreError):
                        error = StoreError(f"The response store {self.where} failed to write: {error!r}")
                    if self._write_error is None:
                        self._write_error = error
            self._committed += done
            for event in flushed:
                event.set()

    def _write(self, puts: dict[str, str], releases: Sequence[tuple[str, list[str]]]) -> None:
        """Commit ``puts`` (key -> encoded answer, releasing their claims) and ``releases`` (owner, keys) in
        one transaction. Raises :class:`StoreError`."""
        raise NotImplementedError

    def _tick(self) -> None:
        """Run by the writer thread every ``_idle_interval`` seconds (a claim lease's heartbeat)."""

    def _warn_if_failed(self) -> None:
        """Warn once, on the caller's thread, that storing failed; the caller goes on without it."""
        if self._write_error is not None and not self._warned:
            self._warned = True
            until = "it is back" if self._gave_up else "it is cleared"
            warnings.warn(
                f"{self._write_error} Until {until}, this process stores no more answers: they still go "
                "into the output, and a re-run sends them again.",
                StoreWarning,
                stacklevel=3,
            )

    def _writes_resumed(self) -> None:
        """After :meth:`clear`: store again, and warn again on the next failure."""
        self._write_error = None
        self._warned = False

    # -- reads and claims (each backend) -----------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The stored completions among ``keys`` (after this process's queued writes). During an outage of
        a store this process has reached, none: the keys count as missing (their claim waits for the store).

        Raises:
            StoreError: the store cannot be read (a damaged file, no server at the first read).
        """
        self.flush()
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        return self._ride_out(functools.partial(self._get_many, wanted), wait=False, otherwise=dict)

    def _get_many(self, keys: list[str]) -> dict[str, Completion]:
        raise NotImplementedError

    def claim(self, keys: Sequence[str], owner: str) -> list[str]:
        """Claim for ``owner`` (a token the caller makes per call) the unanswered ``keys`` that no other
        live owner holds; return the keys ``owner`` holds now, in input order.

        The caller sends those, stores or :meth:`release` s each, and releases the rest in a ``finally``;
        the other unanswered keys are being sent elsewhere: :meth:`wait_for` them.

        During an outage, it waits for the store: which keys a live other run holds is not known until
        then. A store that cannot be written (a full disk), or stays away past :attr:`outage_window`,
        warns once, like :meth:`put`, and every key is the caller's: the run goes on without the store, as
        it would without claims.
        """
        keys = list(dict.fromkeys(keys))
        self.flush()
        if self._write_error is not None:
            return keys
        try:
            return self._ride_out(functools.partial(self._claim, keys, owner))
        except StoreError as error:
            self._write_error = self._write_error or error
            self._warn_if_failed()
            return keys

    def _claim(self, keys: list[str], owner: str) -> list[str]:
        raise NotImplementedError

    def wait_for(self, keys: Iterable[str], *, poll: float = 0.05) -> dict[str, Completion]:
        """Block until each of ``keys`` is answered in the store or no longer claimed by a live owner
        (released, or its owner gone); return the answered ones. The caller claims and sends the rest.
        Never wait for keys the caller itself holds. During an outage, it waits for the store; past
        :attr:`outage_window`, the store is given up and the keys not yet answered are the caller's.

        Raises:
            StoreError: the store cannot be read.
        """
        raise NotImplementedError

    # -- batch jobs (each backend): requests submitted to a provider's batch API, not yet collected -------
    def record_batch_jobs(self, jobs: dict[str, BatchJob]) -> None:
        """Record, for each store key, the batch job answering it; committed before this returns, so that a
        process killed right after submitting loses nothing: the next run collects the job instead of
        submitting the requests again (:mod:`mapgen.mapping.batch_mode`).

        Raises:
            StoreError: the store cannot be written.
        """
        raise NotImplementedError

    def batch_jobs(self, keys: Iterable[str] | None = None) -> dict[str, BatchJob]:
        """The recorded batch jobs of ``keys`` (of every key when ``None``).

        Raises:
            StoreError: the store cannot be read.
        """
        raise NotImplementedError

    def forget_batch_jobs(self, keys: Iterable[str]) -> None:
        """Drop the job records of ``keys`` (collected: answered, or failed and to be submitted again).

        Raises:
            StoreError: the store cannot be written.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def size_bytes(self) -> int:
        """Bytes the stored answers take (on disk, or in the database)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Delete every stored answer (and claim).

        Raises:
            StoreError: the store cannot be cleared.
        """
        raise NotImplementedError

    def delete(self, *, model: str | None = None, older_than: float | None = None) -> int:
        """Delete the stored answers of ``model`` (the name ``generation_model`` shows), stored more than
        ``older_than`` seconds ago, or both; how many were deleted. Answers stored by a release before
        this one carry neither: ``older_than`` takes them as old, ``model`` never matches them. Records
        that are not answers (provenance, batch jobs) stay. :meth:`clear` deletes everything.

        Raises:
            ValueError: neither filter given, or ``older_than`` negative.
            StoreError: the store cannot be read or written.

        Example:
            >>> import tempfile
            >>> from mapgen.store import open_store
            >>> store = open_store(f"sqlite:///{tempfile.mkdtemp()}/responses.sqlite3")
            >>> store.put("k1", Completion(text="Paris"), model="gpt-4o-mini")
            >>> store.put("k2", Completion(text="Rome"), model="smollm2")
            >>> store.delete(model="gpt-4o-mini"), len(store)
            (1, 1)
        """
        if model is None and older_than is None:
            raise ValueError("delete() needs model= or older_than=; clear() deletes every answer.")
        if older_than is not None and older_than < 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than!r}.")
        self.flush()
        cutoff = None if older_than is None else int(time.time() - older_than)
        return self._ride_out(functools.partial(self._delete, model, cutoff))

    def _delete(self, model: str | None, stored_before: int | None) -> int:
        """Delete the answers (not other records) of ``model`` stored before ``stored_before`` (Unix
        seconds; no time counts as before), each filter skipped when ``None``; how many were deleted."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        if store._connection is not None:
            _INHERITED.append(store._connection)
        store._reset()


def _flush_all_at_exit() -> None:
    for store in list(_STORES):
        if store._writer is not None and store._writer.is_alive():
            done = threading.Event()
            store._queue.put(("flush", done))
            done.wait(timeout=30)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)
interrupts.on_worker_exit(_flush_all_at_exit)  # a num_proc worker ends with os._exit: atexit does not run
