"""UltraJudge: per-area ratings with rationales for each text, then a final score for each.

The judge is shown the instruction (the seed's template forgot it), rates every text on four areas
from 1 to 10 with a short rationale each, then gives each text a final score. The prompt text is
mapgen's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, Field, create_model

from mapgen.core.review import ReviewLayout
from mapgen.core.schema import UNDOCUMENTED, answer_schema
from mapgen.tasks.base import ParseError
from mapgen.tasks.labelling import RATINGS, LabellingTask
from mapgen.tasks.parsing import (
    agree,
    labelled_lines,
    labelled_scores,
    load_json,
    numbered_spans,
    one_line,
    read_score,
    score_list,
    score_or_none,
    strip_markdown,
)

AREAS = (
    ("Practical Accuracy", "is it correct, and would it work if someone acted on it?"),
    ("Clarity & Transparency", "is it easy to follow, and open about its assumptions and limits?"),
    ("Authenticity & Reliability", "is it genuine and trustworthy, free of invented claims?"),
    ("Compliance with Intent", "does it do what the instruction actually asks?"),
)
"""The four areas, with what each asks."""

AREAS_NAMES = tuple(name for name, _ in AREAS)

AREA_RESULT = pa.struct([("rating", pa.float64()), ("rationale", pa.string())])
AREAS_TYPE = pa.list_(pa.struct([(name, AREA_RESULT) for name, _ in AREAS]))
"""One struct per text: area name -> ``{rating, rationale}``."""

SYSTEM_PROMPT = "You are a meticulous reviewer who judges answers area by area before giving a verdict."

TEMPLATE = """\
Review the {{ generations | length }} answers below to the same instruction.

[Instruction]
{{ input }}

{% for text in generations %}[Answer {{ loop.index }}]
{{ text }}
[End of answer {{ loop.index }}]

{% endfor %}For each answer, rate these areas from 1 (poor) to 10 (excellent), with a one-sentence \
rationale each:
{% for name, question in areas %}- {{ name }}: {{ question }}
{% endfor %}
Answer format, for each answer in order:

Answer <n>
{% for name, _ in areas %}- {{ name }}: <1 to 10> - <rationale>
{% endfor %}
Then, on the last line, the final score of each answer (1 to 10), in order:
Final scores: <score of answer 1> <score of answer 2> ...
"""


class AreaRating(BaseModel):
    """One area of one answer: its rating, 1 to 10, and a one-sentence rationale."""

    model_config = UNDOCUMENTED

    rating: int = Field(ge=1, le=10)
    rationale: str = Field(max_length=200)


_REVIEW_FIELDS: dict[str, Any] = {
    f"area_{i}": (AreaRating, Field(alias=name)) for i, (name, _) in enumerate(AREAS)
}
ReviewedAnswer = create_model(
    "ReviewedAnswer",
    __config__=UNDOCUMENTED,
    __doc__="One answer's review: every area (under its name), then the final score, 1 to 10.",
    **_REVIEW_FIELDS,
    final_score=(int, Field(ge=1, le=10)),
)
"""One answer's review (a model built from :data:`AREAS`, whose names are its fields' aliases)."""


class Review(BaseModel):
    """An UltraJudge answer: one review per answer, in order."""

    model_config = UNDOCUMENTED

    answers: list[ReviewedAnswer]  # type: ignore[valid-type]  # a model built at run time


SCHEMA: dict[str, Any] = answer_schema(Review)


@dataclass(frozen=True, kw_only=True)
class UltraJudgeTask(LabellingTask):
    """Rate a row's ``generations`` for its ``input`` on four areas, then give each a final score.

    Writes ``rating`` (the judge's final score, 1 to 10, per generation: ``None`` where it gave none, never
    a mean of the areas) and ``areas`` (per generation: area name -> ``{"rating", "rationale"}``).

    Example:
        >>> answer = (
        ...     "Answer 1\\n- Practical Accuracy: 8 - right\\n- Clarity & Transparency: 7 - clear\\n"
        ...     "- Authenticity & Reliability: 9 - sourced\\n- Compliance with Intent: 8 - on task\\n"
        ...     "Final scores: 8"
        ... )
        >>> parsed = UltraJudgeTask().parse(answer)
        >>> parsed["rating"], parsed["areas"][0]["Practical Accuracy"]
        ([8.0], {'rating': 8.0, 'rationale': 'right'})
    """

    system_prompt: str | None = SYSTEM_PROMPT
    template: str = TEMPLATE

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"rating": RATINGS, "areas": AREAS_TYPE}
    answer_model: ClassVar[type[BaseModel]] = Review
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def template_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().template_values(row), "areas": AREAS}

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and isinstance(data.get("answers"), list):
            reviews = [_areas_from_json(entry) for entry in data["answers"]]
            scores = [_score(_get(entry, "final_score"), self.scale) for entry in data["answers"]]
            return {"rating": scores, "areas": reviews}
        clean = strip_markdown(text)
        spans = numbered_spans(clean)
        if not spans:
            raise ParseError("found no 'Answer <n>' blocks")
        count = max(number for number, _, _ in spans)
        areas: list[dict[str, Any] | None] = [None] * count
        for number, start, end in spans:
            if areas[number - 1] is None:
                areas[number - 1] = _areas_from_text(clean[start:end])
        finals = _final_scores(clean, spans, self.scale)
        count = max(count, *finals) if finals else count
        areas += [None] * (count - len(areas))
        if all(a is None for a in areas) and not finals:
            raise ParseError("found answer blocks but no ratings in them")
        return {"rating": [finals.get(i) for i in range(1, count + 1)], "areas": areas}

    def review(self) -> ReviewLayout:
        """Each generation rated 1 to 10, the final scores suggested with each area's rating and reason."""
        low, high = self.scale
        rubric = f"Overall, from {low} (poor) to {high} (excellent): accuracy, clarity, reliability, intent."
        return super().review().replace(rubric=rubric, explanation=explain_areas)


_FINAL = re.compile(r"^[^\w\n]*final\s+(scores?)[^\w\n]*?[:=]?[ \t]*([^\n]*)", re.IGNORECASE | re.MULTILINE)


def _final_scores(
    clean: str, spans: list[tuple[int, int, int]], scale: tuple[int, int]
) -> dict[int, float | None]:
    """The final score of each answer, by number: one ``Final scores: 8 6`` line (or ``Answer 1: 8,
    Answer 2: 6``, or that list on the lines below it), or a ``Final score: 8`` line inside each answer's
    block. Only what the judge wrote: an answer without a final score has none here."""
    lines = list(_FINAL.finditer(clean))
    found: dict[int, float | None] = {}
    for line in lines:
        content = line.group(2).strip()
        if not content:  # the list on the lines below: up to a blank line
            below = re.match(r"\n((?:[^\n]*\S[^\n]*(?:\n|$))+)", clean[line.end() :])
            content = ", ".join(below.group(1).split("\n")).strip(", ") if below else ""
        listed = score_list(content)
        labelled = labelled_scores(content) if listed is None else None
        if labelled is None:  # (labelled_scores gives None or at least one score)
            if listed is None:
                raise ParseError(f"final scores line {line.group(0).strip()[:60]!r} is not a list of scores")
            if len(lines) > 1 and len(listed) == 1:
                # one of several "Final score: 8" lines: it belongs to the answer whose block holds it
                owner = next((n for n, start, end in spans if start <= line.start() < end), None)
                if owner is None:
                    raise ParseError(f"final score {content!r} is outside every answer's block")
                labelled = {owner: listed[0]}
            else:
                labelled = dict(enumerate(listed, 1))
        for number, value in labelled.items():
            agree(found, number, _score(value, scale))
    return found


def _areas_from_json(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        return None
    result = {}
    for name, _ in AREAS:
        value = _get(entry, name)
        if isinstance(value, Mapping):
            result[name] = {
                "rating": _score(value.get("rating"), (1, 10)),
                "rationale": one_line(value.get("rationale")),
            }
        else:
            result[name] = {"rating": _score(value, (1, 10)), "rationale": None}
    return result


def _areas_from_text(block: str) -> dict[str, Any] | None:
    result = {}
    for name, _ in AREAS:
        words = re.split(r"\W+", name)
        lines = labelled_lines(block, (name, " and ".join(words), words[0]))
        entries = []
        for line in lines:
            # "8 - right", "8/10: right", or "8" with the rationale on the lines below (the seed's layout)
            rating, rest = read_score(line.group(1), 1, 10)
            if re.match(r"\w", rest):  # "3rd": not a rating
                rating, rest = None, line.group(1)
            rationale = re.sub(r"^[^\w\n(]*", "", rest)
            if not rationale.strip():
                rationale = _rationale_below(block[line.end() :])
            entries.append({"rating": rating, "rationale": one_line(rationale)})
        if len({entry["rating"] for entry in entries if entry["rating"] is not None}) > 1:
            raise ParseError(f"two different {name} ratings in one answer: {[e['rating'] for e in entries]}")
        result[name] = entries[0] if entries else {"rating": None, "rationale": None}
    if all(entry["rating"] is None for entry in result.values()):
        return None
    return result


def _rationale_below(rest: str) -> str:
    """The lines under an area's rating, up to a blank line or the next ``Label:``/``Label - n`` line."""
    kept = []
    for line in rest.lstrip("\n").split("\n"):
        if not line.strip() or re.match(r"[ \t>*_-]*[A-Z][\w &/']{0,40}\s*(?:[:=]|-\s*\d)", line):
            break
        kept.append(line.strip())
    text = " ".join(kept)
    return re.sub(r"^(?:rationale|reason|why)\s*[:=-]\s*", "", text, flags=re.IGNORECASE)


def _get(entry: Mapping[str, Any], name: str) -> Any:
    key = re.sub(r"\W+", "", name).lower()
    return next((v for k, v in entry.items() if re.sub(r"\W+", "", str(k)).lower() == key), None)


def _score(value: Any, scale: tuple[int, int]) -> float | None:
    return score_or_none(value, *scale)


def explain_areas(row: Mapping[str, Any], kept: Sequence[int]) -> str | None:
    """The ``areas`` of a row's shown generations as one text, for reviewers: per generation, each
    area's rating and rationale (``"Generation 1: Practical Accuracy 8 (right); ..."``)."""
    areas = row.get("areas") or []
    parts = []
    for i in kept:
        entry = areas[i] if i < len(areas) else None
        if entry:
            notes = "; ".join(
                f"{area} {_number(v.get('rating'))}" + (f" ({v['rationale']})" if v.get("rationale") else "")
                for area, v in entry.items()
                if v
            )
            parts.append(f"Generation {i + 1}: {notes}")
    return "\n".join(parts) or None


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "?" if value is None else str(value)
