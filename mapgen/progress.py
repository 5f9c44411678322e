"""Counters of what this process sent and got, for summaries beyond datasets' row progress bar."""

from __future__ import annotations

import threading
from collections import Counter


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
