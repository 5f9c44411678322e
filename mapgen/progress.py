"""Counters of what this process sent and got, for summaries beyond datasets' row progress bar."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any


class Counters:
    """Thread-safe running totals: ``requests`` sent, ``failed`` answers, ``retries``, ``reused`` answers.

    Example:
        >>> c = Counters()
        >>> c.add(requests=3, failed=1)
        >>> c.snapshot()["requests"]
        3
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()

    def add(self, **amounts: int) -> None:
        with self._lock:
            self._totals.update(amounts)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": 0, "failed": 0, "retries": 0, "reused": 0, **self._totals}

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()


counters = Counters()
"""This process's totals."""


_MAIN_PID = os.getpid()


class RequestProgress:
    """A progress bar of the requests this process sent and got answered, beside datasets' row bar.

    Rows can take several requests each (``num_generations``, one judge call per text) and answers can
    come from the response store, so the bar counts requests and shows what ``counters`` holds:
    answers reused, retries, failures. It appears in the main process only (``num_proc`` workers would
    interleave their bars) and follows ``datasets.disable_progress_bars()``.
    """

    def __init__(self) -> None:
        self._bar: Any = None
        self._lock = threading.Lock()
        self._last_postfix = 0.0

    def expect(self, count: int) -> None:
        """``count`` more requests are on their way."""
        if not self._enabled():
            return
        with self._lock:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=0, desc="Requests", unit=" req", dynamic_ncols=True)
            self._bar.total += count
            self._bar.refresh()

    def advance(self) -> None:
        """One request was answered (or failed for good)."""
        bar = self._bar
        if bar is None:
            return
        with self._lock:
            bar.update(1)
            now = time.monotonic()
            if now - self._last_postfix > 0.5 or bar.n >= bar.total:
                totals = counters.snapshot()
                bar.set_postfix(reused=totals["reused"], retries=totals["retries"], failed=totals["failed"])
                self._last_postfix = now

    def close(self) -> None:
        """Close the bar; the next request starts a new one."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    @staticmethod
    def _enabled() -> bool:
        from datasets.utils.logging import is_progress_bar_enabled

        return os.getpid() == _MAIN_PID and is_progress_bar_enabled()


request_progress = RequestProgress()
"""This process's request bar."""
