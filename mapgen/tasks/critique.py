"""Critique tasks: a written critique and a score for each generation, one prompt per generation.

- :class:`UltraCMTask` follows UltraCM (the UltraFeedback critique model): specific, constructive
  feedback on one answer, then an overall score from 1 to 10.
- :class:`PrometheusTask` follows Prometheus (Kim et al., 2023): a rubric (criteria and a description
  of each score 1 to 5) and a reference answer that would score 5; feedback first, then ``[RESULT] n``.

The prompt texts are mapgen's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.prompt import Prompt
from mapgen.tasks._parsing import labelled_field, load_json, one_line, strip_markdown
from mapgen.tasks.base import ParseError, compile_template
from mapgen.tasks.labelling import RATINGS, TEXTS, LabellingTask, check_scale

ULTRACM_SYSTEM = (
    "You are a demanding but helpful reviewer. You point out exactly what an answer gets wrong or "
    "leaves out, and how to fix it, before you score it."
)

ULTRACM_TEMPLATE = """\
[Instruction]
{{ input }}

[Answer to review]
{{ generation }}

Write a specific, constructive critique of this answer: what is right, what is wrong or missing, and \
how it could be improved. Then score it overall from 1 (unusable) to 10 (cannot be improved).

Answer format:
Critique: <your critique>
Overall score: <1 to 10>
"""

ULTRACM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "critique": {"type": "string", "maxLength": 800},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["critique", "score"],
}

PROMETHEUS_SYSTEM = "You are a fair evaluator who grades answers strictly by the rubric you are given."

PROMETHEUS_TEMPLATE = """\
Grade the answer below against the rubric. A reference answer that deserves a 5 is given for comparison.

[Instruction]
{{ input }}

[Answer to grade]
{{ generation }}

[Reference answer (score 5)]
{{ ref_completion }}

[Rubric: {{ criteria }}]
{% for description in score_descriptions %}Score {{ loop.index }}: {{ description }}
{% endfor %}
First write feedback that assesses the answer strictly against the rubric, without a general judgement. \
Then end with "[RESULT]" followed by an integer from 1 to 5, like this:
Feedback: <your feedback> [RESULT] <1 to 5>
"""

PROMETHEUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "feedback": {"type": "string", "maxLength": 800},
        "result": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
    },
    "required": ["feedback", "result"],
}


@dataclass(frozen=True, kw_only=True)
class UltraCMTask(LabellingTask):
    """Critique each of a row's ``generations`` for its ``input`` and score it 1 to 10 (UltraCM).

    One prompt per generation. Writes ``critique`` and ``score``, one per generation.

    Example:
        >>> UltraCMTask().parse("**Critique:** Correct but terse.\\n\\nOverall score: 7/10")
        {'critique': 'Correct but terse.', 'score': 7.0}
    """

    system_prompt: str | None = ULTRACM_SYSTEM
    template: str = ULTRACM_TEMPLATE

    one_request_per_item: ClassVar[bool] = True
    outputs: ClassVar[Mapping[str, pa.DataType]] = {"critique": TEXTS, "score": RATINGS}
    schema: ClassVar[dict[str, Any]] = ULTRACM_SCHEMA
    score_output: ClassVar[str] = "score"
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and "score" in data:
            return {
                "critique": one_line(data.get("critique")),
                "score": check_scale(data["score"], self.scale),
            }
        clean = strip_markdown(text)
        score = labelled_field(clean, ("overall score", "score", "rating"))
        if score is None:
            # "... 7/10" or "Score 7" somewhere at the end
            match = re.search(
                r"(\d+(?:\.\d+)?)\s*/\s*10\b|score\D{0,12}(\d+(?:\.\d+)?)", clean, re.IGNORECASE
            )
            if match is None:
                raise ParseError("found no overall score (expected 'Overall score: n')")
            score = match.group(1) or match.group(2)
        critique = labelled_field(clean, ("critique", "feedback"), multiline=True)
        if critique is None:
            critique = re.split(r"(?im)^\W*(?:overall\s+)?score\b", clean)[0]
        return {"critique": one_line(critique), "score": check_scale(score, self.scale)}


@dataclass(frozen=True, kw_only=True)
class PrometheusTask(LabellingTask):
    """Grade each of a row's ``generations`` against a rubric and the row's reference answer, 1 to 5.

    Reads ``input``, ``generations`` and ``ref_completion`` (a reference answer that deserves a 5).
    ``criteria`` names what the rubric measures; ``score_descriptions`` describe scores 1 to 5. One
    prompt per generation. Writes ``critique`` (the feedback) and ``score``, one per generation.

    Example:
        >>> task = PrometheusTask(
        ...     criteria="Is the answer factually correct?",
        ...     score_descriptions=("Wrong.", "Mostly wrong.", "Half right.", "Mostly right.", "Right."),
        ... )
        >>> task.parse("Feedback: The date is off by a year. [RESULT] 3")
        {'critique': 'The date is off by a year.', 'score': 3.0}
    """

    criteria: str
    score_descriptions: tuple[str, str, str, str, str]
    system_prompt: str | None = PROMETHEUS_SYSTEM
    template: str = PROMETHEUS_TEMPLATE

    one_request_per_item: ClassVar[bool] = True
    outputs: ClassVar[Mapping[str, pa.DataType]] = {"critique": TEXTS, "score": RATINGS}
    schema: ClassVar[dict[str, Any]] = PROMETHEUS_SCHEMA
    score_output: ClassVar[str] = "score"
    scale: ClassVar[tuple[int, int]] = (1, 5)

    def __post_init__(self) -> None:
        if not isinstance(self.criteria, str) or not self.criteria.strip():
            raise ValueError("criteria must be a non-empty string: what the rubric measures.")
        if len(self.score_descriptions) != 5 or not all(isinstance(d, str) for d in self.score_descriptions):
            raise ValueError("score_descriptions must be five strings, describing scores 1 to 5.")
        object.__setattr__(self, "score_descriptions", tuple(self.score_descriptions))

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("input", "generations", "ref_completion")

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        text = compile_template(self.template).render(
            **row, criteria=self.criteria, score_descriptions=self.score_descriptions
        )
        return Prompt(text, system=self.system_prompt)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and "result" in data:
            return {
                "critique": one_line(data.get("feedback")),
                "score": check_scale(data["result"], self.scale),
            }
        clean = strip_markdown(text)
        results = re.findall(r"\[\s*result\s*\]\s*:?\s*(\S+)", clean, re.IGNORECASE)
        if results:
            score = results[-1]
            feedback = clean[: clean.lower().rfind("[result")]
        else:
            score = labelled_field(clean, ("result", "score"))
            if score is None:
                raise ParseError("found no '[RESULT] n'")
            feedback = re.split(r"(?im)^\W*(?:result|score)\b", clean)[0]
        feedback = re.sub(r"^\W*feedback\W*[:=]?\s*", "", feedback.strip(), flags=re.IGNORECASE)
        return {"critique": one_line(feedback), "score": check_scale(score, self.scale)}

    def score_positions(self, text: str) -> list[int | None]:
        match = re.search(r'"result"\s*:\s*"?(\d)', text) or re.search(r"(?i)\[result\]\W*(\d)", text)
        return [match.start(1) if match else None]
