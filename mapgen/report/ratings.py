"""The distribution of a dataset's ratings, for its card: counts per score, a small SVG bar chart, and
the same counts as a Markdown table (the text a card shows where the picture is not beside it).

The chart is plain SVG text written here (no plotting library): a few hundred bytes, rendered by the Hub
and by any browser. Each bar is a ``<rect class="bar">`` whose ``<title>`` says its score and count
(``rating 4: 7 answers``), shown on hover.

Example:
    >>> counts = RatingCounts.of("rating", (1, 5), [[4.0, 5.0], [4.0, None], [3.47]])
    >>> counts.counts, counts.missing, counts.rounded
    ({1: 0, 2: 0, 3: 1, 4: 2, 5: 1}, 1, True)
    >>> print("\\n".join(counts.markdown()))  # doctest: +NORMALIZE_WHITESPACE
    | `rating` | answers | |
    |---|---|---|
    | 1 | 0 | |
    | 2 | 0 | |
    | 3 | 1 | ██████████ |
    | 4 | 2 | ████████████████████ |
    | 5 | 1 | ██████████ |
    | no rating | 1 | |
    >>> 'rating 4: 2 answers' in rating_svg([counts])
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

IMAGE = "rating_distribution.svg"
"""The chart's file name, beside the card's ``README.md``."""

_BAR_CHARS = 20  # the longest text bar of the Markdown table
_WIDTH, _HEIGHT, _TOP, _BOTTOM, _SIDE = 360, 170, 40, 24, 16  # one panel's size and margins, in pixels
_COLOUR = "#4c78a8"


@dataclass(frozen=True)
class RatingCounts:
    """How many answers got each whole score of ``scale`` in the rating column ``column``.

    ``counts``: score -> answers, every score of the scale listed (0 where none); a rating that is not
    whole (a probability-weighted one, 3.47) counts at its nearest score (half up), and ``rounded`` says
    that some did. ``missing``: the answers without a rating (``None``: the answer or its rating failed).
    """

    column: str
    scale: tuple[int, int]
    counts: dict[int, int]
    missing: int
    rounded: bool

    @classmethod
    def of(cls, column: str, scale: tuple[int, int], values: Iterable[Any]) -> RatingCounts:
        """Count ``values``: ratings (floats or ``None``), or lists of them, nested to any depth."""
        low, high = scale
        counts = dict.fromkeys(range(low, high + 1), 0)
        missing, rounded = 0, False
        for value in _flat(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                missing += 1
                continue
            score = math.floor(value + 0.5)
            rounded = rounded or score != value
            counts[score] = counts.get(score, 0) + 1  # off the scale: a bar of its own, never dropped
        return cls(column, (low, high), dict(sorted(counts.items())), missing, rounded)

    @property
    def rated(self) -> int:
        """Answers with a rating."""
        return sum(self.counts.values())

    def markdown(self) -> list[str]:
        """The counts as Markdown table lines, each with a bar of ``█`` as long as its share of the
        largest count (up to 20)."""
        most = max(self.counts.values(), default=0) or 1
        lines = [f"| `{self.column}` | answers | |", "|---|---|---|"]
        for score, count in self.counts.items():
            bar = "█" * round(_BAR_CHARS * count / most)
            lines.append(f"| {score} | {count} | {bar} |" if bar else f"| {score} | {count} | |")
        if self.missing:
            lines.append(f"| no rating | {self.missing} | |")
        return lines


def rating_svg(charts: list[RatingCounts]) -> str:
    """An SVG picture of ``charts``: one bar chart per rating column, stacked; each bar's height is its
    count over the panel's largest count, its score below it and its count above it."""
    height = _HEIGHT * len(charts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    for number, chart in enumerate(charts):
        parts += _panel(chart, number * _HEIGHT)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(chart: RatingCounts, top: int) -> list[str]:
    name = escape(chart.column)
    notes = [f"{chart.missing} without a rating"] if chart.missing else []
    notes += ["weighted ratings at their nearest score"] if chart.rounded else []
    parts = [f'<text x="{_SIDE}" y="{top + 18}" font-weight="bold">{name}: {chart.rated} answers</text>']
    if notes:
        parts.append(
            f'<text x="{_SIDE}" y="{top + 33}" font-size="11" fill="#555555">{"; ".join(notes)}</text>'
        )
    most = max(chart.counts.values(), default=0) or 1
    slot = (_WIDTH - 2 * _SIDE) / max(len(chart.counts), 1)
    base = top + _HEIGHT - _BOTTOM
    room = _HEIGHT - _TOP - _BOTTOM - 14  # under the counts written above the bars
    for index, (score, count) in enumerate(chart.counts.items()):
        x = _SIDE + index * slot + slot * 0.15
        width, bar = slot * 0.7, room * count / most
        middle = x + width / 2
        parts += [
            f'<rect class="bar" x="{x:.1f}" y="{base - bar:.1f}" width="{width:.1f}" height="{bar:.1f}" '
            f'fill="{_COLOUR}"><title>{name} {score}: {count} answers</title></rect>',
            f'<text x="{middle:.1f}" y="{base - bar - 4:.1f}" text-anchor="middle">{count}</text>',
            f'<text x="{middle:.1f}" y="{base + 16:.1f}" text-anchor="middle">{score}</text>',
        ]
    parts.append(f'<line x1="{_SIDE}" y1="{base}" x2="{_WIDTH - _SIDE}" y2="{base}" stroke="#888888"/>')
    return parts


def _flat(values: Iterable[Any]) -> Iterable[Any]:
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flat(value)
        else:
            yield value
