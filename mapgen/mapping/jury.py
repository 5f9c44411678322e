"""What a jury (:class:`~mapgen.Jury`) writes from its members' ratings: the aggregate and the agreement.

Each member rates a row as a judge of its own. For numeric ratings the aggregate of a generation is the
mean of the members' ratings, over the members that rated the row and only for the generations every one
of them rated (the others ``None``): a strict judge that failed one generation would otherwise leave a
lenient judge's rating alone to stand for it, and could reverse an order both share. A member that rated
nothing in the row is left out. For a categorical output it is, per generation, the value most members
gave (``None`` on a tie). The members' agreement per row is:

- numeric ratings: Kendall's coefficient of concordance ``W`` (Kendall & Babington Smith, "The Problem of
  m Rankings", Annals of Mathematical Statistics 10(3), 1939), with the correction for tied ranks, over
  the members that rated the row and the generations all of them rated: 1 when they order the
  generations the same way (all of them rating the generations equal counts as the same order), 0 when
  their orders are unrelated. It measures the order, which is what a preference pair is made from, not
  the level: a lenient and a strict judge that order alike agree. ``None`` with fewer than two such
  members or generations.
- categorical outputs: the share of member pairs that gave the same value, averaged over the
  generations two or more members rated (Fleiss' per-item agreement ``P_i``: Fleiss, "Measuring Nominal
  Scale Agreement Among Many Raters", Psychological Bulletin 76(5), 1971).

Example:
    >>> aggregate([4.0, 2.0, None]), aggregate(["good", "bad", "good"])
    (3.0, 'good')
    >>> kendall_w([[1, 2, 3], [1, 2, 3], [3, 2, 1]])  # two judges agree, one reverses them
    0.1111111111111111
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import pyarrow as pa

from mapgen.errors import error_text, split_error


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(values: Sequence[Any]) -> Any:
    """The members' ratings of one generation as one: the mean of the numbers, else the value most
    members gave (``None`` on a tie); ``None`` when no member rated it."""
    given = [value for value in values if value is not None]
    if not given:
        return None
    if all(is_number(value) for value in given):
        return sum(float(value) for value in given) / len(given)
    counts = Counter(given).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None  # no majority
    return counts[0][0]


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing the mean of their ranks (as ``scipy.stats.rankdata`` gives them).

    Example:
        >>> ranks([3.0, 1.0, 3.0])
        [2.5, 1.0, 2.5]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in order[start : end + 1]:
            result[position] = (start + end) / 2 + 1
        start = end + 1
    return result


def kendall_w(ratings: Sequence[Sequence[float]]) -> float | None:
    """Kendall's ``W`` with the tie correction for ``m`` judges' ratings of the same ``n`` items (one list
    per judge): ``12 S / (m² (n³ - n) - m Σ T)``, ``S`` the squared deviations of the items' rank sums
    from their mean, ``T = Σ (t³ - t)`` over each judge's groups of ``t`` tied items. 1.0 when every judge
    rates every item equal (the same order); ``None`` with fewer than two judges or items."""
    m = len(ratings)
    n = len(ratings[0]) if m else 0
    if m < 2 or n < 2:
        return None
    ranked = [ranks(row) for row in ratings]
    sums = [sum(row[i] for row in ranked) for i in range(n)]
    mean = m * (n + 1) / 2
    s = sum((total - mean) ** 2 for total in sums)
    ties = sum(t**3 - t for row in ratings for t in Counter(row).values())
    denominator = m**2 * (n**3 - n) - m * ties
    return 1.0 if denominator == 0 else 12 * s / denominator


def pair_agreement(values: Sequence[Sequence[Any]]) -> float | None:
    """The share of judge pairs that gave the same value, averaged over the items two or more judges
    rated (``values``: one list per judge, ``None`` where it gave none); ``None`` without such items."""
    shares = []
    for item in zip(*values, strict=True):
        given = [value for value in item if value is not None]
        if len(given) >= 2:
            pairs = list(combinations(given, 2))
            shares.append(sum(a == b for a, b in pairs) / len(pairs))
    return sum(shares) / len(shares) if shares else None


def agreement(ratings: Sequence[Sequence[Any] | None]) -> float | None:
    """The members' agreement on one row (``ratings``: each member's ratings, aligned with the row's
    generations, ``None`` for a member that rated nothing): :func:`kendall_w` for numbers, over the
    members that rated and the generations all of them rated; else :func:`pair_agreement`.

    Example:
        >>> agreement([[5, 3], [4, 2], None])  # the third member failed: the two that rated agree
        1.0
    """
    rated = [list(row) for row in ratings if row is not None and any(v is not None for v in row)]
    values = [value for row in rated for value in row if value is not None]
    if not rated or not all(is_number(value) for value in values):
        return pair_agreement(rated) if rated else None
    common = [i for i in range(len(rated[0])) if all(row[i] is not None for row in rated)]
    return kendall_w([[float(row[i]) for i in common] for row in rated])


ANSWER_COLUMNS = (
    "labelling_model",
    "labelling_prompt",
    "raw_labelling_response",
    "labelling_reasoning",
    "labelling_metadata",
)
"""A judge's columns about its answers: a jury writes each under its own name, one entry per member."""
ERROR = "labelling_error"
CONSISTENCY = "rating_consistency"
"""Whether a judge's verdict held with the texts swapped (``swap=True``): the jury's holds where every
member's that has one held, so that ``to_preference(consistent_only=True)`` reads it as it reads one
judge's."""
AGREEMENT = "jury_agreement"


def by_judge(name: str) -> str:
    """The column of a judge's output ``name`` with one entry per member: ``ratings_by_judge`` for
    ``rating``, ``<name>_by_judge`` for the others."""
    return "ratings_by_judge" if name == "rating" else f"{name}_by_judge"


def _numeric(kind: pa.DataType) -> bool:
    kind = kind.value_type if pa.types.is_list(kind) else kind
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def jury_types(judge: Mapping[str, pa.DataType], verdicts: Sequence[str]) -> dict[str, pa.DataType]:
    """The columns a jury writes, from those each of its judges writes (``judge``): the answer columns and
    every other output by judge (a list per member), the aggregate of each of ``verdicts`` (floats for
    numbers), the row's ``labelling_error`` and ``jury_agreement``."""
    types: dict[str, pa.DataType] = {}
    for name, kind in judge.items():
        if name in ANSWER_COLUMNS:
            types[name] = pa.list_(kind)
        elif name in verdicts:
            number = pa.float64()
            types[name] = (pa.list_(number) if pa.types.is_list(kind) else number) if _numeric(kind) else kind
    types[ERROR] = pa.string()
    if CONSISTENCY in judge:
        types[CONSISTENCY] = pa.bool_()
    types.update({by_judge(n): pa.list_(k) for n, k in judge.items() if n not in ANSWER_COLUMNS})
    types[AGREEMENT] = pa.float64()
    return types


def jury_row(judges: Sequence[Mapping[str, Any]], verdicts: Sequence[str], provenance: str) -> dict:
    """One row's jury columns (:func:`jury_types`) from each member's row (``judges``, in member order).
    Each of ``verdicts`` is aggregated (:func:`aggregated`: per text for a list, numbers over the texts
    every member that rated the row rated); the agreement is the first one's. Each answer's metadata
    refers to the jury's map function (``provenance``), whose record names the members.

    The row's error, each member's led by its kind and naming the member: where a member rated only part
    of the row (some texts, not all), those members' errors (the texts it missed have no aggregate).
    Else ``None`` when a member rated every text it was shown, else every member's errors (or the one
    error they share).

    Example:
        >>> def member(model, rating, error=None):
        ...     return {"labelling_model": model, "rating": rating, "labelling_error": error}
        >>> row = jury_row([member("strict", [None, 2.0], "parse: no rating for text(s) [1] of 2"),
        ...                 member("lenient", [4.0, 5.0])], ["rating"], "jury")
        >>> row["rating"], row["labelling_error"]
        ([None, 3.5], "parse: judge 'strict': no rating for text(s) [1] of 2")
    """
    row: dict[str, Any] = {}
    for name in judges[0]:
        values = [judge[name] for judge in judges]
        if name == "labelling_metadata":
            values = [_referring(value, provenance) for value in values]
        if name in ANSWER_COLUMNS:
            row[name] = values
            continue
        if name in verdicts:
            row[name] = aggregated(values)
        row[by_judge(name)] = values
    row[ERROR] = _row_error(judges, verdicts)
    if CONSISTENCY in judges[0]:
        held = [judge[CONSISTENCY] for judge in judges if judge[CONSISTENCY] is not None]
        row[CONSISTENCY] = all(held) if held else None
    given = [judge[verdicts[0]] for judge in judges]
    row[AGREEMENT] = agreement([v if isinstance(v, list) or v is None else [v] for v in given])
    return row


def _row_error(judges: Sequence[Mapping[str, Any]], verdicts: Sequence[str]) -> str | None:
    """The row's ``labelling_error`` (:func:`jury_row`)."""
    partial = [judge for judge in judges if judge[ERROR] is not None and _partly_rated(judge, verdicts)]
    if partial:
        return _named_errors(partial)
    errors = [judge[ERROR] for judge in judges]
    if any(error is None for error in errors):
        return None
    if len(set(errors)) == 1:  # the same for all (an input the row lacks)
        return errors[0]
    return _named_errors(judges)


def _partly_rated(judge: Mapping[str, Any], verdicts: Sequence[str]) -> bool:
    """Whether a member rated some of a row's texts and not others (in any list verdict)."""
    lists = [judge[name] for name in verdicts if isinstance(judge.get(name), list)]
    return any(None in value and any(v is not None for v in value) for value in lists)


def _named_errors(judges: Sequence[Mapping[str, Any]]) -> str:
    """The members' errors, joined, each led by its kind and naming the member."""
    parts = []
    for judge in judges:
        kind, message = split_error(judge[ERROR])
        part = f"judge {judge['labelling_model']!r}: {message}"
        parts.append(error_text(kind, part) if kind else part)
    return "; ".join(parts)


def aggregated(values: Sequence[Any]) -> Any:
    """The members' values of one output (one per member, in member order) as one.

    A number per member: their :func:`aggregate`. A list per member (one value per text, aligned;
    ``None`` for a member that rated nothing): for numbers, per text the mean over the members that rated
    anything in the row, only for the texts all of them rated, ``None`` for the others (a member missing
    one text would move that text's mean alone); a member that rated nothing is left out. For labels, per
    text the value most members gave (:func:`aggregate`).

    Example:
        >>> aggregated([[None, 2.0], [4.0, 5.0], None])  # the strict judge missed text 1: no mean for it
        [None, 3.5]
        >>> aggregated([["good", None], ["good", "bad"], ["bad", "bad"]])  # labels: a vote per text
        ['good', 'bad']
    """
    lists = [value for value in values if isinstance(value, list)]
    if not lists:
        return aggregate(values)
    size = len(lists[0])
    rated = [value for value in lists if any(v is not None for v in value)]
    if rated and all(is_number(v) for value in rated for v in value if v is not None):
        return [
            aggregate([value[i] for value in rated]) if all(value[i] is not None for value in rated) else None
            for i in range(size)
        ]
    return [aggregate(item) for item in zip(*(v or [None] * size for v in values), strict=True)]


def _referring(metadata: Any, provenance: str) -> Any:
    """An answer's metadata (a struct, or a list of them) with ``provenance`` as its reference."""
    if isinstance(metadata, dict):
        return {**metadata, "provenance": provenance}
    if isinstance(metadata, list):
        return [_referring(value, provenance) for value in metadata]
    return metadata
