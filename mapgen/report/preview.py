"""A few rows of a dataset as Markdown, for its card: one small table per row, a line per column, long
texts cut with an ellipsis and every text escaped, so that what a model wrote (Markdown, HTML, a table
of its own) shows as text and cannot break the card's layout.

Any URL in a shown text has its credentials masked (:func:`mapgen.core.urls.mask_url`): a dataset's own
columns hold no keys, but a text a user put in one could.

Example:
    >>> print(cell(["A *bold* <b>claim</b> | yes", None]))
    (1) A \\*bold\\* &lt;b&gt;claim&lt;/b&gt; \\| yes<br>(2) None
    >>> cell([4.0, 3.4712, None]), cell("word " * 50, width=20)
    ('4, 3.47, None', 'word word word word…')
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from mapgen.core.urls import mask_url

WIDTH = 200
"""The longest text a cell shows, in characters, before it is cut with ``…``."""

ITEMS = 5
"""The most entries of a list a cell shows; the rest are counted."""

_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")  # Markdown's inline syntax, the table's ``|``, the Hub's math


def escape(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: HTML's ``& < >`` as entities, inline syntax
    (``* _ ` [ ] ~ $ \\``) and the cell separator ``|`` with a backslash."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def short(text: str, width: int = WIDTH) -> str:
    """``text`` on one line (every run of whitespace one space), its URL credentials masked, cut to
    ``width`` characters with ``…`` where it was longer."""
    text = " ".join(mask_url(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def cell(value: Any, width: int = WIDTH) -> str:
    """One column's value as a Markdown table cell: a text cut and escaped; numbers short (``4``,
    ``3.47``); a list of numbers on one line, a list of texts one numbered entry per line (at most
    :data:`ITEMS`); anything else (a conversation, a struct) as compact JSON, cut."""
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return escape(short(value, width))
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (int, float)) for v in value):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, str) for v in value):
        shown = [f"({i}) {cell(v, width)}" for i, v in enumerate(value[:ITEMS], 1)]
        more = [f"… ({len(value) - ITEMS} more)"] if len(value) > ITEMS else []
        return "<br>".join(shown + more)
    return escape(short(json.dumps(value, ensure_ascii=False, default=str), width))


def example_rows(ds: Any, *, rows: int = 3, leave_out: Collection[str] = ()) -> list[str]:
    """Markdown lines showing the first ``rows`` rows of ``ds`` (a ``datasets.Dataset``): a heading and a
    ``| column | value |`` table each, without the columns in ``leave_out`` nor those empty (``None``, or
    only ``None`` entries) in every row shown. ``[]`` for an empty dataset."""
    shown = ds.select(range(min(rows, len(ds)))).select_columns(
        [c for c in ds.column_names if c not in leave_out]
    )
    records = shown.to_list()
    kept = [c for c in shown.column_names if any(not _empty(r[c]) for r in records)]
    lines: list[str] = []
    for number, record in enumerate(records, 1):
        lines += ["", f"**Row {number}**", "", "| column | value |", "|---|---|"]
        lines += [f"| `{column}` | {cell(record[column])} |" for column in kept]
    return lines


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value == value else "NaN"


def _empty(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_empty(v) for v in value)
    if isinstance(value, Mapping):
        return all(_empty(v) for v in value.values())
    return value is None
