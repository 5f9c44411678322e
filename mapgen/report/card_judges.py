"""The dataset card's section on the judge: how far its ratings can be trusted, where the dataset measured it.

Read from the dataset's own columns, each shown only where present:

- agreement with people: a score column of a label step (``rating``...) against ``human_rating`` (what
  :func:`mapgen.pull_from_argilla` writes), through :func:`mapgen.agreement`;
- position consistency: the share of rows whose ``rating_consistency`` (``label(..., swap=True)``) is
  ``True``, among those with a value;
- a jury's agreement: the mean of ``jury_agreement`` (:class:`mapgen.Jury`), with the members' models;
- self-preference: a model named both in ``labelling_model`` (a judge, or a jury's members) and in
  ``generation_model`` rated its own answers, which LLM judges favour;

and, from the response store, the :func:`mapgen.judge_check` of each label step's judge, where one was run
(:func:`mapgen.mapping.provenance.judge_checks`: it keeps its figures under the judge's config).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mapgen.mapping.jury import AGREEMENT as JURY_AGREEMENT
from mapgen.mapping.jury import CONSISTENCY
from mapgen.report.agreement import Agreement, agreement

HUMAN = "human_rating"
"""People's rating per generation, as :func:`mapgen.pull_from_argilla` writes it."""
JUDGES, WRITERS = "labelling_model", "generation_model"
"""Who judged (a model per row, or a jury's members: a list per row) and who wrote the answers."""
SEED, RESAMPLES = 0, 1000
"""The bootstrap of the card's agreement intervals: reproducible, the card the same at every build."""


def judge_lines(ds: Any, scores: Sequence[str], checks: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The card's ``## The judge, measured`` section (Markdown lines) for the label steps' score columns
    ``scores`` and the ``checks`` their judges passed (:func:`mapgen.judge_check`'s kept figures), or nothing
    when none of it was measured. Raises nothing for a measure it cannot compute (the ``judges`` extra
    missing, ratings of another shape): its line says why.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"rating_consistency": [True, False, None, True]})
        >>> for line in judge_lines(ds, ["rating"]):  # doctest: +NORMALIZE_WHITESPACE
        ...     print(line)
        ## The judge, measured
        <BLANKLINE>
        Position consistency: 0.667 (2 of 3 rows kept the judge's ranking when their answers swapped
        places: `rating_consistency`, from `label(..., swap=True)`; 1 row without a verdict in both
        orders left out).
        <BLANKLINE>
        >>> judge_lines(datasets.Dataset.from_dict({"rating": [[4.0, 2.0]]}), ["rating"])
        []
    """
    judges, writers = _column(ds, JUDGES), _column(ds, WRITERS)
    found = [
        *_agreement_lines(ds, scores),
        *_consistency_lines(_column(ds, CONSISTENCY)),
        *_jury_lines(_column(ds, JURY_AGREEMENT), judges, writers),
        *_self_preference_lines(judges, writers),
        *_check_lines(checks),
    ]
    if not found:
        return []
    return ["## The judge, measured", "", *found]


def _column(ds: Any, name: str) -> pa.ChunkedArray | None:
    """Column ``name`` of the rows at hand (after a ``filter`` or ``select`` too), as Arrow."""
    if name not in ds.column_names:
        return None
    return ds.select_columns([name]).with_format("arrow")[:][name]


def _agreement_lines(ds: Any, scores: Sequence[str]) -> list[str]:
    """For each score column beside people's ratings: :func:`mapgen.agreement`'s table, or one line
    saying why it is missing."""
    if HUMAN not in ds.column_names:
        return []
    lines: list[str] = []
    for column in scores:
        head = f"Agreement of the judge's `{column}` with people's `{HUMAN}`"
        try:
            found = agreement(ds, judge=column, human=HUMAN, seed=SEED, resamples=RESAMPLES)
        except (ImportError, ValueError) as error:  # the `judges` extra is missing; ratings of odd shape
            lines += [f"{head}: not computed. {error}", ""]
            continue
        lines += _agreement_table(head, found)
    return lines


def _agreement_table(head: str, found: Agreement) -> list[str]:
    """:meth:`Agreement.lines` as a Markdown table, under what it compares."""
    if not found.n:
        return [f"{head}: no answer was rated by both.", ""]
    ceiling = (
        " The annotators' alpha among themselves is the ceiling a judge can reach."
        if found.annotators_alpha is not None
        else ""
    )
    (_, value, interval), *rows = found.lines()
    lines = [
        f"{head} (the annotators' consensus), on the answers both rated; {interval}s from "
        f"{found.resamples} bootstrap resamples of rows, seed {found.seed} (see `mapgen.agreement`)."
        + ceiling,
        "",
        f"| figure | {value} | {interval} |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {number} | {note.replace('|', '/')} |" for name, number, note in rows]
    return [*lines, ""]


def _consistency_lines(values: pa.ChunkedArray | None) -> list[str]:
    """The share of rows whose ranking held both ways, among those judged in both orders."""
    if values is None or values.null_count == len(values):
        return []
    known = len(values) - values.null_count
    held = int(pc.sum(values.cast(pa.int64())).as_py() or 0)
    missing = values.null_count
    without = f"; {_rows(missing)} without a verdict in both orders left out" if missing else ""
    return [
        f"Position consistency: {held / known:.3f} ({held} of {_rows(known)} kept the judge's ranking when "
        f"their answers swapped places: `{CONSISTENCY}`, from `label(..., swap=True)`{without}).",
        "",
    ]


def _jury_lines(
    values: pa.ChunkedArray | None, judges: pa.ChunkedArray | None, writers: pa.ChunkedArray | None
) -> list[str]:
    """The jury's mean agreement per row, its members, and who wrote the answers they judged."""
    if values is None:
        return []
    known = len(values) - values.null_count
    mean = pc.mean(values).as_py()
    members: list[str] = (
        next((row for row in _lists(judges).drop_null().to_pylist() if row), []) if judges is not None else []
    )
    wrote = _models(writers)
    named = ", ".join(f"`{m}`" for m in members) or "(not written)"
    lines = [
        "Jury agreement: " + ("undefined" if mean is None else f"{mean:.3f}"),
        f" (the mean `{JURY_AGREEMENT}` over {_rows(known)}: Kendall's W of the members' ratings, or the "
        f"share of member pairs that agree on a label; 1 is full agreement). Members: {named}.",
    ]
    if wrote:
        lines.append(f" Answers written by: {', '.join(f'`{w}`' for w in wrote)}.")
    return ["".join(lines), ""]


def _self_preference_lines(judges: pa.ChunkedArray | None, writers: pa.ChunkedArray | None) -> list[str]:
    """A warning where a model both wrote answers and judged them, whether ``judges`` holds one model per
    row (one judge) or a list (a jury's members)."""
    both = wrote_and_judged(_models(judges), _models(writers))
    if not both:
        return []
    return [
        f"Self-preference: {', '.join(f'`{m}`' for m in both)} both wrote and judged the answers "
        f"(`{WRITERS}`, `{JUDGES}`): LLM judges tend to rate their own answers higher.",
        "",
    ]


def wrote_and_judged(judges: str | Sequence[str], writers: str | Sequence[str]) -> list[str]:
    """The models, sorted, that are among both ``judges`` and ``writers`` (each a model's name, or a list
    of them: a jury's members, the models of a row's answers).

    Example:
        >>> wrote_and_judged("m", ["m", "other"]), wrote_and_judged(["a", "b"], "c")
        (['m'], [])
    """
    judged = {judges} if isinstance(judges, str) else set(judges)
    wrote = {writers} if isinstance(writers, str) else set(writers)
    return sorted(judged & wrote)


def _models(values: pa.ChunkedArray | None) -> list[str]:
    """The distinct model names of a model column, sorted, whether it holds one per row or lists."""
    if values is None:
        return []
    return sorted(pc.unique(_flat(values).drop_null()).to_pylist())


def _lists(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``values`` if it holds lists (a jury's ``labelling_model``: one model per member), else none."""
    return values if pa.types.is_list(values.type) else pa.chunked_array([], pa.list_(pa.string()))


def _flat(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``values`` with lists (one model per generation) flattened."""
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    return values


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _check_lines(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """A line per :func:`mapgen.judge_check` a label step's judge passed (its figures over every pair)."""
    lines = []
    for check in checks:
        accuracy, consistency = check.get("pairwise_accuracy"), check.get("position_consistency")
        lines += [
            f"Judge check (`mapgen.judge_check`, {check.get('n')} pairs of a checkably better and worse "
            f"answer, with {check.get('task')}): pairwise accuracy {_figure(accuracy)}, position "
            f"consistency {_figure(consistency)} (chance accuracy is 0.5; consistency alone does not show a "
            "judge that cannot judge: one always preferring the first answer scores 0.5 and 0, a coin flip "
            "about 0.5 and 0.5, one always calling a tie 0.5 and 1).",
            "",
        ]
    return lines


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
