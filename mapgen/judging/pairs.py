"""The judge check's shipped set: prompts, each with a known better and worse answer, written by mapgen.

``data/pairs.jsonl`` holds one pair a line, with the fields ``id``, ``category`` (``arithmetic``,
``units``, ``dates``, ``capitals``, ``code``, ``instructions``), ``prompt``, ``better``, ``worse`` and
``check`` (how the better answer was verified right and the worse one wrong). ``data/make_pairs.py``
writes it and checks every pair as it does (Python's integers, exact conversion factors, ``datetime``, the
code snippets run against test cases, a checking function per instruction).

Example:
    >>> pairs = load_pairs()
    >>> len(pairs) >= 100, sorted({p["category"] for p in pairs})[:2]
    (True, ['arithmetic', 'capitals'])
    >>> [p["id"] for p in sample_pairs(pairs, 3)]
    ['arithmetic-13', 'capitals-10', 'code-03']
"""

from __future__ import annotations

import json
import random
from importlib import resources

FIELDS = ("id", "category", "prompt", "better", "worse", "check")
"""The fields of every pair."""


def load_pairs() -> list[dict[str, str]]:
    """Every pair of the shipped set, in the file's order (by category, then number)."""
    text = (resources.files("mapgen.judging") / "data" / "pairs.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sample_pairs(pairs: list[dict[str, str]], size: int | None, seed: int = 0) -> list[dict[str, str]]:
    """``size`` pairs drawn evenly across the categories (each category's pairs shuffled with ``seed``,
    then taken in turn), in the set's order; all of them when ``size`` is ``None`` or not smaller.

    Raises ``TypeError`` for a size that is no whole number, ``ValueError`` for one below 1.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise TypeError(f"sample must be a whole number of pairs, got {size!r}")
    if size is None or size >= len(pairs):
        return list(pairs)
    if size < 1:
        raise ValueError(f"sample must be at least 1 pair, got {size}")
    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, str]]] = {}
    for one in pairs:
        by_category.setdefault(one["category"], []).append(one)
    queues = []
    for category in sorted(by_category):
        members = by_category[category][:]
        rng.shuffle(members)
        queues.append(members)
    chosen: set[str] = set()
    while len(chosen) < size:
        for queue in queues:
            if queue and len(chosen) < size:
                chosen.add(queue.pop()["id"])
    return [one for one in pairs if one["id"] in chosen]
