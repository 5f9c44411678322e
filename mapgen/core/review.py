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
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Explain = Callable[[Mapping[str, Any], Sequence[int]], "str | None"]
"""Builds the text suggestion of a row from its outputs: ``explain(row, kept)``, where ``kept`` are the
positions of the entries shown (entries that are ``None`` or empty are not)."""


@dataclass(frozen=True)
class AnswerField:
    """One field of a structured answer as reviewers see and correct it: shown as a text field of its
    own, with a question on it. ``labels``: a label question with these labels (a ``Literal`` or enum
    field's values, as text); else ``scale``: a rating question from ``scale[0]`` to ``scale[1]`` (a
    bounded integer field); else a text question, where the reviewer writes the right value.
    ``required``: the field is in every answer (the question must be answered).

    Example:
        >>> AnswerField("label", labels=("positive", "negative")).question
        'label'
    """

    name: str
    labels: tuple[str, ...] = ()
    scale: tuple[int, int] | None = None
    required: bool = True

    @property
    def question(self) -> str:
        """The question's kind: ``label``, ``rating`` or ``text``."""
        return "label" if self.labels else "rating" if self.scale else "text"


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
    - ``answer_fields``: a structured answer's fields (:class:`AnswerField`); when given, each answer is
      a record (``per_generation``) whose fields are the answer's fields, each with its own question
      (the answer's value suggested) instead of one rating; ``items`` is one of these columns.
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
    answer_fields: tuple[AnswerField, ...] = ()

    def __post_init__(self) -> None:
        low, high = self.scale
        if not (isinstance(low, int) and isinstance(high, int) and low < high):
            raise ValueError(f"scale must be two ints, low < high, got {self.scale!r}.")
        if self.answer_fields and not self.per_generation:
            raise ValueError(
                "answer_fields review each answer as a record of its own: set per_generation=True."
            )

    def replace(self, **changes: Any) -> ReviewLayout:
        """This layout with ``changes``: how a task adjusts the layout it inherits.

        Example:
            >>> ReviewLayout().replace(scale=(1, 10)).scale
            (1, 10)
        """
        return dataclasses.replace(self, **changes)


def answer_fields(schema: Mapping[str, Any]) -> tuple[AnswerField, ...]:
    """The :class:`AnswerField` s of an object JSON schema's top-level properties (``$defs`` inlined, as
    :func:`mapgen.core.schema.answer_schema` writes it): an ``enum`` or ``Literal`` of two values or more
    (an ``Enum`` too) or a boolean gets labels (each value as :func:`answer_text` writes it); an integer
    bounded within 0 to 10 (``Field(ge=1, le=5)``) a rating scale; anything else a text question.
    ``Optional[...]`` fields, and those the schema does not require, are not required.

    Example:
        >>> schema = {"type": "object", "required": ["sentiment", "stars"], "properties": {
        ...     "sentiment": {"enum": ["positive", "negative"], "type": "string"},  # a Literal
        ...     "stars": {"type": "integer", "minimum": 1, "maximum": 5},  # Field(ge=1, le=5)
        ...     "summary": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}  # Optional[str]
        >>> for f in answer_fields(schema):
        ...     print(f.name, f.question, f.labels or f.scale, f.required)
        sentiment label ('positive', 'negative') True
        stars rating (1, 5) True
        summary text None False
    """
    required = set(schema.get("required") or ())
    found = []
    for name, node in (schema.get("properties") or {}).items():
        node, nullable = _non_null(node)
        labels: tuple[str, ...] = ()
        if "enum" in node or "const" in node:
            values = node["enum"] if "enum" in node else [node["const"]]
            labels = tuple(dict.fromkeys(answer_text(v) for v in values if v is not None))
        elif node.get("type") == "boolean":
            labels = ("true", "false")
        found.append(
            AnswerField(
                name,
                labels=labels if len(labels) >= 2 else (),
                scale=None if labels else _scale(node),
                required=name in required and not nullable,
            )
        )
    return tuple(found)


def answer_text(value: Any) -> str:
    """A structured answer's value as reviewers read it: a string as it is, anything else as JSON.

    Example:
        >>> answer_text("Paris"), answer_text(True), answer_text({"x": 1})
        ('Paris', 'true', '{"x": 1}')
    """
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _non_null(node: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """A property's schema without its ``null`` option (``Optional[X]``), and whether it had one."""
    options = node.get("anyOf") or node.get("oneOf")
    if options:
        others = [o for o in options if o.get("type") != "null"]
        if len(others) == 1:
            return others[0], len(others) < len(options)
    kind = node.get("type")
    if isinstance(kind, list) and "null" in kind:
        others = [k for k in kind if k != "null"]
        return ({**node, "type": others[0]} if len(others) == 1 else node), True
    return node, False


def _scale(node: Mapping[str, Any]) -> tuple[int, int] | None:
    """The rating scale of an integer bounded within 0 to 10 (what a rating question takes), else None."""
    if node.get("type") != "integer":
        return None
    low = node.get("minimum", _after(node.get("exclusiveMinimum"), 1))
    high = node.get("maximum", _after(node.get("exclusiveMaximum"), -1))
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 <= low < high <= 10:
        return (math.ceil(low), math.floor(high))
    return None


def _after(bound: Any, step: int) -> Any:
    return bound + step if isinstance(bound, (int, float)) and not isinstance(bound, bool) else None


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
