"""Python's cyclic garbage collector paused while a batch is in flight.

A batch's prompts, requests and answers all live until it returns, so the collector's young passes promote
them to the oldest generation, and every ~1,000 rows a full pass scans the whole heap (``datasets``,
``pyarrow``, ``aiohttp``: some 130,000 objects, ~100 ms on a 2-core machine). Meanwhile no request is sent
and the concurrency window drains. The sending makes almost no reference cycles (reference counting frees
it), so mapgen pauses the collector for the length of a batch, as :mod:`timeit` does for a timing, and
resumes it when the last batch in flight returns. Memory freed by reference counting is not affected.

Example:
    >>> import gc
    >>> with paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = [0]
"""Batches in flight in this process (``datasets``' async map runs several, one thread each)."""
_resume = [False]
"""Whether the collector was on when the first of them began (a caller that turned it off keeps it off)."""


def _after_fork() -> None:
    """A worker forked while a batch was in flight (``num_proc``) has none of its own: the collector on."""
    global _lock
    _lock = threading.Lock()
    if _depth[0] and _resume[0]:
        gc.enable()
    _depth[0] = 0


os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def paused() -> Iterator[None]:
    """Pause automatic cyclic collection for the ``with`` block (nested and concurrent blocks count)."""
    with _lock:
        if _depth[0] == 0:
            _resume[0] = gc.isenabled()
            gc.disable()
        _depth[0] += 1
    try:
        yield
    finally:
        with _lock:
            _depth[0] -= 1
            if _depth[0] == 0 and _resume[0]:
                gc.enable()
