"""The dataset card's section on cleaning: what :func:`mapgen.dedup`, :func:`mapgen.decontaminate` and
:func:`mapgen.verify` did to the dataset, each with its parameters, in the order they ran.

Read from the records the dataset carries (:mod:`mapgen.mapping.steps`): the figures are those of each
step when it ran (rows removed, rows flagged per benchmark, verdicts), not recounted from the rows at hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mapgen.mapping.steps import recorded_steps


def cleaning_lines(ds: Any) -> list[str]:
    """The card's ``## How the data was cleaned`` section (Markdown lines), or nothing when ``ds`` records
    no cleaning step.

    Example:
        >>> import datasets
        >>> from mapgen.mapping.steps import record_step
        >>> ds = datasets.Dataset.from_dict({"text": ["a", "a", "b"]})
        >>> result = {"rows": 3, "removed": 1, "clusters": 1, "exact": 1, "keep_column": None}
        >>> ds = record_step(ds, ds.select([0, 2]), "dedup", {"threshold": 0.8}, result)
        >>> print("\\n".join(cleaning_lines(ds)))  # doctest: +NORMALIZE_WHITESPACE
        ## How the data was cleaned
        <BLANKLINE>
        In the order the steps ran; the figures are those of each step when it ran.
        <BLANKLINE>
        1. `dedup`: 1 of 3 rows removed as near or exact duplicates of an earlier row (1 cluster(s); 1
           exact copies after normalisation).
           Parameters: `{"threshold": 0.8}`
        <BLANKLINE>
    """
    records = recorded_steps(ds)
    if not records:
        return []
    lines = [
        "## How the data was cleaned",
        "",
        "In the order the steps ran; the figures are those of each step when it ran.",
        "",
    ]
    for number, record in enumerate(records, 1):
        parameters = json.dumps(record.get("parameters") or {}, sort_keys=True)
        lines += [f"{number}. {said(record)}", f"   Parameters: `{parameters}`"]
    return [*lines, ""]


def said(record: Mapping[str, Any]) -> str:
    """One step's record as a sentence: what it did, in figures."""
    step, result = str(record.get("step")), record.get("result") or {}
    try:
        return f"`{step}`: " + _SENTENCES[step](result)
    except (KeyError, TypeError, ValueError):  # a step of a newer mapgen, or a record edited by hand
        return f"`{step}`: `{json.dumps(result, sort_keys=True)}`"


def _dedup(result: Mapping[str, Any]) -> str:
    rows, removed = result["rows"], result["removed"]
    detail = f"{result['clusters']:,} cluster(s); {result['exact']:,} exact copies after normalisation"
    if result.get("keep_column"):
        return (
            f"{removed:,} of {rows:,} rows marked as near or exact duplicates of an earlier row in "
            f"`{result['keep_column']}`, none removed ({detail})."
        )
    return f"{removed:,} of {rows:,} rows removed as near or exact duplicates of an earlier row ({detail})."


def _decontaminate(result: Mapping[str, Any]) -> str:
    rows, flagged = result["rows"], result["flagged"]
    each = ", ".join(f"{name} {count:,}" for name, count in result["benchmarks"].items())
    fate = f"{result['removed']:,} removed" if result.get("removed") else "flagged in `contaminated_by`"
    return f"{flagged:,} of {rows:,} rows share an n-gram with a benchmark ({each}): {fate}."


def _verify(result: Mapping[str, Any]) -> str:
    checked = result["verified"] + result["rejected"]
    answers = checked + result["unchecked"]
    rate = f" ({result['verified'] / checked:.1%} of those checked)" if checked else ""
    return (
        f"{result['verified']:,} of {answers:,} answers verified{rate}, {result['rejected']:,} rejected, "
        f"{result['unchecked']:,} not checked (no answer, no reference, or the check failed: "
        "`verification_errors` says why)."
    )


_SENTENCES = {"dedup": _dedup, "decontaminate": _decontaminate, "verify": _verify}
