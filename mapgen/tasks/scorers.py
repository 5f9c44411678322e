"""Deita-style scorers: a quality score per response, a complexity score per instruction.

Following Deita (Liu et al., 2023), the judge sees all variants together (responses to one instruction,
or several instructions) so that its scores separate them, and answers with ``[n] Score: x`` lines.
Answers are read tolerantly: blank lines, bold, ``Score: 7/10`` and missing lines do not break them.
The prompt texts are mapgen's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, Field

from mapgen.core.review import ReviewLayout
from mapgen.core.schema import UNDOCUMENTED, answer_schema
from mapgen.tasks.base import ParseError
from mapgen.tasks.labelling import RATINGS, LabellingTask
from mapgen.tasks.parsing import SCORE_TEXT, agree, load_json, score_or_none, strip_markdown

QUALITY_TEMPLATE = """\
Score the quality of each response to the instruction below, from 1 (poor) to 10 (excellent). \
Consider helpfulness, relevance, accuracy, depth and level of detail; give different responses \
different scores where their quality differs.

[Instruction]
{{ input }}

{% for text in generations %}[Response {{ loop.index }}]
{{ text }}

{% endfor %}Answer with one line per response, in order, and nothing else:
{% for text in generations %}[{{ loop.index }}] Score: <1 to 10>
{% endfor %}"""

COMPLEXITY_TEMPLATE = """\
Score the complexity of each instruction below, from 1 (trivial) to 10 (very demanding). \
Consider how much knowledge, reasoning, and how many steps and constraints answering it takes; \
give different instructions different scores where their complexity differs.

{% for text in instructions %}[Instruction {{ loop.index }}]
{{ text }}

{% endfor %}Answer with one line per instruction, in order, and nothing else:
{% for text in instructions %}[{{ loop.index }}] Score: <1 to 10>
{% endfor %}"""


class Scores(BaseModel):
    """A scorer's answer: every text's score, 1 to 10, in order."""

    model_config = UNDOCUMENTED

    scores: list[Annotated[int, Field(ge=1, le=10)]]


SCHEMA: dict[str, Any] = answer_schema(Scores)


_MARK = r"(?:\[(\d+)\]|(?:response|instruction|answer|text)\s*#?\s*(\d+)|(\d+)[.)])"
# the whole score as written ("3-4", "4/5" too), so that parse_score sees a range or another scale
_VALUE = rf"({SCORE_TEXT})"
# "[2] Score: 3": the format's own marker; the value may be followed by a comment.
_EXPLICIT = re.compile(rf"^[^\w\n\[]*{_MARK}[^\w\n]*score\b[^\w\n]*{_VALUE}", re.IGNORECASE | re.MULTILINE)
# "2. 3", "Response 2: 3": a number alone after the item's marker, and nothing else on the line.
_BARE = re.compile(
    rf"^[^\w\n\[]*(?:\[(\d+)\]|(?:response|instruction|answer|text)\s*#?\s*(\d+)|(\d+)[.):\]])"
    rf"[^\w\n]*?{_VALUE}[^\w\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_PLAIN = re.compile(rf"^[^\w\n]*score[^\w\n]*{_VALUE}", re.IGNORECASE | re.MULTILINE)


def parse_score_lines(text: str, scale: tuple[int, int]) -> list[float | None]:
    """Scores from ``[n] Score: x`` lines (or lines that hold only ``n. x`` or ``Response n: x``, or
    unnumbered ``Score: x`` lines, or JSON ``{"scores": [...]}``), placed by their number; numbers missing
    in between are ``None``.

    A numbered reasoning list (``1. 4 facts are listed``) is not a score line, and ``[n] Score`` lines,
    where present, are the only ones read. Two different scores for one number raise
    :class:`ParseError`.

    Example:
        >>> parse_score_lines("[1] Score: 7\\n\\n\\n[3] **Score**: 4/10", (1, 10))
        [7.0, None, 4.0]
        >>> parse_score_lines("1. 4 facts are ok.\\n2. 2 are wrong.\\n[1] Score: 9\\n[2] Score: 3", (1, 10))
        [9.0, 3.0]
    """
    data = load_json(text)
    if isinstance(data, dict) and isinstance(data.get("scores"), list):
        return [_score(value, scale) for value in data["scores"]]
    clean = strip_markdown(text)
    found: dict[int, float | None] = {}
    for pattern in (_EXPLICIT, _BARE):
        for match in pattern.finditer(clean):
            number = int(match.group(1) or match.group(2) or match.group(3))
            agree(found, number, _score(match.group(4), scale))
        if found:
            break
    if not found:
        plain = [_score(match.group(1), scale) for match in _PLAIN.finditer(clean)]
        found = {i + 1: value for i, value in enumerate(plain)}
    if not found:
        raise ParseError("found no '[n] Score: x' lines")
    return [found.get(i) for i in range(1, max(found) + 1)]


@dataclass(frozen=True, kw_only=True)
class QualityScorerTask(LabellingTask):
    """Score the quality of each of a row's ``generations`` for its ``input``, 1 to 10 (Deita).

    Writes ``rating`` (one float or ``None`` per generation).

    Example:
        >>> QualityScorerTask().parse("[1] Score: 8\\n\\n[2] Score: 3")
        {'rating': [8.0, 3.0]}
    """

    template: str = QUALITY_TEMPLATE
    system_prompt: str | None = None

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"rating": RATINGS}
    answer_model: ClassVar[type[BaseModel]] = Scores
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def parse(self, text: str) -> dict[str, Any]:
        return {"rating": parse_score_lines(text, self.scale)}

    def review(self) -> ReviewLayout:
        """Each generation rated on the judge's scale, its scores suggested."""
        low, high = self.scale
        rubric = f"Helpfulness, relevance, accuracy and detail, from {low} (worst) to {high} (best)."
        return super().review().replace(rubric=rubric)


@dataclass(frozen=True, kw_only=True)
class ComplexityScorerTask(LabellingTask):
    """Score the complexity of each of a row's ``instructions``, 1 to 10 (Deita).

    Writes ``rating`` (one float or ``None`` per instruction).

    Example:
        >>> task = ComplexityScorerTask()
        >>> task.inputs
        ('instructions',)
        >>> task.parse("[1] Score: 2\\n[2] Score: 9")
        {'rating': [2.0, 9.0]}
    """

    template: str = COMPLEXITY_TEMPLATE
    system_prompt: str | None = None

    items: ClassVar[str] = "instructions"
    item: ClassVar[str] = "instruction"
    outputs: ClassVar[Mapping[str, pa.DataType]] = {"rating": RATINGS}
    answer_model: ClassVar[type[BaseModel]] = Scores
    scale: ClassVar[tuple[int, int]] = (1, 10)

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("instructions",)

    def parse(self, text: str) -> dict[str, Any]:
        return {"rating": parse_score_lines(text, self.scale)}

    def review(self) -> ReviewLayout:
        """One record per instruction, its complexity score suggested."""
        low, high = self.scale
        return (
            super()
            .review()
            .replace(
                per_generation=True,
                text_fields={"input": "Input"},
                rubric=f"How complex is this instruction, from {low} (trivial) to {high} (very demanding)?",
                rating_title="Rate this instruction's complexity",
            )
        )


def _score(value: Any, scale: tuple[int, int]) -> float | None:
    return score_or_none(value, *scale)
