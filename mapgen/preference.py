"""``mapgen.to_preference``: turn rated rows into ``prompt`` / ``chosen`` / ``rejected`` pairs (DPO)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import datasets

from mapgen.core.keywords import checked_keywords

PAIRINGS = ("best-worst", "best-rest", "all")
TIES = ("drop", "keep")
FORMATS = ("text", "chat")


@checked_keywords
def to_preference(
    ds: datasets.Dataset,
    *,
    pairs: Literal["best-worst", "best-rest", "all"] = "best-worst",
    ties: Literal["drop", "keep"] = "drop",
    min_margin: float = 0.0,
    format: Literal["text", "chat"] = "text",
    prompt_column: str = "input",
    generations_column: str = "generations",
    rating_column: str = "rating",
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
    - ties: a pair whose ratings differ by no more than ``min_margin`` is dropped (``ties="drop"``,
      default), since it carries no preference; ``ties="keep"`` keeps equal-rated pairs (ordered by
      position) for trainers that model ties;
    - ``format="chat"`` writes ``prompt`` as a user message list and ``chosen`` / ``rejected`` as
      assistant message lists (TRL's conversational format); ``"text"`` writes plain strings.

    ``rating_column`` may name ``weighted_rating`` (from ``label(..., weighted_ratings=True)``) or
    ``score`` (critique tasks).

    Example:
        >>> ds = datasets.Dataset.from_dict({
        ...     "input": ["2+2?", "Capital of Peru?", "Hi"],
        ...     "generations": [["4", "5", None], ["Lima", "Lima"], ["Hello", None]],
        ...     "rating": [[5.0, 1.0, None], [4.0, 4.0], [3.0, None]],
        ... })
        >>> pairs = to_preference(ds)
        >>> pairs.num_rows, pairs[0]
        (1, {'prompt': '2+2?', 'chosen': '4', 'rejected': '5', 'chosen_rating': 5.0, 'rejected_rating': 1.0})
    """
    _check_choice("pairs", pairs, PAIRINGS)
    _check_choice("ties", ties, TIES)
    _check_choice("format", format, FORMATS)
    if isinstance(min_margin, bool) or not isinstance(min_margin, (int, float)) or min_margin < 0:
        raise ValueError(f"min_margin must be a number >= 0, got {min_margin!r}.")
    needed = [prompt_column, generations_column, rating_column, *keep_columns]
    missing = [column for column in needed if column not in ds.column_names]
    if missing:
        raise ValueError(
            f"to_preference needs column(s) {missing}, which the dataset does not have "
            f"(columns: {ds.column_names}). Label it first with mapgen.label(...), or name the columns."
        )

    def make_pairs(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            "prompt": [],
            "chosen": [],
            "rejected": [],
            "chosen_rating": [],
            "rejected_rating": [],
            **{column: [] for column in keep_columns},
        }
        for i, prompt in enumerate(batch[prompt_column]):
            generations = batch[generations_column][i] or []
            ratings = batch[rating_column][i] or []
            for chosen, rejected in _row_pairs(generations, ratings, pairs, ties, min_margin):
                out["prompt"].append(_message("user", prompt) if format == "chat" else prompt)
                for side, index in (("chosen", chosen), ("rejected", rejected)):
                    text = generations[index]
                    out[side].append(_message("assistant", text) if format == "chat" else text)
                    out[f"{side}_rating"].append(float(ratings[index]))
                for column in keep_columns:
                    out[column].append(batch[column][i])
        return out

    return ds.map(make_pairs, batched=True, remove_columns=ds.column_names, desc="Preference pairs")


def _row_pairs(
    generations: Sequence[str | None],
    ratings: Sequence[float | None],
    pairs: str,
    ties: str,
    min_margin: float,
) -> list[tuple[int, int]]:
    """(chosen, rejected) indices for one row."""
    rated: dict[int, float] = {
        i: rating
        for i in range(min(len(generations), len(ratings)))
        if generations[i] is not None and (rating := ratings[i]) is not None
    }
    if len(rated) < 2:
        return []
    # Stable sort, best first: among equal ratings the earlier generation comes first.
    order = sorted(rated, key=lambda i: -rated[i])

    def keep(a: int, b: int) -> bool:
        margin = rated[a] - rated[b]
        return margin > min_margin or (ties == "keep" and margin == 0)

    if pairs == "best-worst":
        best, worst = order[0], order[-1]
        if rated[best] == rated[worst]:
            worst = order[1] if ties == "keep" else worst  # all tied: keep the first two, in order
        return [(best, worst)] if best != worst and keep(best, worst) else []
    if pairs == "best-rest":
        return [(order[0], other) for other in order[1:] if keep(order[0], other)]
    return [(a, b) for k, a in enumerate(order) for b in order[k + 1 :] if keep(a, b)]


def _message(role: str, content: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content}]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
