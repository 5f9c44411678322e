"""JudgeLM: score each of N answers 1 to 10 on one first line, then one explanation.

Follows JudgeLM (Zhu et al., 2023): the judge sees the question and the answers in delimited blocks,
writes all scores first (so they can be read even if the explanation is cut off), then explains,
avoiding bias from answer order and length. The prompt text is mapgen's own.
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
from mapgen.tasks.parsing import (
    SCORE_TEXT,
    agree,
    labelled_scores,
    load_json,
    one_line,
    score_list,
    score_or_none,
    strip_markdown,
)

SYSTEM_PROMPT = "You are an impartial judge who scores AI assistants' answers for accuracy and usefulness."

TEMPLATE = """\
[Question]
{{ input }}

{% for text in generations %}[Answer of assistant {{ loop.index }}]
{{ text }}
[End of answer of assistant {{ loop.index }}]

{% endfor %}[Instructions]
Score how helpful, relevant, accurate and detailed each of the {{ generations | length }} answers is, \
from 1 (worst) to 10 (best). Do not let the order or the length of the answers sway you.
On the first line write only the {{ generations | length }} scores, in order, separated by spaces. \
From the second line on, explain your scores.
"""


class Scores(BaseModel):
    """A JudgeLM answer: every text's score, 1 to 10, in order, then one explanation."""

    model_config = UNDOCUMENTED

    scores: list[Annotated[int, Field(ge=1, le=10)]]
    explanation: str = Field(max_length=600)


SCHEMA: dict[str, Any] = answer_schema(Scores)


@dataclass(frozen=True, kw_only=True)
class JudgeLMTask(LabellingTask):
    """Score a row's ``generations`` for its ``input`` from 1 to 10, JudgeLM-style.

    Writes ``rating`` (one float or ``None`` per generation) and ``rationale`` (one explanation for the
    whole row).

    Example:
        >>> JudgeLMTask().parse("**8 6**\\n\\nThe first answer is correct; the second misses a step.")
        {'rating': [8.0, 6.0], 'rationale': 'The first answer is correct; the second misses a step.'}
    """

    system_prompt: str | None = SYSTEM_PROMPT
    template: str = TEMPLATE

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"rating": RATINGS, "rationale": pa.string()}
    answer_model: ClassVar[type[BaseModel]] = Scores
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and isinstance(data.get("scores"), list):
            return {
                "rating": [_score(value, self.scale) for value in data["scores"]],
                "rationale": one_line(data.get("explanation")),
            }
        lines = [line.strip() for line in strip_markdown(text).split("\n") if line.strip()]
        if lines and not re.search(r"\d", lines[0]) and lines[0].endswith(":"):
            lines = lines[1:]  # "Here are my scores:"
        if not lines:
            raise ParseError("empty answer")
        # The format's place: all scores on the first line ("8 6", "Scores: 8/10, 7/10", "Assistant 1: 8,
        # Assistant 2: 6"), and nothing else on it. Else one "Assistant n: x" line per answer.
        first = re.sub(r"^\W*(?:scores?|ratings?)\s*[:=]?", "", lines[0], flags=re.IGNORECASE)
        listed = score_list(first)
        head = dict(enumerate(listed, 1)) if listed is not None else labelled_scores(first)
        body = lines[1:] if head else lines
        if listed is not None and len(listed) == 1:
            # "8\n6\nexplanation": one score per line, the lines that hold a lone score before the
            # explanation (a near-miss of the format; more scores than texts are flagged by `label`)
            assert head is not None  # the listed score
            while body and (more := score_list(body[0])) is not None and len(more) == 1:
                head[len(head) + 1], body = more[0], body[1:]
        found = {i: _score(value, self.scale) for i, value in (head or {}).items()}
        for match in filter(None, map(_PER_LINE.fullmatch, body)):
            agree(found, int(match.group(1)), _score(match.group(2), self.scale))
        if not found:
            raise ParseError(f"first line {lines[0][:60]!r} is not a list of scores")
        rest = [line for line in body if not _PER_LINE.fullmatch(line)]
        return {
            "rating": [found.get(i) for i in range(1, max(found) + 1)],
            "rationale": one_line("\n".join(rest)),
        }

    def review(self) -> ReviewLayout:
        """Each generation rated on the judge's scale, its scores and rationale suggested."""
        low, high = self.scale
        rubric = f"Helpfulness, relevance, accuracy and detail, from {low} (worst) to {high} (best)."
        return super().review().replace(rubric=rubric)


# "Assistant 2: 6" (or "Answer 2 score: 6/10") alone on its line.
_PER_LINE = re.compile(
    rf"\W*(?:assistant|answer)\s*(\d+)\W*(?:score\W*)?[:=]?\s*({SCORE_TEXT})[\s.!]*", re.IGNORECASE
)


def _score(value: Any, scale: tuple[int, int]) -> float | None:
    return score_or_none(value, *scale)
