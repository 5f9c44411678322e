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
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from mapgen.core.review import ReviewLayout
from mapgen.core.schema import UNDOCUMENTED, answer_schema
from mapgen.tasks.base import ParseError
from mapgen.tasks.labelling import RATINGS, TEXTS, LabellingTask, check_scale
from mapgen.tasks.parsing import labelled_lines, load_json, one_line, read_score, score_list, strip_markdown

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


class Critique(BaseModel):
    """An UltraCM answer: the critique, then an overall score from 1 to 10."""

    model_config = UNDOCUMENTED

    critique: str = Field(max_length=800)
    score: int = Field(ge=1, le=10)


ULTRACM_SCHEMA: dict[str, Any] = answer_schema(Critique)

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


class Grade(BaseModel):
    """A Prometheus answer: feedback against the rubric, then the result, 1 to 5."""

    model_config = UNDOCUMENTED

    feedback: str = Field(max_length=800)
    result: Literal[1, 2, 3, 4, 5]


PROMETHEUS_SCHEMA: dict[str, Any] = answer_schema(Grade)


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
    answer_model: ClassVar[type[BaseModel]] = Critique
    score_output: ClassVar[str] = "score"
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and "score" in data:
            return {
                "critique": one_line(data.get("critique")),
                "score": check_scale(data["score"], self.scale),
            }
        clean = strip_markdown(text).strip()
        # The format's marker: "Overall score: n" lines, else "Score:"/"Rating:" lines; a score in the
        # critique's prose ("Rating: 2 of them matter") is not read, but a lone "Score: 7" beside an
        # "Overall score: 8" is a second score for the same text.
        overall = labelled_lines(clean, ("overall score", "overall rating"))
        others = labelled_lines(clean, ("final score", "score", "rating"))
        if overall:
            lone = [line for line in others if len(score_list(line.group(1)) or ()) == 1]
            lines = sorted(overall + lone, key=lambda line: line.start())
        else:
            lines = others
        if lines:
            score = _one_score([line.group(1) for line in lines], self.scale)
            critique = _without_lines(clean, lines, self.scale)
        else:
            # "... 9/10" or "a score of 7" that ends the answer
            end = re.search(
                r"(\d+(?:\.\d+)?)\s*/\s*10\W*$|\bscore\b\D{0,12}?(\d+(?:\.\d+)?)\W*$", clean, re.I
            )
            if end is None:
                raise ParseError("found no overall score (expected 'Overall score: n')")
            score, critique = check_scale(end.group(1) or end.group(2), self.scale), clean
        return {"critique": _critique(critique, ("critique", "feedback")), "score": score}

    def review(self) -> ReviewLayout:
        """Each generation rated, the judge's scores and critiques suggested."""
        low, high = self.scale
        return (
            super().review().replace(rubric=f"Overall, from {low} (unusable) to {high} (cannot be improved).")
        )


def _one_score(values: list[str], scale: tuple[int, int]) -> float | None:
    """The score of one text from its marker lines: they must agree (a restated score is fine)."""
    scores = [check_scale(value, scale) for value in values]
    if len(set(scores)) > 1:
        raise ParseError(f"two different scores for one text: {', '.join(v.strip() for v in values)}")
    return scores[0]


def _without_lines(text: str, lines: list[re.Match[str]], scale: tuple[int, int]) -> str:
    """``text`` without the score lines (what follows the score on its line, if anything, is kept)."""
    kept, last = [], 0
    for line in lines:
        kept.append(text[last : line.start()])
        kept.append(_after_score(line.group(1), scale))
        last = line.end()
    kept.append(text[last:])
    return "".join(kept)


def _after_score(value: str, scale: tuple[int, int]) -> str:
    """What a judge wrote after the score on its line (``7/10 - terse``: ``terse``), without the score,
    its scale and the separator."""
    return re.sub(r"^[^\w\n(]+", "", read_score(value, *scale)[1])


def _critique(text: str, labels: tuple[str, ...]) -> str | None:
    """The critique the judge wrote: from its ``Critique:`` label on (if any), without a bare
    ``### Feedback`` heading line; the label word itself is not the critique."""
    alternatives = "|".join(labels)
    labelled = labelled_lines(text, labels)
    if labelled:
        text = text[labelled[0].start(1) :]
    text = re.sub(rf"(?im)^[ \t>*_-]*(?:{alternatives}|evaluation|review)[ \t]*:?[ \t]*$", "", text)
    return one_line(re.sub(r"\n{3,}", "\n\n", text))


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
    answer_model: ClassVar[type[BaseModel]] = Grade
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

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and "result" in data:
            return {
                "critique": one_line(data.get("feedback")),
                "score": check_scale(data["result"], self.scale),
            }
        clean = strip_markdown(text).strip()
        results = list(_RESULT.finditer(clean))
        if results:
            last = results[-1]
            score = check_scale(last.group(1), self.scale)
            # The format ends with "[RESULT] n": a last marker that ends the answer wins over earlier
            # mentions in the feedback; otherwise markers must agree, or the answer is ambiguous.
            if not re.fullmatch(r"\s*\d+(?:\.\d+)?(?:\s*/\s*5)?[\s\W]*", clean[last.start(1) :]):
                score = _one_score([result.group(1) for result in results], self.scale)
            # feedback written after the result ("[RESULT] 4\nFeedback: ...") is feedback too
            after = (_after_score(last.group(1), self.scale), clean[last.end() :])
            feedback = "\n".join(part.strip() for part in (clean[: last.start()], *after) if part.strip())
        else:
            lines = labelled_lines(clean, ("result", "score"))
            if not lines:
                raise ParseError("found no '[RESULT] n'")
            score = _one_score([line.group(1) for line in lines], self.scale)
            feedback = _without_lines(clean, lines, self.scale)
        return {"critique": _critique(feedback, ("feedback",)), "score": score}

    def score_positions(self, text: str) -> list[int | None]:
        """Where the score that :meth:`parse` reads is written: the JSON ``result``, else the last
        ``[RESULT]`` (not an earlier mention of one in the feedback)."""
        match = re.search(r'"result"\s*:\s*"?(\d)', text)
        if match is None:
            match = next(reversed(list(re.finditer(r"(?i)\[\s*result\s*\][^\w\n]*(\d)", text))), None)
        return [match.start(1) if match else None]

    def review(self) -> ReviewLayout:
        """Each generation rated on the task's own rubric, the judge's scores and critiques suggested."""
        levels = "; ".join(f"{i}: {d}" for i, d in enumerate(self.score_descriptions, 1))
        return super().review().replace(rubric=f"{self.criteria} {levels}.")


_RESULT = re.compile(r"\[\s*result\s*\]\s*:?[ \t]*([^\n]*?)(?=\[\s*result\s*\]|\n|$)", re.IGNORECASE)
