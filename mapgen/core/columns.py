"""Arrow types of the columns mapgen writes.

``datasets`` fixes a column's type from the first batch it writes: a first batch whose errors are all
``None`` (or whose answers all failed) would make that column ``null`` and break the run at the first
later value. So map functions return :class:`TypedList` columns: plain lists to anyone who reads them,
which also tell Arrow their type through the ``__arrow_array__`` protocol that ``datasets`` honours.

A value Arrow cannot convert to its column's type (an int beyond ``int64``, text with a lone surrogate,
which no UTF-8 can hold) would fail the write of the whole batch, the other rows' answers with it: each
answer's values are checked with :func:`misfit` as they are parsed, and its text made writable with
:func:`writable_text`, so that nothing that fails a write reaches one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
"""A prompt as chat messages."""

METADATA = pa.struct(
    [
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("from_store", pa.bool_()),
        ("cost", pa.float64()),
        ("cached_tokens", pa.int64()),
        ("schema_style", pa.string()),
        # Whether the task read the answer only after repairing its JSON (mapgen.tasks.parsing.parse_model).
        ("repaired", pa.bool_()),
        # How many times the request was sent again (429s, 5xx, timeouts) before it was answered or failed.
        ("retries", pa.int64()),
        # The fingerprint of the map function that wrote the answer: its record's key
        # (mapgen.mapping.provenance).
        ("provenance", pa.string()),
    ]
)
"""Per-answer provenance: ``cost`` in USD (``None`` where the price is unknown: :mod:`mapgen.core.prices`),
``cached_tokens``, the prompt tokens read from the provider's prompt cache, and ``schema_style``, how the
answer schema constrained the answer (:attr:`mapgen.core.request.Completion.schema_style`: ``none`` where
the server took no schema), and ``repaired``, ``True`` where the task read the answer only after repairing
its JSON (:attr:`mapgen.core.request.Completion.repaired`), and ``retries``, how many times the request was
sent again before it was answered or failed (0 for a reused answer). Datasets written before a field was
added do not have it."""

VERIFIED = "verified"
"""The column :func:`mapgen.verify` writes: ``True``, ``False`` or ``None`` per generation."""

VERIFICATION_ERRORS = "verification_errors"
"""The column :func:`mapgen.verify` writes beside :data:`VERIFIED`: why a check could not be made, or
``None``."""

VERIFY_COLUMNS = (VERIFIED, VERIFICATION_ERRORS)
"""Both, one value per generation they checked. :func:`mapgen.verify` keeps no provenance record (it is
no map of a model), so :func:`mapgen.flatten` knows them by these names."""

_SIGNS_OF_AN_ANSWER = ("finish_reason", "prompt_tokens", "completion_tokens", "cost")


def answer_came(meta: Mapping[str, Any]) -> bool:
    """Whether an answer's metadata (:data:`METADATA`) says an answer came (and was billed): it has a finish
    reason, a token count or a cost. The one rule by which totals count answers (:func:`mapgen.usage`, the
    dataset card, the run's counters): a server that reports no usage still answered, so its answers count,
    with an unknown cost; a failure before any answer (an input error, a timeout, an HTTP error) has none.

    Example:
        >>> answer_came({"finish_reason": "stop", "prompt_tokens": None, "cost": None})
        True
        >>> answer_came({"finish_reason": None, "prompt_tokens": None, "cost": None})
        False
    """
    return any(meta.get(name) is not None for name in _SIGNS_OF_AN_ANSWER)


class TypedList(list):
    """A list that converts to an Arrow array of a fixed type.

    Example:
        >>> pa.array(TypedList([None], pa.string())).type
        DataType(string)
    """

    def __init__(self, values: list[Any], arrow_type: pa.DataType) -> None:
        super().__init__(values)
        self.arrow_type = arrow_type

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:
        return pa.array(list(self), type=type or self.arrow_type)


def typed_columns(columns: dict[str, list[Any]], types: dict[str, pa.DataType]) -> dict[str, list[Any]]:
    """Each column as a :class:`TypedList` of its declared type (the columns a map function returns)."""
    return {name: TypedList(values, types[name]) for name, values in columns.items()}


def misfit(values: Mapping[str, Any], types: Mapping[str, pa.DataType]) -> str | None:
    """Why one answer's ``values`` cannot be written to columns of ``types``: ``"<field>: value does not
    fit <type>"`` for the first that cannot (a nested one by its path: ``dims.width``, ``tags[2]``), else
    ``None``.

    Exactly what Arrow refuses: the common values (ints in range, floats, bools, UTF-8 text, lists and
    dicts of them) are checked in Python, the rest by converting them (``pa.array([value], type=...)``).
    Keys of ``values`` without a type are not written, so not checked; a dict's keys a struct does not
    have are dropped by Arrow, so they fit. The message never quotes the value (it may be what cannot be
    written).

    Example:
        >>> misfit({"city": "Paris", "population": 10**30}, {"city": pa.string(), "population": pa.int64()})
        'population: value does not fit int64'
        >>> misfit({"population": 2_102_650, "area": float("inf")}, {"area": pa.float64()}) is None
        True
    """
    entry = _CHECKS.get(id(types))
    if entry is None or entry[0] is not types:  # compiled once per mapping (a map function keeps its own)
        if len(_CHECKS) >= 256:
            _CHECKS.clear()
        entry = _CHECKS[id(types)] = (types, [(name, _check(kind)) for name, kind in types.items()])
    get = values.get
    for name, check in entry[1]:
        problem = check(get(name))
        if problem is not None:
            where, kind, note = problem
            return f"{name}{where}: value does not fit {kind}{note}"
    return None


Problem = tuple[str, pa.DataType, str]
"""Where in a value what does not fit is (``""``, ``"[2]"``, ``".width"``), its type, and a note."""

_CHECKS: dict[int, tuple[Mapping[str, pa.DataType], list[tuple[str, Callable[[Any], Problem | None]]]]] = {}
"""The compiled checks of each types mapping :func:`misfit` was given, by its id (with the mapping itself,
so that a reused id is not mistaken for it)."""

_INT_RANGES = {
    kind.id: (-(2 ** (kind.bit_width - 1)), 2 ** (kind.bit_width - 1) - 1)
    if pa.types.is_signed_integer(kind)
    else (0, 2**kind.bit_width - 1)
    for kind in (
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
    )
}
_EXACT_IN_FLOAT64 = 2**53
"""The largest int Arrow converts to ``float64`` (beyond it, not every int has a double)."""
_TEXT = {pa.string().id, pa.large_string().id}
_LISTS = {pa.list_(pa.null()).id, pa.large_list(pa.null()).id}


def _check(kind: pa.DataType) -> Callable[[Any], Problem | None]:
    """A function that says what of a value does not fit ``kind`` (``None``: it fits). The common values
    (ints in range, floats, bools, UTF-8 text, lists and dicts of them) are checked in Python, exactly as
    Arrow would take them; anything else is converted (:func:`_arrow`)."""
    of = kind.id
    if of in _TEXT:

        def check(value: Any) -> Problem | None:
            if value is None or (type(value) is str and (value.isascii() or _utf8(value))):
                return None
            return ("", kind, " (a lone surrogate)") if type(value) is str else _arrow(value, kind)

    elif of in _INT_RANGES:
        low, high = _INT_RANGES[of]

        def check(value: Any) -> Problem | None:
            if value is None:
                return None
            if type(value) is int:
                return None if low <= value <= high else ("", kind, "")
            return _arrow(value, kind)

    elif of == pa.float64().id:

        def check(value: Any) -> Problem | None:
            known = type(value)
            if value is None or known is float:
                return None
            if known is int and -_EXACT_IN_FLOAT64 <= value <= _EXACT_IN_FLOAT64:
                return None
            return _arrow(value, kind)

    elif of == pa.bool_().id:

        def check(value: Any) -> Problem | None:
            return None if value is None or type(value) is bool else _arrow(value, kind)

    elif of in _LISTS:
        item = _check(kind.value_type)

        def check(value: Any) -> Problem | None:
            if value is None:
                return None
            if type(value) is not list:
                return _arrow(value, kind)
            for i, each in enumerate(value):
                problem = item(each)
                if problem is not None:
                    return (f"[{i}]{problem[0]}", problem[1], problem[2])
            return None

    elif pa.types.is_struct(kind):
        fields = [(field.name, _check(field.type)) for field in kind]

        def check(value: Any) -> Problem | None:
            if value is None:
                return None
            if type(value) is not dict:
                return _arrow(value, kind)
            get = value.get  # keys the struct does not have: Arrow drops them
            for name, sub in fields:
                problem = sub(get(name))
                if problem is not None:
                    return (f".{name}{problem[0]}", problem[1], problem[2])
            return None

    else:

        def check(value: Any) -> Problem | None:
            return None if value is None else _arrow(value, kind)

    return check


def _arrow(value: Any, kind: pa.DataType) -> Problem | None:
    """What Arrow itself says: ``value`` converted to ``kind``, as ``datasets`` will."""
    try:
        pa.array([value], type=kind)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return ("", kind, "")
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def writable_text(text: str) -> str:
    """``text`` with each lone surrogate (which no UTF-8 holds, so no Arrow string: JSON's ``"\\ud800"``
    escape decodes to one) replaced by U+FFFD, as a UTF-8 decoder replaces bytes it cannot read; ``text``
    itself when it has none.

    Example:
        >>> writable_text("Par\\ud800is")
        'Par\ufffdis'
    """
    if text.isascii() or _utf8(text):
        return text
    return _SURROGATE.sub("\ufffd", text)
