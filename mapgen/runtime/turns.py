"""Whose turn it is to prepare requests: one batch of a process at a time.

Preparing a batch (prompts, store keys, claims) is CPU-bound Python: two batches preparing at once (the
batches ``datasets``' async map runs side by side, or a batch's first rows and the rest, see
:meth:`mapgen.mapping.map_function.MapFunction._process_overlapped`) only slow each other down, and starve the
event loop thread that sends the requests already prepared. So a batch prepares in its *turn*, and its turn
ends the moment it hands its requests to the backend (or waits for another run's answers, or returns):
then the next batch prepares while these are in flight.

Example:
    >>> with turn() as mine:
    ...     handing_over()  # the requests go to the backend: the next batch may prepare
    ...     mine.over.is_set()
    True
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_preparing = threading.Lock()
"""Held by the batch whose turn it is."""


def _after_fork() -> None:
    global _preparing
    _preparing = threading.Lock()  # a forked worker (num_proc) starts with no batch of its own preparing


os.register_at_fork(after_in_child=_after_fork)


class Turn:
    """One batch's turn: ``over`` is set once it has handed its requests over."""

    def __init__(self, held: threading.Lock) -> None:
        self.over = threading.Event()
        self._held = held  # the lock it took (a forked worker has a new one)
        self._ending = threading.Lock()

    def end(self) -> None:
        with self._ending:
            if not self.over.is_set():
                self.over.set()
                self._held.release()


_current: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("mapgen_turn", default=None)


@contextmanager
def turn() -> Iterator[Turn]:
    """Wait for this batch's turn to prepare, and end it on leaving the block if it has not ended yet.
    Within a turn still running (a map function called while another prepares), the same turn."""
    current = _current.get()
    if current is not None and not current.over.is_set():
        yield current
        return
    held = _preparing
    held.acquire()
    mine = Turn(held)
    token = _current.set(mine)
    try:
        yield mine
    finally:
        _current.reset(token)
        mine.end()


def handing_over() -> None:
    """The current batch hands its requests over (or waits for another run's): its turn ends."""
    current = _current.get()
    if current is not None:
        current.end()
