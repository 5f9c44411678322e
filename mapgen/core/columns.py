"""Arrow types of the columns mapgen writes.

``datasets`` fixes a column's type from the first batch it writes: a first batch whose errors are all
``None`` (or whose answers all failed) would make that column ``null`` and break the run at the first
later value. So map functions return :class:`TypedList` columns: plain lists to anyone who reads them,
which also tell Arrow their type through the ``__arrow_array__`` protocol that ``datasets`` honours.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        # The fingerprint of the map function that wrote the answer: its record's key
        # (mapgen.mapping.provenance).
        ("provenance", pa.string()),
    ]
)
"""Per-answer provenance: ``cost`` in USD (``None`` where the price is unknown: :mod:`mapgen.core.prices`) and
``cached_tokens``, the prompt tokens read from the provider's prompt cache."""

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
