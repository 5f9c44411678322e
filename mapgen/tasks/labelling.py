"""The labelling contract: a task that judges the list of texts of each row (AI feedback).

A :class:`LabellingTask` is a :class:`~mapgen.tasks.base.Task` with a few class attributes more, so
that :func:`mapgen.label` knows what it rates:

- ``items``: the list column it judges (``generations`` by default; ``instructions`` for the
  complexity scorer). :func:`mapgen.label` drops the ``None`` entries before prompting, and puts the
  answers back in place, so rating ``i`` always belongs to text ``i``.
- ``one_request_per_item``: ``False`` (the default) when one prompt rates all texts at once (the
  template sees the list under ``items``); ``True`` when each text gets its own prompt (critique tasks:
  the template sees the single text under ``item``).
- ``outputs``: column name -> Arrow type of the column. A list-typed output holds one value per text;
  others are one value per row (JudgeLM's single ``rationale``).
- ``score_output`` and ``scale``: the numeric output and its range (``rating``, 1 to 5).

Example:
    >>> import pyarrow as pa
    >>> from dataclasses import dataclass
    >>> from mapgen.core.prompt import Prompt
    >>> @dataclass(frozen=True, kw_only=True)
    ... class Shortest(LabellingTask):
    ...     outputs = {"rating": pa.list_(pa.float64())}
    ...     inputs = ("generations",)
    ...     def prompt(self, row):
    ...         texts = "\\n".join(f"{i}. {t}" for i, t in enumerate(row["generations"], 1))
    ...         return Prompt(f"Score each text 1-5 for brevity, one number per line:\\n{texts}")
    ...     def parse(self, text):
    ...         return {"rating": [parse_score(line, 1, 5) for line in text.split()]}
    >>> Shortest().parse("4\\n2")
    {'rating': [4.0, 2.0]}
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.tasks.base import Task
from mapgen.tasks.parsing import parse_score

RATINGS = pa.list_(pa.float64())
"""Arrow type of a rating column: one float (or ``None``) per rated text."""

TEXTS = pa.list_(pa.string())
"""Arrow type of a rationale or critique column: one string (or ``None``) per rated text."""


@dataclass(frozen=True, kw_only=True)
class LabellingTask(Task):
    """Base of tasks that rate the list of texts in each row; see the module docs."""

    items: ClassVar[str] = "generations"
    """The list column whose entries are rated."""

    item: ClassVar[str] = "generation"
    """With ``one_request_per_item``, the name under which the template sees the single text."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The instruction and the list of texts it rates: ``("input", items)`` unless a task says more."""
        return ("input", self.items)

    @property
    def one_request_per_item(self) -> bool:
        """Whether each text gets a prompt of its own (see the module docs): usually a class attribute, or
        computed from the task's fields."""
        return False

    score_output: ClassVar[str] = "rating"
    """The numeric output; :func:`mapgen.label` can also write it probability-weighted."""

    scale: ClassVar[tuple[int, int]] = (1, 5)

    num_items: ClassVar[int | None] = None
    """How many texts a row must hold, none of them ``None`` (a pairwise judge: 2), or ``None`` for any
    number; :func:`mapgen.label` gives other rows an ``input`` error."""

    def merge_orders(
        self, given: Mapping[str, Any], reverse: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool | None]:
        """One row's outputs from its two verdicts (``mapgen.label(..., swap=True)``), and whether they
        agree.

        ``given`` was read from the texts in the row's order, ``reverse`` from them in reverse, its
        per-text outputs already put back in the row's order (an output of the whole row that names a
        position, such as a pairwise verdict, is the task's to put back). The default: the score of
        each text is the mean of both verdicts' (``None`` where either has none), the other outputs are
        ``given``'s, and the verdicts agree when both rank the texts the same way, ties included
        (:func:`same_ranking`).

        Example:
            >>> from mapgen.tasks.judgelm import JudgeLMTask
            >>> JudgeLMTask().merge_orders({"rating": [8.0, 6.0]}, {"rating": [6.0, 8.0]})
            ({'rating': [7.0, 7.0]}, False)
        """
        merged = dict(given)
        first, second = given.get(self.score_output), reverse.get(self.score_output)
        if not isinstance(first, list) or not isinstance(second, list):
            return merged, None
        merged[self.score_output] = mean_scores(first, second)
        return merged, same_ranking(first, second)

    def schema_for(self, count: int) -> dict[str, Any] | None:
        """The answer's JSON schema for ``count`` texts (``schema``, with arrays of ratings sized to
        ``count``, so that constrained backends write exactly one entry per text)."""
        if self.schema is None:
            return None
        schema = copy.deepcopy(self.schema)
        for prop in schema.get("properties", {}).values():
            if prop.get("type") == "array" and not self.one_request_per_item:
                prop["minItems"] = prop["maxItems"] = count
        return schema

    def score_positions(self, text: str) -> list[int | None]:
        """Where, in ``text``, the score of each rated text is written (character offsets of its
        first digit), in item order: what a probability-weighted score reads. The default finds
        ``"<score_output>": n`` (JSON answers) and else ``<score_output>: n`` lines."""
        key = re.escape(self.score_output)
        positions = [m.start(1) for m in re.finditer(rf'"{key}"\s*:\s*"?(\d)', text)]
        if not positions:
            positions = [m.start(1) for m in re.finditer(rf"(?im)^\W*{key}\W*[:=]\W*(\d)", text)]
        return list(positions)


def weighted_score(
    position: int | None,
    tokens: list[str] | None,
    top_logprobs: list[dict[str, float]] | None,
    scale: tuple[int, int],
) -> float | None:
    """The expected score at character ``position`` of an answer: the score values weighted by the
    probabilities the model gave them at that token (renormalised over the scale's values).

    ``None`` when the position, the token or the scale's digits are not there.

    Example:
        >>> import math
        >>> tokens = ['{"rating": ', "4", "}"]
        >>> top = [{}, {"4": math.log(0.5), "2": math.log(0.5), "x": math.log(0.1)}, {}]
        >>> weighted_score(11, tokens, top, (1, 5))
        3.0
    """
    if position is None or not tokens or not top_logprobs:
        return None
    offset = 0
    for token, alternatives in zip(tokens, top_logprobs, strict=False):
        if offset <= position < offset + len(token):
            if position != offset + len(token) - len(token.lstrip()):
                return None  # the digit is not at the token's start: tokenised with its neighbours
            values = {str(v): v for v in range(scale[0], scale[1] + 1)}
            weights: dict[int, float] = {}
            for piece, logprob in alternatives.items():
                value = values.get(piece.strip())
                if value is not None:
                    weights[value] = weights.get(value, 0.0) + math.exp(logprob)
            total = sum(weights.values())
            return sum(v * w for v, w in weights.items()) / total if total > 0 else None
        offset += len(token)
    return None


def mean_scores(first: list[Any], second: list[Any]) -> list[float | None]:
    """Each position's mean of two score lists, ``None`` where either is ``None``.

    Example:
        >>> mean_scores([4.0, None, 2.0], [5.0, 3.0, 2.0])
        [4.5, None, 2.0]
    """
    return [None if a is None or b is None else (a + b) / 2 for a, b in zip(first, second, strict=False)]


def same_ranking(first: list[Any], second: list[Any]) -> bool | None:
    """Whether two score lists order their positions the same way: for every two positions scored in
    both, the same one is higher (or both tie). ``None`` when a position is scored in one list only
    or fewer than two positions are scored: there is no ranking to compare.

    Example:
        >>> same_ranking([5, 1, 3], [4, 2, 3]), same_ranking([5, 1], [1, 5]), same_ranking([3, 3], [4, 3])
        (True, False, False)
    """
    if len(first) != len(second) or any(
        (a is None) != (b is None) for a, b in zip(first, second, strict=True)
    ):
        return None
    scored = [(a, b) for a, b in zip(first, second, strict=True) if a is not None]
    if len(scored) < 2:
        return None
    return all(
        _sign(a1 - a2) == _sign(b1 - b2) for k, (a1, b1) in enumerate(scored) for a2, b2 in scored[k + 1 :]
    )


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def check_scale(value: Any, scale: tuple[int, int]) -> float | None:
    """``parse_score`` on ``scale``."""
    return parse_score(value, *scale)
