"""Stopping well: Ctrl-C ends a run with one line, and ``num_proc`` workers never outlive their parent.

On Ctrl-C the API backends stop sending (queued requests are dropped, those in flight land and are
stored, see :func:`mapgen.runtime.event_loop.run`), then the run ends with :class:`Interrupted`, whose
one-line message says how many answers were kept and that a re-run resumes.

With ``num_proc``, the process that called ``ds.map`` takes the Ctrl-C for its workers (they ignore
SIGINT): ``datasets`` answers it with a ``TimeoutError`` of its own and ends its pool, each worker with a
SIGTERM, and waits for them. A worker takes that SIGTERM as its Ctrl-C: it stops sending, lets what is in
flight land and be stored (for up to :data:`~mapgen.runtime.event_loop.INTERRUPT_GRACE` seconds), then
exits. An uncaught error that came of a Ctrl-C in a map of a mapgen function then prints as the same one
line (:func:`report_uncaught`). A worker whose parent died (killed, say, or ended by a second Ctrl-C) stops
within a second instead of sending every remaining request.

Example:
    >>> try:
    ...     with reported():
    ...         raise KeyboardInterrupt
    ... except Interrupted as interrupted:
    ...     print(str(interrupted).split(";")[1])
     run the same map again to resume without paying for them twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import TracebackType

from mapgen.errors import Interrupted
from mapgen.runtime import event_loop
from mapgen.runtime.progress import Counters

PARENT_CHECK_INTERVAL = 0.5
"""Seconds between a worker's checks that its parent still runs."""

_kept = Counters(("kept",))
"""Answers stored, by this process and the ``num_proc`` workers forked from it."""
_main_pid = os.getpid()
_watched: dict[str, int | None] = {"pid": None, "signals": None}
_stopping: dict[int, threading.Event] = {}
"""Set (in a worker, by its pid) when SIGTERM asks it to stop."""
_at_exit: list[Callable[[], None]] = []


def kept() -> None:
    """Count one answer stored during this process's runs (and its workers')."""
    _kept.add(kept=1)


def on_worker_exit(callback: Callable[[], None]) -> None:
    """Call ``callback`` before a ``num_proc`` worker ends itself (its pool ended it, or its parent died),
    where ``atexit`` does not run: the response store commits what it has queued."""
    _at_exit.append(callback)


def interrupted(message: str) -> Interrupted:
    """An :class:`Interrupted` with ``message``, printed as one line (no traceback) if nothing catches it:
    for a step that knows better than :func:`reported` what was kept (a batch job's ids)."""
    _install_excepthook()
    return Interrupted(message)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn a ``KeyboardInterrupt`` inside the block into :class:`Interrupted`, with the count of answers
    kept in the response store so far."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        _install_excepthook()
        raise Interrupted(_message()) from None


def report_uncaught() -> None:
    """Print an uncaught :class:`Interrupted` as its one line, and so an uncaught error that a Ctrl-C in a
    map of a mapgen function left (``datasets``' ``num_proc`` pool answers it with a ``TimeoutError``):
    installed in the process that builds the function, where the map's Ctrl-C is taken."""
    _install_excepthook()


def _message() -> str:
    count = _kept.snapshot()["kept"]
    return (
        f"interrupted: {count} answer{'s' if count != 1 else ''} received are kept in the response store; "
        "run the same map again to resume without paying for them twice."
    )


def _install_excepthook() -> None:
    previous = sys.excepthook
    if getattr(previous, "mapgen", False):
        return

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if isinstance(value, Interrupted):
            print(f"mapgen: {value}", file=sys.stderr)
        elif came_of_ctrl_c(value) and _in_a_map(tb):
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: what landed so far
                event_loop.settle(event_loop.INTERRUPT_GRACE)  # fn.acall's threads: their answers land
            print(f"mapgen: {_message()}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    excepthook.mapgen = True  # type: ignore[attr-defined]  # a mark on the function: installed once
    sys.excepthook = excepthook


def came_of_ctrl_c(error: BaseException) -> bool:
    """Whether ``error`` is, or was raised while handling, a ``KeyboardInterrupt`` (``datasets``' worker
    pool answers an interrupt with a ``TimeoutError`` of its own)."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _in_a_map(tb: TracebackType | None) -> bool:
    """Whether ``tb`` passes through ``datasets``' ``map`` of a mapgen function (or its ``acall``)."""
    for frame, _ in traceback.walk_tb(tb):
        if frame.f_code.co_name != "map" or not str(frame.f_globals.get("__name__")).startswith("datasets."):
            continue
        function = frame.f_locals.get("function")
        owner = getattr(function, "__self__", function)
        if any(kind.__module__.partition(".")[0] == "mapgen" for kind in type(owner).__mro__):
            return True
    return False


def watch_parent() -> None:
    """In a forked ``num_proc`` worker, once: start a thread that ends the worker when its parent dies, so
    that killing a map's parent stops every request, and (from the main thread) take SIGTERM as a Ctrl-C,
    and leave SIGINT to the parent (see the module's docstring). The main process is left alone."""
    pid = os.getpid()
    if pid == _main_pid:
        return
    if _watched["pid"] != pid:
        _watched["pid"] = pid
        stopping = _stopping[pid] = threading.Event()
        watcher = threading.Thread(target=_watch, args=(os.getppid(), stopping), daemon=True)
        watcher.name = "mapgen-parent-watch"
        watcher.start()
    if _watched["signals"] != pid and threading.current_thread() is threading.main_thread():
        _watched["signals"] = pid
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminated)
        if _pool_worker() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends the pool: SIGTERM, above


def _pool_worker() -> bool:
    """Whether this process is a worker of a ``multiprocess`` (``datasets``') or ``multiprocessing`` pool."""
    for name in ("multiprocess", "multiprocessing"):
        module = sys.modules.get(name)
        if module is not None and module.current_process().daemon:
            return True
    return False


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM in a worker (its pool ends it): stop sending now; the watcher lets what is in flight land,
    then exits. A second SIGTERM exits at once."""
    stopping = _stopping.get(os.getpid())
    if stopping is None or stopping.is_set():  # a second one (or a process forked from a worker)
        os._exit(128 + signum)
    event_loop.stop()
    stopping.set()


def _watch(parent: int, stopping: threading.Event) -> None:
    while not stopping.wait(PARENT_CHECK_INTERVAL):
        if os.getppid() != parent:
            event_loop.stop()
            _exit(1)  # at once: the parent is gone
    event_loop.settle(event_loop.INTERRUPT_GRACE)  # the answers in flight land, and are stored
    _exit(128 + signal.SIGTERM)


def _exit(status: int) -> None:
    """End this worker, after what it has received is committed (:func:`on_worker_exit`)."""
    for callback in _at_exit:
        with contextlib.suppress(Exception):
            callback()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
