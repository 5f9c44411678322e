"""JudgeLM: score each of N answers 1 to 10 on one first line, then one explanation.

Follows JudgeLM (Zhu et al., 2023): the judge sees the question and the answers in delimited blocks,
writes all scores first (so they can be read even if the explanation is cut off), then explains,
avoiding bias from answer order and length. The prompt text is mapgen's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.tasks._parsing import load_json, one_line, strip_markdown
from mapgen.tasks.base import ParseError
from mapgen.tasks.labelling import RATINGS, LabellingTask, check_scale

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

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}},
        "explanation": {"type": "string", "maxLength": 600},
    },
    "required": ["scores", "explanation"],
}


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
    schema: ClassVar[dict[str, Any]] = SCHEMA
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and isinstance(data.get("scores"), list):
            return {
                "rating": [_score(value, self.scale) for value in data["scores"]],
                "rationale": one_line(data.get("explanation")),
            }
        lines = [line for line in strip_markdown(text).split("\n") if line.strip()]
        if not lines:
            raise ParseError("empty answer")
        # "Assistant 1: 8" / "Assistant 2: 6" lines, or all scores on the first line.
        per_line = [
            re.match(r"\W*(?:assistant|answer)\s*(\d+)\W*(?:score)?\W*(\d+(?:\.\d+)?)", line, re.IGNORECASE)
            for line in lines
        ]
        if sum(m is not None for m in per_line) >= 2:
            found = {int(m.group(1)): m.group(2) for m in per_line if m}
            scores = [_score(found.get(i), self.scale) for i in range(1, max(found) + 1)]
            rest = [line for line, m in zip(lines, per_line, strict=True) if m is None]
            return {"rating": scores, "rationale": one_line("\n".join(rest))}
        first = re.sub(r"^\W*(?:scores?|ratings?)\s*[:=]?", "", lines[0], flags=re.IGNORECASE)
        numbers = re.findall(r"(?<![\w.])(?:\d+(?:\.\d+)?(?:\s*/\s*10)?|n/a)(?![\w.])", first, re.IGNORECASE)
        if not numbers:
            raise ParseError(f"first line {lines[0][:60]!r} holds no scores")
        return {
            "rating": [_score(n, self.scale) for n in numbers],
            "rationale": one_line("\n".join(lines[1:])),
        }


def _score(value: Any, scale: tuple[int, int]) -> float | None:
    try:
        return check_scale(value, scale)
    except ParseError:
        return None
