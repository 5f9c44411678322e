"""What a map wrote, told as it is: answers, failures by kind, requests sent, answers reused.

The ``mapgen`` command prints these lines after a run; they are plain functions of the dataset and of
:data:`mapgen.counters` taken before and after the map, so a notebook can print the same.

Example:
    >>> failures_by_kind(["http_429: slow down", None, "parse: no rating", "parse: empty"])
    Counter({'parse': 2, 'http_429': 1})
    >>> describe_failures(failures_by_kind(["http_429: slow down", "parse: no rating", "parse: empty"]))
    '3 (parse 2, http_429 1)'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mapgen.core.units import NANO_USD, format_cost, format_usd
from mapgen.errors import error_kind

UNCLASSIFIED = "other"
"""The kind shown for an error text that does not start with a kind code."""

# A labelling error's part about one text: "parse: text 2: ..." (its kind, then the text's number).
_TEXT_PART = re.compile(r"^[a-z0-9_]+: text (\d+): ")


def failures_by_kind(errors: Iterable[str | None]) -> Counter[str]:
    """How many failed answers of each kind (:mod:`mapgen.errors`) an error column's values hold."""
    return Counter(error_kind(error) or UNCLASSIFIED for error in errors if error is not None)


def describe_failures(kinds: Counter[str]) -> str:
    """``"3 (parse 2, http_429 1)"``, most frequent kind first; ``"0"`` when nothing failed."""
    total = sum(kinds.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common()) + ")"


def rating_failures(generations: list[Any], ratings: list[Any], error: str | None) -> Counter[str]:
    """The kinds of one row's missing ratings: one per generation that has a text but no rating.

    A labelling error covers a row; its ``"; "``-separated parts each start with their kind and may name
    a text (``"parse: text 2: ..."``), else the row's first kind applies to every missing rating.

    Example:
        >>> rating_failures(["a", "b", None], [4.0, None, None], "parse: text 2: no rating")
        Counter({'parse': 1})
    """
    parts = [part for part in (error or "").split("; ") if part]
    by_text: dict[int, str] = {}
    row_kind = None
    for part in parts:
        match = _TEXT_PART.match(part)
        kind = error_kind(part) or UNCLASSIFIED
        if match:
            by_text[int(match.group(1)) - 1] = kind
        row_kind = row_kind or kind
    missing = [
        i
        for i, text in enumerate(generations or [])
        if text is not None and (ratings is None or i >= len(ratings) or ratings[i] is None)
    ]
    return Counter(by_text.get(i, row_kind or UNCLASSIFIED) for i in missing)


@dataclass(frozen=True)
class RunCounts:
    """What one map moved :data:`mapgen.counters` by (``requests``, ``reused``, ``failed``, ``retries``),
    and whether ``datasets`` served it from its cache.

    ``datasets`` returns a map it computed before from its cache files without calling the function:
    then no counter moves, and the cache files it returns were written before the map started. A map
    whose function ran moves a counter for every row (a request, a reused answer, or a failure).

    Example:
        >>> same = {"requests": 2, "reused": 0, "failed": 0, "retries": 0}
        >>> RunCounts.between(same, same, cache_files_predate=True).lines(rows=4, answers=8)[1]
        ('answers reused', "all 8: this map came whole from datasets' cache (nothing was sent or re-read)")
    """

    moved: Mapping[str, int]
    cache_files_predate: bool = False
    """Whether the map returned cache files that all existed before it started (none: ``False``)."""

    @classmethod
    def between(
        cls, before: Mapping[str, int], after: Mapping[str, int], *, cache_files_predate: bool = False
    ) -> RunCounts:
        return cls({name: after[name] - before.get(name, 0) for name in after}, cache_files_predate)

    def __getitem__(self, name: str) -> int:
        return self.moved.get(name, 0)

    def from_datasets_cache(self, rows: int) -> bool:
        """Whether a map that returned ``rows`` rows was served whole from datasets' cache."""
        return rows > 0 and self.cache_files_predate and not any(self.moved.values())

    def lines(
        self, *, rows: int, answers: int, failed: int = 0, retry: str = "pass --retry-failed"
    ) -> list[tuple[str, str]]:
        """``requests sent``, ``answers reused`` and ``retries``, over every ``num_proc`` worker.

        A map served from datasets' cache keeps the ``failed`` answers it had: the line says so, and
        ``retry``, how to send them again (in Python: ``ds.map(..., load_from_cache_file=False)``).
        """
        if self.from_datasets_cache(rows):
            reused = f"all {answers}: this map came whole from datasets' cache (nothing was sent or re-read)"
            if failed:
                reused += f"; its {failed} failed answer(s) were not retried: {retry} to send them again"
            return [("requests sent", "0"), ("answers reused", reused), ("retries", "0")]
        if rows > 0 and not any(self.moved.values()):
            # The function ran where this process's counters cannot see: workers started with spawn.
            unknown = "not counted (the num_proc workers were not forked from this process)"
            return [("requests sent", unknown), ("answers reused", unknown), ("retries", unknown)]
        return [
            ("requests sent", str(self["requests"])),
            ("answers reused", f"{self['reused']} from the response store"),
            ("retries", str(self["retries"])),
            *(
                [("re-asks", f"{self['reasks']} (answers that failed their answer model)")]
                if self["reasks"]
                else []
            ),
            *self.spend_lines(),
        ]

    def spend_lines(self) -> list[tuple[str, str]]:
        """``tokens`` and ``cost`` of the answers this map received (reused ones cost nothing now); a cost
        that leaves out answers without a price (``unpriced``: no usage reported) says so.

        Example:
            >>> moved = {"requests": 3, "prompt_tokens": 1200, "completion_tokens": 300, "cost": 450_000,
            ...          "priced": 2}
            >>> RunCounts(moved).spend_lines()
            [('tokens', '1,200 prompt + 300 completion'), ('cost', '$0.0004500')]
            >>> RunCounts({**moved, "unpriced": 1}).spend_lines()[1]
            ('cost', '$0.0004500 (+1 unpriced)')
        """

        tokens = f"{self['prompt_tokens']:,} prompt + {self['completion_tokens']:,} completion"
        if self["priced"]:
            cost = format_cost(self["cost"] * NANO_USD, self["unpriced"])
        elif self["requests"]:
            cost = "unknown: no price for this model (set price_per_million=(input, output) on the LLM)"
        else:
            cost = format_usd(0)
        return [("tokens", tokens), ("cost", cost)]


def shorten(values: list[Any], width: int = 60) -> str:
    """A list cell as one short line: floats to 2 decimals, long texts cut with an ellipsis.

    Example:
        >>> shorten([1.0, None, "a  long\\ntext"])
        '1.00 | None | a long text'
    """

    def one(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        text = " ".join(str(value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    return " | ".join(one(v) for v in values)


def table(lines: list[tuple[str, Any]]) -> str:
    """Name/value lines with the values aligned (two spaces at least between them)."""
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)
