"""Records of the steps that change a dataset with no map function: dedup, decontaminate, verify.

A map step's record is found through the reference every answer's metadata carries
(:mod:`mapgen.mapping.provenance`). A cleaning step may leave no column at all (``dedup`` removes rows), so
its record travels in the dataset itself: one line of the dataset's ``info.description``,
``mapgen steps: [...]`` (JSON, a record per step, in the order they ran), which ``datasets`` copies through
``map``, ``filter``, ``select``, ``save_to_disk`` / ``load_from_disk`` and ``concatenate_datasets`` (whose
merged description keeps each dataset's line). Parquet and JSON files hold no description, so a dataset
read back from them has lost the line; a card made before writing them (:func:`mapgen.push_to_hub` makes
one) keeps what it said. The rest of the description is the user's and is left as it is.

Each record: ``step``, ``parameters`` (plain JSON: a callable by its qualified name), ``result`` (what
the step did: rows removed, rows flagged per benchmark, verdicts) and ``mapgen_version``.

Example:
    >>> import datasets
    >>> ds = datasets.Dataset.from_dict({"text": ["a", "b"]})
    >>> out = record_step(ds, ds.select([0]), "dedup", {"threshold": 0.8}, {"rows": 2, "removed": 1})
    >>> [(r["step"], r["result"]["removed"]) for r in recorded_steps(out)], recorded_steps(ds)
    ([('dedup', 1)], [])
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mapgen._version import __version__

MARKER = "mapgen steps: "
"""The start of the description line that holds the records."""


def recorded_steps(ds: Any) -> list[dict[str, Any]]:
    """The cleaning steps recorded in ``ds`` (a ``datasets.Dataset``), in the order they ran; each once,
    also after ``concatenate_datasets`` joined datasets that share some."""
    description = getattr(getattr(ds, "info", None), "description", None) or ""
    found: dict[str, dict[str, Any]] = {}
    for line in description.splitlines():
        if line.startswith(MARKER):
            try:
                records = json.loads(line[len(MARKER) :])
            except ValueError:  # a line the user edited: what cannot be read is no record
                continue
            for record in records if isinstance(records, list) else []:
                if isinstance(record, dict):
                    found.setdefault(json.dumps(record, sort_keys=True), record)
    return list(found.values())


def record_step(
    source: Any, out: Any, step: str, parameters: Mapping[str, Any], result: Mapping[str, Any]
) -> Any:
    """``out`` (the dataset a step made from ``source``) with the step's record added after ``source``'s.

    ``parameters`` and ``result`` become plain JSON (a callable or a class by its qualified name).
    ``source`` is left as it was.
    """
    if out is source:  # its info is the caller's: a dataset of its own (an indices mapping, no copy)
        out = out.select(range(len(out)))
    record = {
        "step": step,
        "parameters": _plain(parameters),
        "result": _plain(result),
        "mapgen_version": __version__,
    }
    steps = [*recorded_steps(source), record]
    kept = [line for line in (source.info.description or "").splitlines() if not line.startswith(MARKER)]
    text = "\n".join(kept).strip()
    out.info.description = (text + "\n\n" if text else "") + MARKER + json.dumps(steps, sort_keys=True)
    return out


def _plain(values: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(values), default=_name))


def _name(value: Any) -> Any:
    """What JSON cannot hold, as a card shows it: a set sorted, a function or class by its qualified name."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    qualname = getattr(value, "__qualname__", None)
    return f"{getattr(value, '__module__', '?')}.{qualname}" if qualname else repr(value)
