"""UltraJudge: per-area ratings with rationales for each text, then a final score for each.

The judge is shown the instruction (the seed's template forgot it), rates every text on four areas
from 1 to 10 with a short rationale each, then gives each text a final score. The prompt text is
mapgen's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.prompt import Prompt
from mapgen.tasks._parsing import labelled_field, load_json, numbered_blocks, one_line, strip_markdown
from mapgen.tasks.base import ParseError, compile_template
from mapgen.tasks.labelling import RATINGS, LabellingTask, check_scale

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

_AREA_ENTRY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 10},
        "rationale": {"type": "string", "maxLength": 200},
    },
    "required": ["rating", "rationale"],
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **{name: _AREA_ENTRY for name, _ in AREAS},
                    "final_score": {"type": "integer", "minimum": 1, "maximum": 10},
                },
                "required": [*(name for name, _ in AREAS), "final_score"],
            },
        }
    },
    "required": ["answers"],
}


@dataclass(frozen=True, kw_only=True)
class UltraJudgeTask(LabellingTask):
    """Rate a row's ``generations`` for its ``input`` on four areas, then give each a final score.

    Writes ``rating`` (final score 1 to 10 per generation; where the judge gave none, the mean of its
    area ratings) and ``areas`` (per generation: area name -> ``{"rating", "rationale"}``).

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
    schema: ClassVar[dict[str, Any]] = SCHEMA
    scale: ClassVar[tuple[int, int]] = (1, 10)

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        return Prompt(compile_template(self.template).render(**row, areas=AREAS), system=self.system_prompt)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and isinstance(data.get("answers"), list):
            areas = [_areas_from_json(entry) for entry in data["answers"]]
            finals = [_score(_get(entry, "final_score"), self.scale) for entry in data["answers"]]
            return {"rating": _fill(finals, areas), "areas": areas}
        clean = strip_markdown(text)
        final_line = re.search(r"(?im)^\W*final\s+scores?\W*[:=]?(.*)$", clean)
        body = clean[: final_line.start()] if final_line else clean
        blocks = numbered_blocks(body)
        if not blocks:
            raise ParseError("found no 'Answer <n>' blocks")
        count = max(blocks)
        areas: list[dict[str, Any] | None] = [None] * count
        for number, block in blocks.items():
            areas[number - 1] = _areas_from_text(block)
        finals: list[float | None] = [None] * count
        if final_line:
            numbers = re.findall(r"\d+(?:\.\d+)?|n/a", final_line.group(1), re.IGNORECASE)
            for i, value in enumerate(numbers[:count]):
                finals[i] = _score(value, self.scale)
        if all(a is None for a in areas) and all(f is None for f in finals):
            raise ParseError("found answer blocks but no ratings in them")
        return {"rating": _fill(finals, areas), "areas": areas}


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
        value = labelled_field(block, (name, " and ".join(words), words[0]))
        if value is None:
            result[name] = {"rating": None, "rationale": None}
            continue
        match = re.match(r"\s*(\d+(?:\.\d+)?(?:\s*/\s*10)?|n/a)\W*(.*)", value, re.IGNORECASE)
        rating = _score(match.group(1), (1, 10)) if match else None
        result[name] = {"rating": rating, "rationale": one_line(match.group(2) if match else value)}
    if all(entry["rating"] is None for entry in result.values()):
        return None
    return result


def _fill(finals: list[float | None], areas: list[dict[str, Any] | None]) -> list[float | None]:
    """Final scores, with the mean of the area ratings where the judge gave no final score."""
    filled = list(finals) + [None] * (len(areas) - len(finals))
    for i, entry in enumerate(areas):
        if filled[i] is None and entry:
            ratings = [area["rating"] for area in entry.values() if area["rating"] is not None]
            filled[i] = round(sum(ratings) / len(ratings), 2) if ratings else None
    return filled


def _get(entry: Mapping[str, Any], name: str) -> Any:
    key = re.sub(r"\W+", "", name).lower()
    return next((v for k, v in entry.items() if re.sub(r"\W+", "", str(k)).lower() == key), None)


def _score(value: Any, scale: tuple[int, int]) -> float | None:
    try:
        return check_scale(value, scale)
    except ParseError:
        return None
