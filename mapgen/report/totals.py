"""What a dataset's answers used and cost, by model, read from the metadata mapgen wrote beside them.

Every mapgen map writes a metadata struct per answer (``generation_metadata``, ``labelling_metadata``, or
any column of that struct type, under whatever name a later rename gave it) and the model that wrote it
(``generation_model``, ``labelling_model``: the metadata column's name with ``_model`` for ``_metadata``).
:func:`usage` sums them by model: answers requested and the tokens and cost of those, and answers reused
from the response store, with the cost they had when they were paid for (what reusing them saved).

Example:
    >>> import datasets
    >>> meta = {"finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 5, "from_store": False,
    ...         "cost": 0.002, "cached_tokens": 0}
    >>> ds = datasets.Dataset.from_dict({"generation_model": [["m", "m"]],
    ...     "generation_metadata": [[meta, {**meta, "from_store": True}]]})
    >>> print(usage(ds))
    model  requests  prompt tokens  completion tokens  cached tokens  cost (USD)  reused  saved (USD)
    m             1             10                  5              0   $0.002000       1    $0.002000
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

from mapgen.core.columns import answer_came
from mapgen.core.units import format_cost

_BATCH = 10_000
"""Rows read into Python at a time."""

METADATA_FIELDS = frozenset({"finish_reason", "prompt_tokens", "completion_tokens", "from_store"})
"""The fields that make a struct column mapgen's answer metadata (earlier releases wrote only these)."""


@dataclass
class ModelUsage:
    """One model's totals: ``requests`` (answers requested and received, whether or not the server reported
    their usage: :func:`~mapgen.core.columns.answer_came`; an ``n=`` request counts each answer), their
    ``prompt_tokens``, ``completion_tokens``, ``cached_tokens`` and ``cost`` in USD (``None`` when none of
    them had a price), and ``reused`` answers from the response store with the cost they had (``saved``).
    ``unpriced`` counts received answers without a cost: ``cost`` is then a lower bound."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    reused: int = 0
    saved: float | None = None
    unpriced: int = 0

    def add(self, meta: Mapping[str, Any]) -> None:
        """Count one answer's metadata (one that was neither reused nor answered counts nothing)."""
        cost = meta.get("cost")
        if meta.get("from_store"):
            self.reused += 1
            if cost is not None:
                self.saved = (self.saved or 0.0) + cost
            return
        if not answer_came(meta):
            return  # never sent (an input error) or no answer came (not billed)
        self.requests += 1
        self.prompt_tokens += meta.get("prompt_tokens") or 0
        self.completion_tokens += meta.get("completion_tokens") or 0
        self.cached_tokens += meta.get("cached_tokens") or 0
        if cost is None:
            self.unpriced += 1
        else:
            self.cost = (self.cost or 0.0) + cost

    def __iadd__(self, other: ModelUsage) -> ModelUsage:
        for name in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reused", "unpriced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("cost", "saved"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, mine if theirs is None else (mine or 0.0) + theirs)
        return self


@dataclass
class Usage:
    """Totals by model (:class:`ModelUsage`) and over all models (:attr:`total`); printed as a table.

    ``cost`` counts the answers this dataset's maps requested; ``saved`` what its reused answers had cost
    when first paid for. A cost is ``None`` where no answer had a price: set ``price_per_million``.
    """

    models: dict[str, ModelUsage] = field(default_factory=dict)

    @property
    def total(self) -> ModelUsage:
        total = ModelUsage()
        for one in self.models.values():
            total += one
        return total

    def __getitem__(self, model: str) -> ModelUsage:
        return self.models[model]

    def __str__(self) -> str:
        rows = list(self.models.items())
        if len(rows) > 1:
            rows.append(("total", self.total))
        header = ["model", "requests", "prompt tokens", "completion tokens", "cached tokens", "cost (USD)"]
        header += ["reused", "saved (USD)"]
        table = [header] + [
            [
                model,
                *(f"{getattr(one, name):,}" for name in ("requests", "prompt_tokens", "completion_tokens")),
                f"{one.cached_tokens:,}",
                _usd(one.cost, one.unpriced),
                f"{one.reused:,}",
                _usd(one.saved, 0),
            ]
            for model, one in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in table
        ]
        return "\n".join(line.rstrip() for line in lines) if rows else "no mapgen answers"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter show the table
        printer.text(str(self))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{model: {requests, prompt_tokens, ..., saved}}``, for logs and dataframes."""
        models = self.models.items()
        return {model: {f.name: getattr(one, f.name) for f in fields(one)} for model, one in models}


def _usd(cost: float | None, unpriced: int) -> str:
    if cost is None:
        return "unknown" if unpriced else "-"
    return format_cost(cost, unpriced)


def usage(ds: Any) -> Usage:
    """Sum the tokens, cost, requests and store reuse of a dataset's mapgen answers, by model.

    ``ds`` is a ``datasets.Dataset`` (its current rows: after ``select``/``filter``, those only) or a
    ``DatasetDict`` (every split). Metadata written by earlier releases (no ``cost``) counts its tokens, with
    an unknown cost. Returns a :class:`Usage`; ``print`` it for a table. Example: see
    :mod:`mapgen.report.totals`.
    """
    if hasattr(ds, "values") and not hasattr(ds, "features"):  # a DatasetDict
        result = Usage()
        for split in ds.values():
            for model, one in usage(split).models.items():
                result.models.setdefault(model, ModelUsage()).__iadd__(one)
        return result
    columns = metadata_columns(ds)
    result = Usage()
    if not columns:
        return result
    models = {column: _model_column(column, ds.column_names) for column in columns}
    wanted = list(dict.fromkeys([*columns, *(m for m in models.values() if m is not None)]))
    # In batches: a million rows' metadata is not read into Python at once.
    for table in ds.select_columns(wanted).with_format("arrow").iter(batch_size=_BATCH):
        for column in columns:
            metas = table.column(column).to_pylist()
            names = table.column(models[column]).to_pylist() if models[column] else [None] * len(metas)
            for meta, name in zip(metas, names, strict=True):
                for one_meta, one_name in _pairs(meta, name):
                    result.models.setdefault(one_name or "unknown", ModelUsage()).add(one_meta)
    return result


def metadata_columns(ds: Any) -> list[str]:
    """The columns of ``ds`` (a ``datasets.Dataset``) that hold mapgen's answer metadata, whatever their
    names: a struct with mapgen's metadata fields, or a list of them."""
    return [f.name for f in ds.features.arrow_schema if _is_metadata(f.type)]


def answer_metadata(values: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    """Every answer's metadata in a metadata column's values (a struct, or lists of them), in order."""
    for value in values:
        if isinstance(value, Mapping):
            yield value
        elif isinstance(value, list):
            yield from answer_metadata(value)


def _is_metadata(kind: pa.DataType) -> bool:
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    names = {kind.field(i).name for i in range(kind.num_fields)} if pa.types.is_struct(kind) else set()
    return names >= METADATA_FIELDS


def _model_column(column: str, present: Iterable[str]) -> str | None:
    name = column.removesuffix("_metadata") + "_model"
    return name if name != column and name in present else None


def _pairs(meta: Any, model: Any) -> Iterable[tuple[Mapping[str, Any], str | None]]:
    """Each answer's metadata with its model: a list of answers beside a list of models (aligned) or one
    model for all (a judge's)."""
    if meta is None:
        return []
    if isinstance(meta, Mapping):
        return [(meta, model if isinstance(model, str) else None)]
    models = model if isinstance(model, list) else [model] * len(meta)
    return [pair for one, name in zip(meta, models, strict=False) for pair in _pairs(one, name)]
