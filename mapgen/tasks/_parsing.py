"""Tolerant parsing helpers shared by the built-in tasks (and usable by yours).

Models answer in many near-misses of the format they were asked for: markdown bold, code fences, blank
lines, ``Rating: 4/5``, ``N/A``, blocks in another order, fewer blocks than texts, JSON cut off by the
token limit. These helpers accept all of those; what they cannot read raises :class:`ParseError`.

Example:
    >>> parse_score("**4/5**", 1, 5)
    4.0
    >>> parse_score("N/A", 1, 5) is None
    True
    >>> numbered_blocks("Text 2: good\\n\\nText 1: bad")
    {2: 'good', 1: 'bad'}
"""

from __future__ import annotations

import json
import re
from typing import Any

from mapgen.tasks.base import ParseError

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_NOT_APPLICABLE = re.compile(r"^\W*(n\s*/\s*a|na|none|null|not applicable|-+)\W*$", re.IGNORECASE)


def strip_markdown(text: str) -> str:
    """``text`` without bold/italic markers, heading hashes and code fences, with ``\\n`` line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"^```[\w-]*\s*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    text = re.sub(r"^[ \t]*#{1,6}[ \t]*", "", text, flags=re.MULTILINE)
    return text.replace("**", "")


def parse_score(value: Any, low: float, high: float) -> float | None:
    """A score from ``value``: a number, or text such as ``4``, ``**4**``, ``4/5``, ``4 out of 5``,
    ``[RESULT] 4``, ``Score: 4.5``. ``N/A`` (and ``None``) give ``None``; anything else, or a number
    outside ``[low, high]``, raises :class:`ParseError`.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = strip_markdown(str(value)).strip()
        if not text or _NOT_APPLICABLE.match(text):
            return None
        match = re.search(_NUMBER, text)
        if match is None:
            raise ParseError(f"no number in {text[:40]!r}")
        number = float(match.group())
        # "8/10" on a 1-to-5 scale, say: rescale when the answer states its own denominator.
        out_of = re.match(rf"\s*(?:/|out of)\s*({_NUMBER})", text[match.end() :])
        if out_of and float(out_of.group(1)) not in (0, high) and not low <= number <= high:
            number = low + (number / float(out_of.group(1))) * (high - low)
    if not low <= number <= high:
        raise ParseError(f"score {number:g} is outside {low:g} to {high:g}")
    return number


def load_json(text: str) -> Any:
    """The JSON value in ``text`` (bare, in a code fence, or after some prose), or ``None``."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    candidates = [text, fenced.group(1)] if fenced else [text]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return value


def json_fields(text: str, key: str) -> list[str]:
    """Every value of ``"key": ...`` in ``text``, in order, read even from JSON cut off mid-way.

    Example:
        >>> json_fields('{"ratings": [{"rating": 4, "rationale": "ok"}, {"rating": 2, "ratio', "rating")
        ['4', '2']
    """
    pattern = rf'"{re.escape(key)}"\s*:\s*(?:"((?:[^"\\]|\\.)*)"?|([^,}}\]\s]+))'
    values = []
    for match in re.finditer(pattern, text):
        if match.group(1) is not None:
            try:
                values.append(json.loads(f'"{match.group(1)}"'))
            except ValueError:
                values.append(match.group(1))
        else:
            values.append(match.group(2))
    return values


_HEADER = re.compile(
    r"^[ \t>*_#-]*(?:output\s+for\s+|rating\s+for\s+|evaluation\s+(?:of|for)\s+)?"
    r"(?:text|response|answer|output|generation|assistant|instruction)\s*#?\s*(\d+)\b[^\n]*?(?::|$)"
    r"|^[ \t]*\[(\d+)\]",
    re.IGNORECASE | re.MULTILINE,
)


def numbered_blocks(text: str) -> dict[int, str]:
    """Blocks introduced by ``Text 1``, ``#### Output for Text 2``, ``Response 3:``, ``[4]`` and the
    like, keyed by their number (first occurrence wins), in the order they appear."""
    text = strip_markdown(text)
    headers = list(_HEADER.finditer(text))
    if not headers:
        return {}
    blocks: dict[int, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        number = int(header.group(1) or header.group(2))
        end = following.start() if following else len(text)
        blocks.setdefault(number, text[header.end() : end].strip())
    return blocks


def labelled_field(text: str, names: tuple[str, ...], *, multiline: bool = False) -> str | None:
    """The value after ``Name:`` (any of ``names``, any case, markdown ignored) in ``text``, or ``None``.

    With ``multiline``, the value runs to the next ``Word:`` label or the end; else to the line end.

    Example:
        >>> labelled_field("**Rating**: 4\\nRationale: clear\\nand short", ("rating",))
        '4'
        >>> labelled_field("Rating: 4\\nRationale: clear\\nand short", ("rationale",), multiline=True)
        'clear\\nand short'
    """
    text = strip_markdown(text)
    alternatives = "|".join(re.escape(name) for name in names)
    match = re.search(
        rf"(?:^|\n)[ \t>*_-]*(?:{alternatives})[ \t]*(?:[:=\-]|\bis\b)[ \t]*", text, re.IGNORECASE
    )
    if match is None:
        return None
    rest = text[match.end() :]
    if not multiline:
        return rest.split("\n", 1)[0].strip()
    next_label = re.search(r"\n[ \t>*_-]*[A-Z][\w &/']{0,40}:", rest)
    return (rest[: next_label.start()] if next_label else rest).strip()


def list_items(text: str) -> list[str]:
    """The items of a numbered or bulleted list (or one item per non-empty line), without their markers
    and without lead-in lines such as ``Here are five instructions:``."""
    items = []
    for line in strip_markdown(text).split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        item = re.sub(r"^(?:\d+[.)]|[-*•]|\(\d+\)|\[\d+\])\s*", "", stripped).strip()
        if not item or (item.endswith(":") and item == stripped):
            continue
        items.append(item)
    return items


def one_line(text: str | None) -> str | None:
    """``text`` stripped, or ``None`` when it is empty."""
    if text is None:
        return None
    text = str(text).strip()
    return text or None
