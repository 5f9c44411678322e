"""``mapgen.to_preference``: turn rated rows into ``prompt`` / ``chosen`` / ``rejected`` pairs (DPO)."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import datasets

from mapgen.core.columns import VERIFIED
from mapgen.core.keywords import checked_keywords
from mapgen.errors import MapgenWarning

logger = logging.getLogger(__name__)

PAIRINGS = ("best-worst", "best-rest", "all")
TIES = ("drop", "keep")
FORMATS = ("text", "chat")
CHOSEN = ("rating", "verified")

CONSISTENCY = "rating_consistency"
"""The column ``label(..., swap=True)`` writes: whether both orders ranked a row's texts the same way."""

INCONSISTENT = "inconsistent"
"""A pairwise ``preference`` whose two orders disagreed (``label(..., swap=True)``)."""

DROPPED = ("inconsistent", "unjudged", "tie", "margin")
"""What a pair can be dropped for, in the order the filters apply: its row's order did not hold both ways,
or could not be checked (no verdict in one order), its ratings are equal, they differ by less than
``min_margin``."""


@checked_keywords
def to_preference(
    ds: datasets.Dataset,
    *,
    pairs: Literal["best-worst", "best-rest", "all"] = "best-worst",
    ties: Literal["drop", "keep"] = "drop",
    min_margin: float = 0.0,
    consistent_only: bool = True,
    format: Literal["text", "chat"] = "text",
    chosen: Literal["rating", "verified"] = "rating",
    prompt_column: str = "input",
    generations_column: str = "generations",
    rating_column: str = "rating",
    preference_column: str = "preference",
    verified_column: str = VERIFIED,
    keep_columns: Sequence[str] = (),
) -> datasets.Dataset:
    """Preference pairs from a labelled dataset, ready for DPO trainers (TRL's ``DPOTrainer`` and the
    like): columns ``prompt``, ``chosen``, ``rejected``, ``chosen_rating``, ``rejected_rating``, plus
    ``keep_columns``.

    What happens to each row, on purpose:

    - generations that are ``None`` or have no rating (``None``) are left out; a row with fewer than
      two rated generations (all ``None``, say) gives no pair;
    - ``pairs="best-worst"`` (default): one pair, the highest-rated against the lowest-rated;
      ``"best-rest"``: the best against each lower-rated one; ``"all"``: every pair with different
      ratings. Among equal best (or worst) ratings, the earliest generation is taken, so the result
      is the same on every run;
    - ties: a pair with equal ratings is dropped (``ties="drop"``, default), since it carries no
      preference; ``ties="keep"`` keeps them (ordered by position) for trainers that model ties;
    - margin: a pair whose ratings differ by less than ``min_margin`` is dropped (a close call of a
      judge is often noise);
    - position swaps: where the rows were judged in both orders (``label(..., swap=True)``: a
      ``rating_consistency`` column), ``consistent_only=True`` (default) keeps only the pairs of rows
      whose ranking held both ways (``rating_consistency`` ``True``; ``False`` or ``None``, a verdict
      that failed, give none);
    - ``format="chat"`` writes ``prompt`` as a user message list and ``chosen`` / ``rejected`` as
      assistant message lists (TRL's conversational format); ``"text"`` writes plain strings.

    ``rating_column`` may name ``weighted_rating`` (from ``label(..., weighted_ratings=True)``) or
    ``score`` (critique tasks). A dataset with no ``rating_column`` and a ``preference_column`` (from
    :class:`~mapgen.PairwiseJudgeTask`: ``"a"``, ``"b"``, ``"tie"`` or ``"inconsistent"``) gives a pair
    per row that prefers one of its two generations (a tie only with ``ties="keep"``, the first generation
    as ``chosen``; an ``inconsistent`` row never: it names no preference), without rating columns;
    ``min_margin`` needs ratings.

    ``chosen="verified"`` pairs by what :func:`mapgen.verify` found instead of by ratings (rejection
    sampling: "generate 8, keep what checks out"): ``chosen`` is an answer whose ``verified_column`` value is
    ``True``, ``rejected`` one whose value is ``False`` (``None``, unchecked, takes no part), both answers to
    the same prompt; ``"best-worst"`` pairs the first verified answer with the first unverified one,
    ``"best-rest"`` the first verified with each unverified, ``"all"`` each verified with each unverified.
    A row whose answers all passed, or all failed, gives no pair. There are no rating columns, and
    ``ties``, ``min_margin`` and ``consistent_only`` (a judge's filters) do not apply: ``min_margin`` must
    stay 0.

    How many pairs each filter dropped is logged, and said in a :class:`~mapgen.MapgenWarning` when the
    margin or the consistency filter dropped any: ``dropped 3 of 5 pairs: 2 inconsistent (the order
    of the answers changed the judge's ranking), 1 within min_margin=1.0``.

    Raises:
        ValueError: a column is missing (it names the columns present), an option is not one of its
            choices, ``min_margin`` is negative, or given for a pairwise dataset or ``chosen="verified"``.

    Example:
        >>> ds = datasets.Dataset.from_dict({
        ...     "input": ["2+2?", "Capital of Peru?", "Hi"],
        ...     "generations": [["4", "5", None], ["Lima", "Lima"], ["Hello", None]],
        ...     "rating": [[5.0, 1.0, None], [4.0, 4.0], [3.0, None]],
        ... })
        >>> pairs = to_preference(ds)
        >>> pairs.num_rows, pairs[0]
        (1, {'prompt': '2+2?', 'chosen': '4', 'rejected': '5', 'chosen_rating': 5.0, 'rejected_rating': 1.0})
        >>> checked = datasets.Dataset.from_dict({
        ...     "input": ["2+2?"], "generations": [["5", "4", "four"]], "verified": [[False, True, None]],
        ... })
        >>> to_preference(checked, chosen="verified")[0]
        {'prompt': '2+2?', 'chosen': '4', 'rejected': '5'}
    """
    _check_choice("pairs", pairs, PAIRINGS)
    _check_choice("ties", ties, TIES)
    _check_choice("format", format, FORMATS)
    _check_choice("chosen", chosen, CHOSEN)
    if isinstance(min_margin, bool) or not isinstance(min_margin, (int, float)) or min_margin < 0:
        raise ValueError(f"min_margin must be a number >= 0, got {min_margin!r}.")
    verified = chosen == "verified"
    pairwise = not verified and rating_column not in ds.column_names and preference_column in ds.column_names
    judged = verified_column if verified else preference_column if pairwise else rating_column
    needed = [prompt_column, generations_column, judged]
    missing = [column for column in [*needed, *keep_columns] if column not in ds.column_names]
    if missing:
        how = (
            "Check the answers first with mapgen.verify(...)"
            if verified
            else "Label it first with mapgen.label(...)"
        )
        raise ValueError(
            f"to_preference needs column(s) {missing}, which the dataset does not have "
            f"(columns: {ds.column_names}). {how}, or name the columns."
        )
    if (pairwise or verified) and min_margin:
        what = f"a pairwise {preference_column!r} column" if pairwise else f"chosen={chosen!r}"
        raise ValueError(
            f"min_margin compares ratings, and the pairs come from {what} instead: leave min_margin at 0."
        )
    rated = not pairwise and not verified
    checked = consistent_only and rated and CONSISTENCY in ds.column_names
    dropped: Counter[str] = Counter()

    def make_pairs(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            "prompt": [],
            "chosen": [],
            "rejected": [],
            **({"chosen_rating": [], "rejected_rating": []} if rated else {}),
            **{column: [] for column in keep_columns},
        }
        for i, prompt in enumerate(batch[prompt_column]):
            generations = batch[generations_column][i] or []
            if verified:
                found = _verified_pairs(generations, batch[verified_column][i] or [], pairs)
            elif pairwise:
                found = _preferred(generations, batch[preference_column][i], ties, dropped)
            else:
                ratings = batch[rating_column][i] or []
                held = batch[CONSISTENCY][i] if checked else True
                found = _row_pairs(generations, ratings, pairs, ties, min_margin, held, dropped)
            for better, worse in found:
                out["prompt"].append(_message("user", prompt) if format == "chat" else prompt)
                for side, index in (("chosen", better), ("rejected", worse)):
                    text = generations[index]
                    out[side].append(_message("assistant", text) if format == "chat" else text)
                    if rated:
                        out[f"{side}_rating"].append(float(ratings[index]))
                for column in keep_columns:
                    out[column].append(batch[column][i])
        return out

    # Not from datasets' cache: the counts of what was dropped come from running it.
    result = ds.map(
        make_pairs,
        batched=True,
        remove_columns=ds.column_names,
        load_from_cache_file=False,
        desc="Preference pairs",
    )
    _report(dropped, result.num_rows, min_margin)
    if result.num_rows == 0:  # datasets keeps the input's columns when every batch came back empty
        text = ds.features[prompt_column], _element(ds.features[generations_column])
        prompt, answer = (_chat(feature) for feature in text) if format == "chat" else text
        columns = {"prompt": prompt, "chosen": answer, "rejected": answer}
        if rated:
            columns |= {
                "chosen_rating": datasets.Value("float64"),
                "rejected_rating": datasets.Value("float64"),
            }
        columns |= {column: ds.features[column] for column in keep_columns}
        features = datasets.Features(columns)
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return result


def _element(feature: Any) -> Any:
    """The feature of one entry of a list column (``generations``: each a string)."""
    return feature.feature if hasattr(feature, "feature") else feature[0]


def _chat(content: Any) -> list[dict[str, Any]]:
    """The feature of a one-message chat list whose content has feature ``content``."""
    return [{"role": datasets.Value("string"), "content": content}]


def _report(dropped: Counter[str], kept: int, min_margin: float) -> None:
    """Log how many pairs each filter dropped; warn when the margin or the consistency filter did."""
    total = sum(dropped.values())
    why = {
        "inconsistent": "inconsistent (the order of the answers changed the judge's ranking)",
        "unjudged": "unchecked (no verdict in one of the two orders)",
        "tie": "tied",
        "margin": f"within min_margin={min_margin}",
    }
    parts = [f"{dropped[name]} {why[name]}" for name in DROPPED if dropped[name]]
    message = f"to_preference dropped {total} of {total + kept} pairs" + (
        f": {', '.join(parts)}" if parts else ""
    )
    logger.info(message)
    if dropped["inconsistent"] or dropped["unjudged"] or dropped["margin"]:
        warnings.warn(message, MapgenWarning, stacklevel=4)  # the caller, past checked_keywords


def _row_pairs(
    generations: Sequence[str | None],
    ratings: Sequence[float | None],
    pairs: str,
    ties: str,
    min_margin: float,
    held: bool | None = True,
    dropped: Counter[str] | None = None,
) -> list[tuple[int, int]]:
    """(chosen, rejected) indices for one row; the pairs it proposes but drops are counted in ``dropped``
    by why (:data:`DROPPED`): all of them when its order did not hold both ways (``held`` false), or
    could not be checked (``None``: a verdict missing in one order)."""
    dropped = Counter() if dropped is None else dropped
    rated: dict[int, float] = {
        i: rating
        for i in range(min(len(generations), len(ratings)))
        if generations[i] is not None and (rating := ratings[i]) is not None
    }
    if len(rated) < 2:
        return []
    # Stable sort, best first: among equal ratings the earlier generation comes first.
    order = sorted(rated, key=lambda i: -rated[i])

    if pairs == "best-worst":
        best, worst = order[0], order[-1]
        if rated[best] == rated[worst]:
            worst = order[1]  # all tied: the first two, in order
        proposed = [(best, worst)]
    elif pairs == "best-rest":
        proposed = [(order[0], other) for other in order[1:]]
    else:
        proposed = [(a, b) for k, a in enumerate(order) for b in order[k + 1 :]]
    if held is not True:
        dropped["inconsistent" if held is False else "unjudged"] += len(proposed)
        return []
    kept = []
    for a, b in proposed:
        margin = rated[a] - rated[b]
        if margin == 0 and ties == "drop":
            dropped["tie"] += 1
        elif margin != 0 and margin < min_margin:
            dropped["margin"] += 1
        else:
            kept.append((a, b))
    return kept


def _preferred(
    generations: Sequence[str | None], preference: str | None, ties: str, dropped: Counter[str]
) -> list[tuple[int, int]]:
    """(chosen, rejected) for one row of a pairwise verdict (``a``, ``b``, ``tie``, ``inconsistent``)."""
    if len(generations) != 2 or any(text is None for text in generations) or preference is None:
        return []
    if preference == INCONSISTENT:
        dropped["inconsistent"] += 1
        return []
    if preference == "tie" and ties == "drop":
        dropped["tie"] += 1
        return []
    return {"a": [(0, 1)], "b": [(1, 0)], "tie": [(0, 1)]}.get(preference, [])


def _verified_pairs(
    generations: Sequence[str | None], verified: Sequence[bool | None], pairs: str
) -> list[tuple[int, int]]:
    """(chosen, rejected) indices for one row of checked answers: a verified one against an unverified one."""
    shared = range(min(len(generations), len(verified)))
    passed = [i for i in shared if generations[i] is not None and verified[i] is True]
    failed = [i for i in shared if generations[i] is not None and verified[i] is False]
    if not passed or not failed:
        return []
    if pairs == "best-worst":
        return [(passed[0], failed[0])]
    if pairs == "best-rest":
        return [(passed[0], other) for other in failed]
    return [(a, b) for a in passed for b in failed]


def _message(role: str, content: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content}]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
