"""Tolerant parsing helpers: what the built-in tasks read answers with, and yours can too.

Models answer in many near-misses of the format they were asked for: markdown bold, code fences, blank
lines, ``Rating: 4/5``, ``N/A``, blocks in another order, fewer blocks than texts, JSON cut off by the
token limit, JSON with a trailing comma or single quotes (:func:`parse_model` repairs those with
``json-repair``). These helpers accept all of those; what they cannot read raises :class:`ParseError`, and
what they could only guess at (a range such as ``3-4``, a score on another scale such as ``4/5`` where
the scale is 1 to 10) raises :class:`AmbiguousScore`.

The API: :func:`parse_model` (an answer validated by a pydantic model; :func:`noting_repairs` tells which
it read only after repairing their JSON), :func:`json_text` and
:func:`load_json` (JSON, fenced or in prose), :func:`parse_score`, :func:`read_score`,
:func:`score_or_none`, :func:`score_list`, :func:`labelled_scores` (scores), :func:`labelled_field`,
:func:`labelled_lines`, :func:`numbered_blocks`, :func:`numbered_spans`, :func:`list_items`,
:func:`json_fields`, :func:`strip_markdown`, :func:`one_line`, :func:`agree` (the rest), and the errors
:class:`ParseError`, :class:`InvalidOutput`, :class:`AmbiguousScore`.

Example:
    >>> parse_score("**4/5**", 1, 5)
    4.0
    >>> parse_score("N/A", 1, 5) is None
    True
    >>> numbered_blocks("Text 2: good\\n\\nText 1: bad")
    {2: 'good', 1: 'bad'}
"""

import contextvars
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mapgen.errors import AmbiguousScore, InvalidOutput, ParseError

__all__ = [
    "SCORE_TEXT",
    "AmbiguousScore",
    "InvalidOutput",
    "ParseError",
    "agree",
    "json_fields",
    "json_text",
    "labelled_field",
    "labelled_lines",
    "labelled_scores",
    "list_items",
    "load_json",
    "noting_repairs",
    "numbered_blocks",
    "numbered_spans",
    "one_line",
    "parse_model",
    "parse_score",
    "read_score",
    "score_list",
    "score_or_none",
    "strip_markdown",
    "validation_message",
]


_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_NOT_APPLICABLE = re.compile(r"^\W*(n\s*/\s*a|na|none|null|not applicable|-+)\W*$", re.IGNORECASE)
_LEADING_NA = re.compile(r"^[^\w\n]*(?:n\s*/\s*a|not applicable)\b", re.IGNORECASE)
# Leading punctuation and markdown, but not a sign that belongs to the number ("-1" is out of scale).
_PREFIX = r"(?:[^\w+\-]|[+\-](?!\d))*"
_LEADING_SCORE = re.compile(
    rf"{_PREFIX}(?:\[?\s*(?:overall\s+)?(?:score|rating|result|grade)\s*\]?\s*(?:[:=]|\bis\b)?{_PREFIX})?"
    rf"({_NUMBER})(?![\d.]\d)",
    re.IGNORECASE,
)
# "/ 10", "out of 10": the scale the judge says its score is on.
_OUT_OF_TEXT = rf"\s*(?:/|out\s+of)\s*{_NUMBER}(?![\d.]\d)"
_OUT_OF = re.compile(rf"\s*(?:/|out\s+of)\s*({_NUMBER})(?![\d.]\d)", re.IGNORECASE)
_PERCENT = re.compile(r"\s*(?:%|percent\b)", re.IGNORECASE)
# "3-4", "3 - 4", "3 to 4", "3 or 4", "3~4": a range or an either/or, not one score. A spaced dash before
# a count ("4 - 3 facts are wrong") is a comment after the score.
_ALTERNATIVE_TEXT = (
    r"(?:[-\u2013\u2014~]\s*|\s*\b(?:to|or)\b\s*"
    r"|\s+[-\u2013\u2014~]\s*(?![\d.]*\s+(?!out\b|or\b|to\b)[a-z]))"
)
_RANGE = re.compile(rf"{_ALTERNATIVE_TEXT}[-+]?\d", re.IGNORECASE)
_ONE_SCORE_TEXT = rf"{_NUMBER}(?:{_OUT_OF_TEXT}|\s*(?:%|percent\b))?"
SCORE_TEXT = rf"(?:n\s*/\s*a\b|{_ONE_SCORE_TEXT}(?:{_ALTERNATIVE_TEXT}{_ONE_SCORE_TEXT})*)"
"""A regular expression (text, no groups) for the way a score is written in an answer: ``4``,
``7.5/10``, ``8 out of 10``, ``N/A``, and the ranges and either/ors that :func:`parse_score` refuses
(``3-4``, ``7 or 8``), so that a parser that captures a score with it hands the whole of it to
:func:`parse_score` (capturing only ``3`` of ``3-4`` would read a range as its first number)."""
_TOKEN_TEXT = rf"(?:n\s*/\s*a\b|{_ONE_SCORE_TEXT})"
_TOKEN = re.compile(_TOKEN_TEXT, re.IGNORECASE)
_SEPARATOR = r"(?:\s*[,;|]\s*|\s+)(?:and\s+)?"
_SCORE_LIST = re.compile(rf"[^\w\n+\-]*{_TOKEN_TEXT}(?:{_SEPARATOR}{_TOKEN_TEXT})*[\s.!]*", re.IGNORECASE)
_PAIR_TEXT = (
    r"(?:(?:answer|response|assistant|text|output|instruction)\s*#?\s*(\d+)\s*[:=]?|\[(\d+)\]\s*[:=]?"
    rf"|(\d+)\s*[:=])\s*({_TOKEN_TEXT})"
)
_LABELLED_PAIR = re.compile(_PAIR_TEXT, re.IGNORECASE)
_LABELLED_LIST = re.compile(rf"[^\w\n\[]*{_PAIR_TEXT}(?:{_SEPARATOR}{_PAIR_TEXT})*[\s.!]*", re.IGNORECASE)


def strip_markdown(text: str) -> str:
    """``text`` without bold/italic markers, heading hashes and code fences, with ``\\n`` line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"^```[\w-]*\s*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    text = re.sub(r"^[ \t]*#{1,6}[ \t]*", "", text, flags=re.MULTILINE)
    return text.replace("**", "")


def parse_score(value: Any, low: float, high: float) -> float | None:
    """A score from ``value``: a number, or text that starts with one, such as ``4``, ``**4**``, ``4/5``,
    ``4 out of 5``, ``[RESULT] 4``, ``Score: 4.5``, ``4 - clear``. ``N/A`` (and ``None``) give ``None``.

    The number must come first (after an optional ``Score:``/``Rating:``/``[RESULT]`` label): a number
    further in is the judge's reasoning, not its score. Text that does not start with a number, or a
    number outside ``[low, high]``, raises :class:`ParseError`. A range or an either/or (``4-5``,
    ``4 or 5``) and a score on another scale raise :class:`AmbiguousScore`: a score written with its
    scale (``x/N``, ``x out of N``) is read only when ``N`` is ``high``, and never rescaled, for a judge
    that scores on another scale than it was asked to is not followed by guessing what it meant.

    Example:
        >>> parse_score("Rating: 4 (3 facts checked)", 1, 5)
        4.0
        >>> parse_score("The text has 3 errors, so 2", 1, 5)
        Traceback (most recent call last):
        ...
        mapgen.errors.ParseError: no score at the start of 'The text has 3 errors, so 2'
        >>> parse_score("8/10", 1, 5)
        Traceback (most recent call last):
        ...
        mapgen.errors.AmbiguousScore: score '8/10' is on another scale (out of 10), not 1 to 5
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _in_scale(float(value), low, high)
    number, _ = _scan(strip_markdown(str(value)).strip(), low, high)
    return None if number is None else _in_scale(number, low, high)


def read_score(value: Any, low: float, high: float) -> tuple[float | None, str]:
    """The score at the start of ``value`` and the text after it (a comment, a rationale), by the rules
    of :func:`parse_score`, for a parser that reads both. The score is ``None`` (and all of ``value`` the
    text after it) where ``value`` does not start with one; ``None`` too where it is ``N/A`` or out of
    scale. A range or a score on another scale still raises :class:`AmbiguousScore`.

    Example:
        >>> read_score("8/10 - right", 1, 10)
        (8.0, ' - right')
        >>> read_score("12 - too high", 1, 10), read_score("clear", 1, 10)
        ((None, ' - too high'), (None, 'clear'))
    """
    if value is None or isinstance(value, bool):
        return None, ""
    if isinstance(value, (int, float)):
        return score_or_none(value, low, high), ""
    text = strip_markdown(str(value)).strip()
    try:
        number, end = _scan(text, low, high)
    except AmbiguousScore:
        raise
    except ParseError:
        return None, text
    rest = text[end:]
    if number is None or not low <= number <= high:
        return None, rest
    return number, rest


def score_or_none(value: Any, low: float, high: float) -> float | None:
    """:func:`parse_score`, with ``None`` for a value that is not a score or is out of scale (one bad
    text among several must not lose the others), but :class:`AmbiguousScore` still raised.

    Example:
        >>> score_or_none("11", 1, 10), score_or_none("great", 1, 10), score_or_none("7/10", 1, 10)
        (None, None, 7.0)
    """
    try:
        return parse_score(value, low, high)
    except AmbiguousScore:
        raise
    except ParseError:
        return None


def _scan(text: str, low: float, high: float) -> tuple[float | None, int]:
    """The number that starts ``text`` (markdown-free and stripped), unchecked against the scale's
    bounds, and where its score ends (after ``/N``); ``None`` for ``N/A``."""
    if not text or _NOT_APPLICABLE.match(text):
        return None, len(text)
    not_applicable = _LEADING_NA.match(text)
    if not_applicable:
        return None, not_applicable.end()
    match = _LEADING_SCORE.match(text)
    if match is None:
        raise ParseError(f"no score at the start of {text[:40]!r}")
    end = match.end()
    if _RANGE.match(text, end):
        raise AmbiguousScore(f"{text[:40]!r} is a range or an either/or, not one score")
    out_of = _OUT_OF.match(text, end)
    if out_of:
        end = out_of.end()
        if float(out_of.group(1)) != high:
            raise AmbiguousScore(
                f"score {text[match.start(1) : end]!r} is on another scale "
                f"(out of {float(out_of.group(1)):g}), not {low:g} to {high:g}"
            )
        if _RANGE.match(text, end):
            raise AmbiguousScore(f"{text[:40]!r} is a range or an either/or, not one score")
    elif percent := _PERCENT.match(text, end):
        raise AmbiguousScore(
            f"score {text[match.start(1) : percent.end()]!r} is a percentage, not {low:g} to {high:g}"
        )
    return float(match.group(1)), end


def _in_scale(number: float, low: float, high: float) -> float:
    if not low <= number <= high:
        raise ParseError(f"score {number:g} is outside {low:g} to {high:g}")
    return number


def score_list(text: str) -> list[str] | None:
    """The scores of a line that holds scores and nothing else (``8 6``, ``8/10, 7/10``, ``9 and N/A``),
    in order; ``None`` when the line holds anything else (words, counts, reasoning).

    Example:
        >>> score_list("**8/10, 7**")
        ['8/10', '7']
        >>> score_list("Answer 1 has 3 errors") is None
        True
    """
    text = strip_markdown(text).strip()
    if not _SCORE_LIST.fullmatch(text):
        return None
    return _TOKEN.findall(text)


def labelled_scores(text: str) -> dict[int, str] | None:
    """The scores of a line that pairs each text's number with its score and holds nothing else
    (``Answer 1: 8, Answer 2: 6``, ``[1] 8 [2] 6``, ``1: 8; 2: 6``), by number; ``None`` otherwise.
    A number given two different scores raises :class:`ParseError`.

    Example:
        >>> labelled_scores("Assistant 1: 8/10, Assistant 2: 6")
        {1: '8/10', 2: '6'}
    """
    text = strip_markdown(text).strip()
    if not _LABELLED_LIST.fullmatch(text):
        return None
    found: dict[int, str] = {}
    for match in _LABELLED_PAIR.finditer(text):
        agree(found, int(match.group(1) or match.group(2) or match.group(3)), match.group(4))
    return found


def agree(found: dict[int, Any], key: int, value: Any, same: Any = None) -> None:
    """Record ``value`` for ``key`` in ``found``, raising :class:`ParseError` when ``key`` already has a
    different one: a judge that gives one text two scores is ambiguous, and neither is guessed.
    ``same`` compares values (default: equality of the values themselves)."""
    if key in found:
        a, b = (same(found[key]), same(value)) if same else (found[key], value)
        if a != b:
            raise ParseError(f"two different scores for text {key}: {found[key]!r} and {value!r}")
        return
    found[key] = value


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


def json_text(text: str) -> str:
    """The JSON part of ``text``: all of it, the inside of a ```` ```json ```` fence, or the value that
    starts at its first ``{`` or ``[`` after some prose. When none of those parses, the best guess (the
    fence's inside, else the text from its first brace), so that a validator reports the JSON error.

    Example:
        >>> json_text('Sure! ```json\\n{"a": 1}\\n``` Hope it helps.')
        '{"a": 1}'
        >>> json_text('Here: {"a": [1, 2]} and more')
        '{"a": [1, 2]}'
    """
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    candidates = [text, fenced.group(1).strip()] if fenced else [text]
    for candidate in candidates:
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return candidate
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        try:
            _, end = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            pass
        else:
            return text[start : start + end]
    return candidates[-1] if fenced or start < 0 else text[start:]


def parse_model(text: str, model: Any) -> Any:
    """The answer ``text`` validated as an instance of the pydantic ``model`` (its JSON bare, fenced, or
    after prose: :func:`json_text`), with pydantic's ``model_validate_json``.

    JSON that does not parse is repaired (``json-repair``: a trailing comma, single quotes, unquoted keys,
    Python's ``None``/``True``, a ``//`` comment, a missing comma or closing brace) and the repaired value
    validated in its place; an answer read so is noted (:func:`noting_repairs`). JSON that parses is never
    repaired, and no repair is made where there is nothing to repair from: an answer with no ``{`` or
    ``[``, one that repairs to an empty object, or one cut off inside a string, after a key, a ``:`` or a
    ``,``, or in a word (a value the model was still writing is no value). What follows the JSON once it
    closes (prose) is left out of the repair.

    Raises:
        InvalidOutput: the JSON is malformed (and cannot be repaired into an answer that validates) or
            does not validate; the message names each failing field (``rating: Input should be 1, 2, 3, 4
            or 5``), or the JSON error, at most 300 characters.

    Example:
        >>> from typing import Literal
        >>> from pydantic import BaseModel
        >>> class Verdict(BaseModel):
        ...     rating: Literal[1, 2, 3, 4, 5]
        ...     reason: str
        >>> parse_model('```json\\n{"rating": 4, "reason": "clear"}\\n```', Verdict)
        Verdict(rating=4, reason='clear')
        >>> parse_model("{'rating': 4, 'reason': 'clear',}", Verdict)  # repaired
        Verdict(rating=4, reason='clear')
        >>> parse_model('{"rating": 7, "reason": "clear"}', Verdict)
        Traceback (most recent call last):
        ...
        mapgen.errors.InvalidOutput: rating: Input should be 1, 2, 3, 4 or 5
    """
    from pydantic import ValidationError

    text = json_text(text)
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        failed = error
    # Strict mode makes a field with a default nullable: a null there stands for the absent field. And
    # llama-cpp-python's JSON grammar lets raw control characters (a newline) into strings, which
    # strict JSON refuses: the text they wrote is the value.
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        value = _repaired(text)  # JSON that does not parse: repaired, if it can be
        if value is None:
            raise InvalidOutput(validation_message(failed)) from None
        repaired = True
    else:
        repaired = False
    try:
        answer = model.model_validate(_without_nulls(value))
    except ValidationError:
        raise InvalidOutput(validation_message(failed)) from None  # the error as the answer stands
    notes = _REPAIRS.get()
    if repaired and notes is not None:
        notes.append(getattr(model, "__name__", repr(model)))
    return answer


_REPAIRS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("mapgen_repairs", default=None)


@contextmanager
def noting_repairs() -> Iterator[list[str]]:
    """A list that, within the block, gets the name of the model of each answer :func:`parse_model` read
    only after repairing its JSON: how a map function knows to write ``repaired: True`` in an answer's
    metadata. A block's notes are its enclosing block's too.

    Example:
        >>> from pydantic import BaseModel
        >>> class Point(BaseModel):
        ...     x: int
        >>> with noting_repairs() as repairs:
        ...     _ = parse_model('{"x": 1}', Point), parse_model("{x: 2,}", Point)
        >>> repairs
        ['Point']
    """
    notes: list[str] = []
    token = _REPAIRS.set(notes)
    try:
        yield notes
    finally:
        _REPAIRS.reset(token)
        outer = _REPAIRS.get()
        if outer is not None:
            outer.extend(notes)


_LITERALS = frozenset({"true", "false", "null", "True", "False", "None"})


def _repaired(text: str) -> Any:
    """The JSON value ``text`` (:func:`json_text`'s guess, which did not parse) stands for, repaired by
    ``json-repair``; ``None`` where there is nothing to repair from: no ``{`` or ``[``, a value cut off
    (:func:`_json_value`), an empty or scalar result."""
    value = _json_value(text)
    if value is None:
        return None
    import json_repair

    try:
        repaired = json_repair.loads(value)
    except Exception:  # a repair library that fails on odd input refuses it, as strict JSON did
        return None
    return repaired if isinstance(repaired, (dict, list)) and repaired else None


def _json_value(text: str) -> str | None:
    """The text of the (malformed) JSON value that starts at the first ``{`` or ``[`` of ``text``, up to
    where it closes (what follows is prose); ``None`` where there is none, or where it stops while still
    open after something that cannot end a value: inside a string, after a key, after ``{``, ``[``, ``:``
    or ``,``, or in a word that is no literal (``tru``): a value the model was still writing is no value.
    A number is taken as written.

    Example:
        >>> _json_value("Here: {'a': [1, 2],} Hope it's right"), _json_value('{"a": 1, "b": 2')
        ("{'a': [1, 2],}", '{"a": 1, "b": 2')
        >>> _json_value('{"a": 1, "b": "cut mid-wa') is None, _json_value('{"a": 1, "b"') is None
        (True, True)
    """
    first = re.search(r"[{\[]", text)
    if first is None:
        return None
    # open: the containers still open; last: where the last character outside strings' insides, comments
    # and space is; key: whether the last string is an object's key (it came after "{" or ",")
    open_, quote, last, key, i = "", "", -1, False, first.start()
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote, last = "", i
        elif char in "\"'":
            quote, key = char, open_[-1:] == "{" and text[last] in "{,"
        elif text.startswith(("//", "/*"), i):  # a comment: not part of a value
            close = "\n" if text[i + 1] == "/" else "*/"
            end = text.find(close, i + 2)
            i = len(text) if end < 0 else end + len(close)
            continue
        elif not char.isspace():
            last = i
            if char in "{[":
                open_ += char
            elif char in "}]":
                open_ = open_[:-1]
                if not open_:
                    return text[first.start() : i + 1]
        i += 1
    value = text[first.start() :]
    if quote or (text[last] in "\"'" and key):
        return None
    if text[last].isdigit() or text[last] in "\"'}]":
        return value
    word = re.search(r"[A-Za-z]+$", text[: last + 1])
    return value if word and word.group() in _LITERALS else None


def _without_nulls(value: Any) -> Any:
    """``value`` with every ``null`` member of its objects left out (so a field's default applies)."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def validation_message(error: Any) -> str:
    """A pydantic ``ValidationError`` as ``field.path: message`` parts joined by ``; ``, at most 300
    characters: what an error column says about an answer that failed its model."""
    parts = []
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail.get("loc", ()))
        parts.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    message = "; ".join(parts) or str(error)
    return message if len(message) <= 300 else message[:297] + "..."


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
    r"(?:text|response|answer|output|generation|assistant|instruction)\s*#?\s*(\d+)[*_ \t]*"
    # a header ends the line, or is followed by ":", "-", ")" or "." (or by a Rating/Score label):
    # "Text 2 has 3 errors" in a rationale is prose, not the start of text 2's block
    r"(?:\([^)\n]*\)[*_ \t]*)?(?:[:.)\-\u2013\u2014][*_ \t]*|$|(?=(?:rating|score)\b))"
    r"|^[ \t*_]*\[(\d+)\][*_ \t]*",
    re.IGNORECASE | re.MULTILINE,
)


def numbered_spans(text: str) -> list[tuple[int, int, int]]:
    """``(number, start, end)`` of every block introduced by ``Text 1``, ``#### Output for Text 2``,
    ``Response 3:``, ``[4]`` and the like, in the order they appear (a number may come back), with
    offsets into ``text`` itself (markdown is tolerated, not removed).

    Example:
        >>> text = "**Text 2**: good\\nText 1: bad"
        >>> [(n, text[start:end]) for n, start, end in numbered_spans(text)]
        [(2, 'good\\n'), (1, 'bad')]
    """
    headers = list(_HEADER.finditer(text))
    if not headers:
        return []
    return [
        (int(header.group(1) or header.group(2)), header.end(), following.start() if following else len(text))
        for header, following in zip(headers, [*headers[1:], None], strict=True)
    ]


def numbered_blocks(text: str) -> dict[int, str]:
    """Blocks introduced by ``Text 1``, ``#### Output for Text 2``, ``Response 3:``, ``[4]`` and the
    like, keyed by their number (first occurrence wins), in the order they appear, markdown removed."""
    text = strip_markdown(text)
    blocks: dict[int, str] = {}
    for number, start, end in numbered_spans(text):
        blocks.setdefault(number, text[start:end].strip())
    return blocks


def labelled_lines(text: str, names: tuple[str, ...]) -> list[re.Match[str]]:
    """Every line of ``text`` that starts with ``Name:`` (``Name =``, ``Name -``, ``Name is``; any of
    ``names``, any case, after bullets), as matches whose group 1 is the rest of the line. ``text``
    should be markdown-free (:func:`strip_markdown`); offsets are into it.

    Example:
        >>> [m.group(1) for m in labelled_lines("Score: 3\\nno score: 9\\n- score = 4", ("score",))]
        ['3', '4']
    """
    alternatives = "|".join(re.escape(name) for name in names)
    pattern = rf"^[ \t>*_-]*(?:{alternatives})[ \t]*(?:[:=\-\u2013\u2014]|\bis\b)[ \t]*([^\n]*)"
    return list(re.finditer(pattern, text, re.IGNORECASE | re.MULTILINE))


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
    matches = labelled_lines(text, names)
    if not matches:
        return None
    if not multiline:
        return matches[0].group(1).strip()
    rest = text[matches[0].start(1) :]
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
