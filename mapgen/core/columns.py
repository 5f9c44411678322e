"""Arrow types of the columns mapgen writes.

``datasets`` fixes a column's type from the first batch it writes: a first batch whose errors are all
``None`` (or whose answers all failed) would make that column ``null`` and break the run at the first
later value. So map functions return :class:`TypedList` columns: plain lists to anyone who reads them,
which also tell Arrow their type through the ``__arrow_array__`` protocol that ``datasets`` honours.
"""

from __future__ import annotations

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


def typed_columns(columns: dict[str, list[Any]], types: dict[str, pa.DataType]) -> dict[str, TypedList]:
    """Each column as a :class:`TypedList` of its declared type."""
    return {name: TypedList(values, types[name]) for name, values in columns.items()}
