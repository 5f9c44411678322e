"""Counters of what a map sent and got, totalled over its ``num_proc`` workers, and the ``Requests`` bar.

``datasets`` forks ``num_proc`` workers from the process that calls ``ds.map`` (on Linux), and only
rows come back from them. So the totals live in shared memory, allocated here at import in the parent
and inherited by every forked worker: each process adds to a slot of its own (no lock shared between
processes on the hot path, so a worker killed mid-add cannot block the others), and the parent sums
the slots. Workers started with ``spawn`` (the default on macOS and Windows) import mapgen afresh and
keep totals of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.sharedctypes import RawArray
from types import FrameType
from typing import Any

from mapgen.core.units import NANO_USD, format_cost, format_tokens

COUNTERS = (
    "requests", "reused", "failed", "retries", "reasks", "truncated",
    "prompt_tokens", "completion_tokens", "cost", "priced", "unpriced",
)  # fmt: skip
"""What :data:`counters` totals: requests sent, answers reused from the store, failed answers, retries,
re-asks of answers that failed their answer model, answers cut at the token limit (``finish_reason``
``length``: :attr:`mapgen.core.request.Completion.cut`), and of the answers received, their prompt and
completion tokens, their cost in nano-USD (:data:`mapgen.core.units.NANO_USD`), and how many had a price and
how many had none (:func:`mapgen.core.columns.answer_came` says which answers came)."""

MAX_SLOTS = 1024
"""Processes that can add to one :class:`Counters` (a parent and every worker it forked over its life);
later ones share one extra slot, behind a lock."""

_CLAIM_TIMEOUT = 5.0  # seconds; a process killed while claiming its slot must not block the rest for ever


class Counters:
    """Running totals shared by this process and every process forked from it (``num_proc`` workers).

    ``add`` costs about a microsecond (a lock of this process's threads, no system call), so it can run
    once per request; ``snapshot`` sums what every process added.

    Example:
        >>> c = Counters()
        >>> c.add(requests=3, failed=1)
        >>> c.snapshot()["requests"]
        3
    """

    _base: int | None
    """The index of this process's slot in the shared values; ``None`` until it claims one."""

    def __init__(self, names: Sequence[str] = COUNTERS) -> None:
        self._names = tuple(names)
        self._index = {name: i for i, name in enumerate(self._names)}
        width = len(self._names)
        # Slot 0 holds the number of slots claimed; slot s (1..MAX_SLOTS + 1) its process's totals.
        try:
            self._values: Any = RawArray(ctypes.c_int64, width * (MAX_SLOTS + 2))
            self._claim_lock: Any = multiprocessing.Lock()
        except OSError:  # no shared memory here (some sandboxes): this process's totals only
            self._values = (ctypes.c_int64 * (width * (MAX_SLOTS + 2)))()
            self._claim_lock = threading.Lock()
        self.resets = 0
        """How many times :meth:`reset` ran in this process: totals taken before one no longer apply."""
        self._forget_slot()
        _instances.add(self)

    def add(self, **amounts: int) -> None:
        """Add to the named totals (``requests=3``); unknown names are a ``TypeError``."""
        index = self._index
        if not amounts.keys() <= index.keys():
            unknown = next(name for name in amounts if name not in index)
            raise TypeError(f"unknown counter {unknown!r}; counters are {list(self._names)}")
        with self._threads_lock:
            base = self._base
            if base is None:
                base = self._claim()
            values = self._values
            locked = self._shared_slot and self._claim_lock.acquire(timeout=_CLAIM_TIMEOUT)
            for name, amount in amounts.items():
                values[base + index[name]] += amount
            if locked:
                self._claim_lock.release()

    def snapshot(self) -> dict[str, int]:
        """The totals so far, over this process and every process forked from it."""
        width, values = len(self._names), self._values
        claimed = min(values[0], MAX_SLOTS + 1)
        totals = [0] * width
        for slot in range(1, claimed + 1):
            base = slot * width
            for i in range(width):
                totals[i] += values[base + i]
        return dict(zip(self._names, totals, strict=True))

    def reset(self) -> None:
        """Set every total to zero (while no worker is adding)."""
        width = len(self._names)
        for i in range(width, len(self._values)):
            self._values[i] = 0
        self.resets += 1

    def _claim(self) -> int:
        """Give this process a slot of its own: once per process, under the lock across processes; its
        first index in the shared values (``_base``)."""
        locked = self._claim_lock.acquire(timeout=_CLAIM_TIMEOUT)
        try:
            slot = self._values[0] + 1
            if slot > MAX_SLOTS:
                slot = MAX_SLOTS + 1  # the overflow slot, shared: adds to it take the lock (see add)
                self._shared_slot = True
            self._values[0] = slot
            self._base = slot * len(self._names)
            return self._base
        finally:
            if locked:
                self._claim_lock.release()

    def _forget_slot(self) -> None:
        # A forked child must claim a slot of its own, with a fresh lock: the parent's could have been
        # held by another of its threads at the fork.
        self._base = None
        self._shared_slot = False
        self._threads_lock = threading.Lock()


_instances: weakref.WeakSet[Counters] = weakref.WeakSet()

counters = Counters()
"""Totals of this process and its ``num_proc`` workers: ``requests``, ``reused``, ``failed``, ``retries``,
``reasks``, ``truncated``, tokens and cost (:data:`COUNTERS`)."""


_MAIN_PID = os.getpid()
_TICK = 0.1  # seconds between two refreshes of the bar, as tqdm's own default ``mininterval``


class RequestProgress:
    """A progress bar of the requests one ``ds.map`` sent and got answered, beside datasets' row bar.

    Rows can take several requests each (``num_generations``, one judge call per text) and answers can
    come from the response store, so the bar counts requests and shows what :data:`counters` moved by in
    the map: answers failed, cut at the token limit (``truncated``), retries, answers reused, tokens and
    cost. Every process (``num_proc`` workers included) adds to shared totals; the bar appears in the
    main process only, drawn by a small daemon thread that reads them, and follows
    ``datasets.disable_progress_bars()``. It writes to ``sys.stderr`` as it is at each write, not as it was
    when the bar was made (llama-cpp-python points it at ``/dev/null`` while it loads a model).

    Each ``ds.map`` of a mapgen function gets a bar of its own, which closes as the map ends: the function
    calls :meth:`follow_map` as ``datasets`` hands it a batch, and so does this process before ``datasets``
    forks its ``num_proc`` workers. Requests sent outside a ``ds.map`` (``fn(batch)``,
    ``IterableDataset.map``) share one bar, up to :meth:`close` or the next map.

    Example:
        >>> bar = RequestProgress()
        >>> bar.expect(2); bar.advance(); bar.advance(); bar.close()
    """

    def __init__(self) -> None:
        self._totals = Counters(("expected", "answered"))
        self._bar: Any = None
        self._lock = threading.Lock()  # the bar's: the drawing thread against close()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._own = [0, 0]  # requests this process expects and got answered: [expected, answered]
        self._drawn: tuple[int, ...] | None = None  # the numbers the bar shows now
        self._map: weakref.ref[Any] | None = None  # datasets' Map bar of the map the bar follows
        self._from = self._now()  # the totals the bar counts from: those when the last one closed

    def follow_map(self) -> None:
        """Close the bar if the caller runs in another ``ds.map`` than the one it follows, so that the next
        request opens a bar of this map's own; close it when this map ends. In the main process, in a
        ``Dataset.map`` of a mapgen function (found up the stack: :func:`_map_bar`); a walk up the stack,
        once a batch."""
        if os.getpid() != _MAIN_PID:
            return
        map_bar = _map_bar(sys._getframe(1))
        if map_bar is None or (self._map is not None and self._map() is map_bar):
            return
        self.close()  # the earlier map's bar (or that of requests sent outside a map) ends here
        self._map = weakref.ref(map_bar)
        _before_closing(map_bar, self._map_ended)

    def expect(self, count: int) -> None:
        """``count`` more requests are on their way."""
        self._totals.add(expected=count)
        if os.getpid() == _MAIN_PID:
            self._own[0] += count
            if self._thread is None:
                self._start()

    def advance(self) -> None:
        """One request was answered (or failed for good); called once per request, so kept lean."""
        self._totals.add(answered=1)
        own = self._own
        own[1] += 1
        if own[1] >= own[0] and os.getpid() == _MAIN_PID:
            # This process's requests are all answered (a batch ends): draw now, not at the next tick,
            # so that the bar is exact the moment ds.map returns.
            with self._lock:
                self._draw()

    def close(self) -> None:
        """Draw the final totals and close the bar; the next request starts a new one, counting from here."""
        if os.getpid() != _MAIN_PID:
            return
        with self._lock:
            self._draw()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._from = self._now()
            self._map = None

    def _map_ended(self, map_bar: Any) -> None:
        """datasets' Map bar of a map is closing (the map ended, or raised): this map's bar closes first."""
        if self._map is not None and self._map() is map_bar:
            self.close()

    def _now(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The request totals, how many times :data:`counters` was reset, and its totals."""
        return self._totals.snapshot(), counters.resets, counters.snapshot()

    def _draw(self) -> None:
        """Bring the bar up to the shared totals, less those it counts from (under ``self._lock``)."""
        requests, resets, start = self._from
        totals = self._totals.snapshot()
        expected = totals["expected"] - requests["expected"]
        answered = totals["answered"] - requests["answered"]
        if self._bar is None:
            if expected <= 0 or not _bars_enabled():
                return
            self._bar = _new_bar(expected)
            self._drawn = None
        now = counters.snapshot()
        if counters.resets == resets:  # else they started again from zero since: all of them are new
            now = {name: now[name] - start[name] for name in _SHOWN}
        # Every number shown: failures and retries are counted after the answer that ends a batch, so
        # a bar that looked at the request counts alone would keep showing the totals before them.
        shown = (expected, answered, *(now[name] for name in _SHOWN))
        if shown == self._drawn:
            return
        self._drawn = shown
        bar = self._bar
        bar.total, bar.n = expected, answered
        bar.set_postfix(_postfix(now), refresh=False)
        bar.refresh()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(_TICK):
            with self._lock:
                self._draw()

    def _start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="mapgen-requests-bar", daemon=True
        )
        self._thread.start()

    def _pause(self) -> bool:
        """Stop the drawing thread (before a fork, so that no child inherits a lock it held)."""
        thread = self._thread
        if thread is None:
            return False
        self._stop.set()
        thread.join(timeout=1.0)
        self._thread = None
        return True

    def _forget_bar(self) -> None:
        # In a forked child: the parent's bar and thread are not ours. Disabled, the bar's copy prints
        # nothing when dropped.
        if self._bar is not None:
            self._bar.disable = True
        self._bar = None
        self._thread = None
        self._own = [0, 0]
        self._map = None


def _map_bar(frame: FrameType | None) -> Any:
    """datasets' ``Map`` bar (its local ``pbar``) of the innermost ``Dataset.map`` that ``frame`` runs in, up
    its stack; ``None`` outside one (or in a ``datasets`` that names it otherwise: then the bar is not per
    map). The Map bar lives exactly as long as the map runs: made before its first batch (and before its
    ``num_proc`` workers are forked), closed as it ends, also by an error; its function may be a mapgen
    function or wrap one."""
    while frame is not None:
        if frame.f_code.co_name == "map" and str(frame.f_globals.get("__name__")).startswith("datasets."):
            bar = frame.f_locals.get("pbar")  # DatasetDict.map has none: its Dataset.map is further in
            if callable(getattr(bar, "close", None)):
                return bar
        frame = frame.f_back
    return None


def _before_closing(bar: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(bar)`` as ``bar`` (a tqdm bar) is closed, before it closes (inner bars close first);
    the bar is held weakly, so that it is dropped as usual."""
    held = weakref.ref(bar)
    close = type(bar).close

    def closing() -> None:
        bar = held()
        if bar is None:
            return
        try:
            callback(bar)
        finally:
            close(bar)

    bar.close = closing


class _Stderr:
    """``sys.stderr`` as it is at each write: the bar's stream. A library may swap ``sys.stderr`` for a
    while (llama-cpp-python points it at ``/dev/null`` while it loads a model), and a bar that kept the
    stream it was made with would write there for ever. A write that fails (a closed stream) is dropped,
    not the bar."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (AttributeError, OSError, ValueError):  # None (pythonw), or closed
            return 0

    def flush(self) -> None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()

    def fileno(self) -> int:  # tqdm reads the terminal's width through it
        return sys.stderr.fileno()

    def isatty(self) -> bool:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())

    @property
    def encoding(self) -> str | None:  # tqdm draws with Unicode blocks where it can
        return getattr(sys.stderr, "encoding", None)

    def __eq__(self, other: object) -> bool:  # tqdm.write() clears the bars on the stream it writes to
        return other is self or other is sys.stderr

    __hash__ = object.__hash__


def _new_bar(total: int) -> Any:
    """A ``Requests`` bar: a widget in a notebook, else a text bar on :class:`_Stderr`."""
    from tqdm.auto import tqdm

    notebook = any(kind.__module__ == "tqdm.notebook" for kind in tqdm.__mro__)
    stream = {} if notebook else {"file": _Stderr()}  # a widget writes to no stream
    return tqdm(total=total, desc="Requests", unit=" req", dynamic_ncols=True, **stream)


_SHOWN = (
    "reused", "retries", "failed", "truncated",
    "prompt_tokens", "completion_tokens", "cost", "priced", "unpriced",
)  # fmt: skip


def _postfix(totals: dict[str, int]) -> dict[str, str | int]:
    """The bar's counts after its numbers: failed, answers cut at the token limit (``truncated``, where
    there are any), retries, reused, then the tokens received so far and their cost where a price is known
    (:mod:`mapgen.core.prices`), a lower bound while some had none.

    Example:
        >>> _postfix({"reused": 1, "retries": 0, "failed": 0, "truncated": 2, "prompt_tokens": 1500,
        ...           "completion_tokens": 500, "cost": 1_200_000, "priced": 3, "unpriced": 0})
        {'failed': 0, 'truncated': 2, 'retries': 0, 'reused': 1, 'tokens': '2.0k', 'cost': '$0.001200'}
    """

    # In the order the bar always showed them (tqdm sorts keyword postfixes), then the new ones.
    postfix: dict[str, str | int] = {"failed": totals["failed"]}
    if totals["truncated"]:  # beside the failures: answers that came, but cut short
        postfix["truncated"] = totals["truncated"]
    postfix |= {name: totals[name] for name in ("retries", "reused")}
    tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    if tokens:
        postfix["tokens"] = format_tokens(tokens)
    if totals["priced"]:
        postfix["cost"] = format_cost(totals["cost"] * NANO_USD, totals["unpriced"])
    return postfix


def _bars_enabled() -> bool:
    from datasets.utils.logging import is_progress_bar_enabled

    return is_progress_bar_enabled()


request_progress = RequestProgress()
"""The main process's request bar."""


def _before_fork() -> None:
    if os.getpid() == _MAIN_PID:
        request_progress._pause()
        # Most often datasets forking num_proc workers for a map, whose function the parent never calls.
        request_progress.follow_map()


def _after_fork_in_parent() -> None:
    # A fork from the main process is most often datasets starting num_proc workers: the bar must
    # follow what they do from now on, though this process sends nothing itself.
    if os.getpid() == _MAIN_PID and request_progress._thread is None:
        request_progress._start()


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance._forget_slot()
    request_progress._forget_bar()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
atexit.register(request_progress.close)
