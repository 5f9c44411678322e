"""How people review a task's data: the layout each task declares for human review (Argilla).

A task says, through :meth:`~mapgen.Task.review`, which list column people read (``items``), whether each
of its entries is a record of its own (``per_generation``) or the row is one record that rates every
entry, which input columns are shown beside them, the rating scale and its rubric, and which of its
outputs are suggestions for the reviewer (the judge's score, its rationale or critique). Exporters
(:mod:`mapgen.integrations.argilla`) read this declaration only, never the task's class.

A task that declares nothing gets :func:`default_review`, derived from its inputs and outputs: a task
writing ``generations`` is reviewed one row at a time, each generation rated; a labelling task's score is
suggested on its own scale, with its ``rationale`` (or ``critique``) output; any other task's first output
is reviewed one entry per record.

Example:
    >>> import mapgen
    >>> layout = mapgen.UltraFeedbackTask.for_overall_quality().review()
    >>> layout.items, layout.per_generation, layout.scale, layout.rating_suggestion, layout.explanation
    ('generations', False, (1, 5), 'rating', 'rationale')
    >>> mapgen.SelfInstructTask().review().per_generation
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Explain = Callable[[Mapping[str, Any], Sequence[int]], "str | None"]
"""Builds the text suggestion of a row from its outputs: ``explain(row, kept)``, where ``kept`` are the
positions of the entries shown (entries that are ``None`` or empty are not)."""


@dataclass(frozen=True)
class ReviewLayout:
    """What a task's reviewers see and answer: see the module docs.

    - ``items``: the list column reviewed (``generations``, ``instructions``...).
    - ``per_generation``: ``False``, one record per row with a rating question per entry; ``True``, one
      record per entry (nested lists flattened) with one rating question.
    - ``text_fields``: the input columns shown beside the entries (those a row holds as text), each with
      its title; ``None``: the task's inputs but ``items``, ``input`` first.
    - ``scale`` and ``rubric``: the rating question's values and its description.
    - ``rating_title``: the rating question's title when ``per_generation`` (else "Rate generation i").
    - ``rating_suggestion``: the output whose values are suggested as ratings (``None``: no suggestion).
    - ``explanation``: the output suggested as the text question's answer (a column name, or an
      :data:`Explain` function for outputs that need formatting), ``None`` for none.
    - ``text_question``: the text question's name and title; ``None``: ``rationale``, "Why these
      ratings?" (or "Why this rating?" per entry).
    - ``guidelines``: shown to reviewers; ``None`` for the exporter's own, which names the task.
    """

    items: str = "generations"
    per_generation: bool = False
    text_fields: Mapping[str, str] | None = None
    scale: tuple[int, int] = (1, 5)
    rubric: str = "Overall quality, from 1 (poor) to 5 (excellent)."
    rating_title: str = "Rate this instruction"
    rating_suggestion: str | None = None
    explanation: str | Explain | None = None
    text_question: tuple[str, str] | None = None
    guidelines: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        low, high = self.scale
        if not (isinstance(low, int) and isinstance(high, int) and low < high):
            raise ValueError(f"scale must be two ints, low < high, got {self.scale!r}.")

    def replace(self, **changes: Any) -> ReviewLayout:
        """This layout with ``changes``: how a task adjusts the layout it inherits.

        Example:
            >>> ReviewLayout().replace(scale=(1, 10)).scale
            (1, 10)
        """
        return dataclasses.replace(self, **changes)


_TEXT_QUESTIONS = {
    "rationale": ("rationale", "Why these ratings?"),
    "critique": ("critique", "Critique of each generation: what is right, wrong or missing?"),
}


def default_review(task: Any) -> ReviewLayout:
    """The layout of a task that declares none, derived from its inputs and outputs (module docs).

    Example:
        >>> import mapgen
        >>> default_review(mapgen.TextGenerationTask()).rating_suggestion is None
        True
    """
    outputs = task.output_types()
    score = getattr(task, "score_output", None)
    if score is not None:  # a labelling task: its score is a suggestion, on its scale
        low, high = getattr(task, "scale", (1, 5))
        explanation = next((name for name in ("rationale", "critique") if name in outputs), None)
        return ReviewLayout(
            items=getattr(task, "items", "generations"),
            scale=(low, high),
            rubric=f"Overall quality, from {low} (poor) to {high} (excellent).",
            rating_suggestion=score if score in outputs else None,
            explanation=explanation,
            text_question=_TEXT_QUESTIONS.get(explanation or ""),
        )
    if "generations" in outputs or not outputs:
        return ReviewLayout()
    return ReviewLayout(
        items=next(iter(outputs)),
        per_generation=True,
        rubric="Is it clear, self-contained and usable? From 1 (unusable) to 5 (excellent).",
        rating_title="Rate this entry",
    )


def conversation_review(rubric: str) -> ReviewLayout:
    """The layout of tasks that write whole conversations (a ``conversation`` column in the chat format):
    one record per conversation, shown as a transcript, rated 1 to 5 against ``rubric``."""
    return ReviewLayout(
        items="conversation",
        per_generation=True,
        text_fields={},
        rating_title="Rate this conversation",
        rubric=rubric,
    )
