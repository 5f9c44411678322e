"""Stopping well: Ctrl-C ends a run with one line, and ``num_proc`` workers never outlive their parent.

On Ctrl-C the API backends stop sending (queued requests are dropped, those in flight land and are
stored, see :func:`mapgen.runtime.event_loop.run`), then the run ends with :class:`Interrupted`, whose
one-line message says how many answers were kept and that a re-run resumes. A ``num_proc`` worker
whose parent died (killed, say) stops within a second instead of sending every remaining request.

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
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType

from mapgen.errors import Interrupted
from mapgen.runtime import event_loop

PARENT_CHECK_INTERVAL = 0.5
"""Seconds between a worker's checks that its parent still runs."""

_kept = [0]
_kept_lock = threading.Lock()
_main_pid = os.getpid()
_watched: dict[str, int | None] = {"pid": None}


def kept() -> None:
    """Count one answer stored during this process's runs."""
    with _kept_lock:
        _kept[0] += 1


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
        count = _kept[0]
        raise Interrupted(
            f"interrupted: {count} answer{'s' if count != 1 else ''} received in this process are kept in "
            "the response store; run the same map again to resume without paying for them twice."
        ) from None


def _install_excepthook() -> None:
    previous = sys.excepthook
    if getattr(previous, "mapgen", False):
        return

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if isinstance(value, Interrupted):
            print(f"mapgen: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    excepthook.mapgen = True  # type: ignore[attr-defined]  # a mark on the function: installed once
    sys.excepthook = excepthook


def watch_parent() -> None:
    """In a forked ``num_proc`` worker, start (once) a thread that ends the worker when its parent dies,
    so that killing a map's parent stops every request. The main process is left alone."""
    pid = os.getpid()
    if pid == _main_pid or _watched["pid"] == pid:
        return
    _watched["pid"] = pid
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)

        event_loop.interrupt()
        os._exit(1)

    threading.Thread(target=watch, name="mapgen-parent-watch", daemon=True).start()
