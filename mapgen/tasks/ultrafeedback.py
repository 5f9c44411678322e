"""UltraFeedback: rate each of a row's generations for one instruction on 1 to 5, with a rationale.

The method follows the UltraFeedback paper (Cui et al., 2023): one aspect at a time, a 1-to-5 scale
whose every level is described, all texts for the same instruction shown together so that the judge
compares them, and a short rationale per rating. The prompt texts are mapgen's own.
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
from mapgen.tasks.labelling import RATINGS, TEXTS, LabellingTask
from mapgen.tasks.parsing import (
    SCORE_TEXT,
    agree,
    json_fields,
    labelled_field,
    labelled_lines,
    load_json,
    numbered_spans,
    one_line,
    score_or_none,
    strip_markdown,
)


@dataclass(frozen=True)
class Aspect:
    """What an UltraFeedback judge looks at, and the label and meaning of each rating 1 to 5."""

    name: str
    description: str
    levels: tuple[tuple[str, str], ...]
    """Five ``(label, meaning)`` pairs, for ratings 1 to 5."""


ASPECTS: dict[str, Aspect] = {
    "overall-quality": Aspect(
        name="Overall quality",
        description=(
            "Judge each text as a whole: does it do what the instruction asks, is it correct, useful, "
            "honest about what it does not know, and free of invented facts?"
        ),
        levels=(
            ("Low Quality", "off-topic, wrong, or unusable"),
            ("Moderate Quality", "partly right, with clear errors or gaps"),
            ("Good", "right and usable, with minor flaws"),
            ("Very Good", "right, clear and complete, with at most tiny flaws"),
            ("Excellent", "right, complete, clear and well suited to the instruction; hard to improve"),
        ),
    ),
    "helpfulness": Aspect(
        name="Helpfulness",
        description=(
            "Judge how informative and useful each text is: correct content, relevant detail, clarity, "
            "no needless length or repetition."
        ),
        levels=(
            ("Severely Incorrect", "major errors or fabrications that make it useless or misleading"),
            ("Partially Incorrect", "errors that may confuse, even if some content is right"),
            ("Correct", "accurate and meets the request, with little beyond it"),
            ("Highly Informative", "accurate, thorough and insightful"),
            ("Outstandingly Helpful", "accurate, deep and comprehensive, with valuable insight"),
        ),
    ),
    "truthfulness": Aspect(
        name="Truthfulness",
        description=(
            "Judge whether each text states only true things: no facts contrary to the world, no "
            "contradictions with the instruction or with itself, nothing made up."
        ),
        levels=(
            ("Completely Hallucinated", "entirely unreliable: invented or contradicted facts throughout"),
            ("Severe Hallucination", "nearly half is invented or strays far from the main points"),
            ("Partial Hallucination / Misunderstanding", "mostly true, with some invented content"),
            ("Insignificant Hallucination", "mostly true; slips do not touch the main points"),
            ("No Hallucination", "free of invented or contradicted content"),
        ),
    ),
    "honesty": Aspect(
        name="Honesty and uncertainty",
        description=(
            "Judge whether each text is confident where it is right and says so where it is unsure: "
            "hedges, 'I don't know', or a stated confidence count as expressions of uncertainty."
        ),
        levels=(
            ("Confidently Incorrect", "confident but entirely wrong"),
            (
                "Confident with Significant Mistakes / Unconfident Incorrect",
                "confident with major errors, or unsure and wrong",
            ),
            (
                "Uncertain / 'I Don't Know' / Subtle Mistakes",
                "declines to answer, or is unsure with minor errors",
            ),
            (
                "Correct but Uncertain / Expressed Subtle Mistakes",
                "right but hesitant, or points out its own small doubts",
            ),
            (
                "Correct and Confident / Precisely Express Uncertainty",
                "right and confident, and precise about what it is unsure of",
            ),
        ),
    ),
    "instruction-following": Aspect(
        name="Instruction following",
        description=(
            "Judge how closely each text follows the instruction: its task goal and its restrictions "
            "(format, style, length, method). Ignore whether the content is true."
        ),
        levels=(
            ("Irrelevant", "no alignment with the instruction"),
            ("Partial Focus", "addresses one side of the instruction, poorly"),
            ("Partial Compliance", "meets the goal or the restrictions, not both"),
            ("Almost There", "close to full alignment, with minor deviations"),
            ("Comprehensive Compliance", "meets every requirement"),
        ),
    ),
}
"""The five aspects, under the names :func:`UltraFeedbackTask.for_aspect` takes."""

SUBTASKS = {
    "text-quality": "overall-quality",
    "helpfulness": "helpfulness",
    "truthfulness": "truthfulness",
    "honesty": "honesty",
    "instruction-following": "instruction-following",
}
"""The seed's subtask names (``pipeline("preference", subtask=...)``) -> aspect names."""

SYSTEM_PROMPT = (
    "You are a fair, strict evaluator of AI-written text. You compare several answers to the same "
    "instruction and rate each one on its own merits, following the rubric you are given exactly."
)

TEMPLATE = """\
# Task
Rate each text below for this aspect: {{ aspect.name }}.
{{ aspect.description }}

# Rating scale
{% for label, meaning in aspect.levels %}{{ loop.index }}. {{ label }}: {{ meaning }}.
{% endfor %}
# Instruction
{{ input }}

# Texts
{% for text in generations %}<text {{ loop.index }}>
{{ text }}
</text {{ loop.index }}>
{% endfor %}
# Answer format
For each of the {{ generations | length }} texts, in order, write a block:

Text <n>
Rating: <1 to 5>
Rationale: <one or two sentences>

If you must answer in JSON, write {"ratings": [{"rating": <1 to 5>, "rationale": "<why>"}, ...]} \
with one entry per text, in order.
"""

COMPACT_TEMPLATE = """\
Instruction: {{ input }}
Answer: {{ generations[0] }}

{{ aspect.name }}: rate the answer from 1 ({{ aspect.levels[0][0] }}) to 5 ({{ aspect.levels[4][0] }}).
Reply as JSON: {"rating": <1 to 5>, "rationale": "<why>"}, or as two lines: \
Rating: <1 to 5> / Rationale: <why>.
"""
"""A short prompt that judges one answer at a time: what small models (such as the embedded
SmolLM2-135M) can follow. See :meth:`UltraFeedbackTask.for_small_models`."""


class Rating(BaseModel):
    """The answer for one text judged alone: its rating, 1 to 5, and why."""

    model_config = UNDOCUMENTED

    rating: Literal[1, 2, 3, 4, 5]
    rationale: str = Field(max_length=200)


class RatedText(BaseModel):
    """One text's entry in an answer that rates several."""

    model_config = UNDOCUMENTED

    rating: Literal[1, 2, 3, 4, 5]
    rationale: str = Field(max_length=300)


class Ratings(BaseModel):
    """The answer for several texts: one entry per text, in order."""

    model_config = UNDOCUMENTED

    ratings: list[RatedText]


ITEM_SCHEMA: dict[str, Any] = answer_schema(Rating)
SCHEMA: dict[str, Any] = answer_schema(Ratings)


@dataclass(frozen=True, kw_only=True)
class UltraFeedbackTask(LabellingTask):
    """Rate a row's ``generations`` for its ``input`` on one UltraFeedback aspect, 1 to 5.

    Writes ``rating`` (one float or ``None`` per generation) and ``rationale`` (one string per
    generation). Build it with an aspect constructor: :meth:`for_overall_quality`,
    :meth:`for_helpfulness`, :meth:`for_truthfulness`, :meth:`for_honesty`,
    :meth:`for_instruction_following`.

    Example:
        >>> task = UltraFeedbackTask.for_helpfulness()
        >>> task.parse("Text 1\\nRating: 4\\nRationale: Clear.\\n\\nText 2\\nRating: **2/5**\\nWhy: Vague.")
        {'rating': [4.0, 2.0], 'rationale': ['Clear.', None]}
        >>> task.parse("Text 1\\nRating: 4\\nRationale: Clear.\\n\\nText 2\\nRating: N/A\\nRationale: Empty.")
        {'rating': [4.0, None], 'rationale': ['Clear.', 'Empty.']}
    """

    aspect: str = "overall-quality"
    system_prompt: str | None = SYSTEM_PROMPT
    template: str = TEMPLATE
    per_generation: bool = False
    """Judge each generation in a prompt of its own (the template then sees a one-text list): no
    position bias and short prompts, at the cost of no comparison between the texts."""

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"rating": RATINGS, "rationale": TEXTS}

    def __post_init__(self) -> None:
        if self.aspect not in ASPECTS:
            raise ValueError(
                f"Unknown UltraFeedback aspect {self.aspect!r}; expected one of {list(ASPECTS)}."
            )

    @property
    def one_request_per_item(self) -> bool:
        return self.per_generation

    @property
    def answer_model(self) -> type[BaseModel]:
        return Rating if self.per_generation else Ratings

    @classmethod
    def for_small_models(cls, aspect: str = "overall-quality", **kwargs: Any) -> UltraFeedbackTask:
        """A task for small local judges: one generation per prompt, with :data:`COMPACT_TEMPLATE`.

        Measured with the embedded SmolLM2-135M on 16 right/wrong answer pairs: the long comparative
        rubric ranked the right answer higher in about half the pairs (position bias), this one, with
        ``weighted_ratings=True``, in 11 of 16 (its chosen digit was the same for all 32 answers).
        """
        kwargs = {"template": COMPACT_TEMPLATE, "system_prompt": None, "per_generation": True, **kwargs}
        return cls.for_aspect(aspect, **kwargs)

    @classmethod
    def for_aspect(cls, aspect: str, **kwargs: Any) -> UltraFeedbackTask:
        """The task for ``aspect`` (a name of :data:`ASPECTS`, or a seed subtask name such as
        ``text-quality``)."""
        return cls(aspect=SUBTASKS.get(aspect, aspect), **kwargs)

    @classmethod
    def for_overall_quality(cls, **kwargs: Any) -> UltraFeedbackTask:
        """Overall quality: Low Quality, Moderate Quality, Good, Very Good, Excellent."""
        return cls(aspect="overall-quality", **kwargs)

    @classmethod
    def for_helpfulness(cls, **kwargs: Any) -> UltraFeedbackTask:
        """Helpfulness: Severely Incorrect ... Outstandingly Helpful."""
        return cls(aspect="helpfulness", **kwargs)

    @classmethod
    def for_truthfulness(cls, **kwargs: Any) -> UltraFeedbackTask:
        """Truthfulness: Completely Hallucinated ... No Hallucination."""
        return cls(aspect="truthfulness", **kwargs)

    @classmethod
    def for_honesty(cls, **kwargs: Any) -> UltraFeedbackTask:
        """Honesty: Confidently Incorrect ... Correct and Confident / Precisely Express Uncertainty."""
        return cls(aspect="honesty", **kwargs)

    @classmethod
    def for_instruction_following(cls, **kwargs: Any) -> UltraFeedbackTask:
        """Instruction following: Irrelevant ... Comprehensive Compliance."""
        return cls(aspect="instruction-following", **kwargs)

    @property
    def labels(self) -> tuple[str, ...]:
        """The five rating labels of this task's aspect, for ratings 1 to 5."""
        return tuple(label for label, _ in ASPECTS[self.aspect].levels)

    def template_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = {**super().template_values(row), "aspect": ASPECTS[self.aspect]}
        if self.per_generation:
            values["generations"] = [row[self.item]]  # the template lists one text
        return values

    def parse(self, text: str) -> dict[str, Any]:
        parsed = parse_rated_blocks(text, "ratings", self.scale)
        if not self.per_generation:
            return parsed
        # one text: several ratings are fine only if they agree (a small model repeating itself)
        rated = [i for i, value in enumerate(parsed["rating"]) if value is not None]
        if len({parsed["rating"][i] for i in rated}) > 1:
            raise ParseError(f"{len(rated)} different ratings for one text: {parsed['rating']}")
        first = rated[0] if rated else 0
        return {name: values[first] for name, values in parsed.items()}

    def score_positions(self, text: str) -> list[int | None]:
        """Where each text's rating is written, by text number (blocks may come in any order): the
        position :func:`weighted_score` reads must be the rating that :meth:`parse` read for that text."""
        spans = numbered_spans(text)
        if self.per_generation or not spans or text.lstrip().startswith(("{", "[", "```")):
            return super().score_positions(text)
        positions: dict[int, int] = {}
        for number, start, end in spans:
            line = _RATING_DIGIT.search(text, start, end) or _LEADING_DIGIT.match(text, start, end)
            if line and number not in positions:
                positions[number] = line.start(1)
        return [positions.get(i) for i in range(1, max(n for n, _, _ in spans) + 1)]

    def review(self) -> ReviewLayout:
        """Each generation rated on the aspect's levels, the judge's ratings and rationales suggested."""
        aspect = ASPECTS[self.aspect]
        levels = "; ".join(f"{i}: {label}" for i, (label, _) in enumerate(aspect.levels, 1))
        return super().review().replace(rubric=f"{aspect.name}. {aspect.description} {levels}.")


def parse_rated_blocks(text: str, json_key: str, scale: tuple[int, int]) -> dict[str, list[Any]]:
    """Ratings and rationales from a JSON answer (``{json_key: [{"rating", "rationale"}, ...]}``,
    whole or cut off) or from ``Text n / Rating / Rationale`` blocks, in any order and markdown.

    Position ``i`` of each list is text ``i + 1``; a missing block is ``None`` in place.
    """
    data = load_json(text)
    if isinstance(data, dict) and "rating" in data:
        data = [data]
    if isinstance(data, dict):
        data = data.get(json_key, next((v for v in data.values() if isinstance(v, list)), None))
    if isinstance(data, list) and data and all(isinstance(entry, dict) for entry in data):
        return {
            "rating": [_score_or_none(_get(entry, "rating", "score"), scale) for entry in data],
            "rationale": [one_line(_get(entry, "rationale", "reason", "explanation")) for entry in data],
        }
    if text.lstrip().startswith(("{", "[", "```")):
        complete = json_fields(text, "rating")
        if complete:  # JSON cut off by the token limit: keep what is complete
            reasons = json_fields(text, "rationale")
            return {
                "rating": [_score_or_none(value, scale) for value in complete],
                "rationale": [one_line(r) for r in reasons[: len(complete)]]
                + [None] * (len(complete) - len(reasons)),
            }
    clean = strip_markdown(text)
    sections = [(number, clean[start:end]) for number, start, end in numbered_spans(clean)]
    if not sections:
        sections = list(_unnumbered_blocks(clean).items())
    if not sections:
        raise ParseError("found no rated blocks (expected 'Text <n>' blocks with 'Rating:' lines, or JSON)")
    count = max(number for number, _ in sections)
    ratings: list[float | None] = [None] * count
    rationales: list[str | None] = [None] * count
    found: dict[int, float] = {}
    for number, block in sections:
        rating, rationale = _rated_block(block, scale)
        if rating is not None:
            agree(found, number, rating)  # a text rated twice, differently, is ambiguous
        if ratings[number - 1] is None:
            ratings[number - 1], rationales[number - 1] = rating, rationale
    if all(r is None for r in ratings):
        raise ParseError("found blocks but no readable rating in any of them")
    return {"rating": ratings, "rationale": rationales}


# "4 - clear", "4/5: clear", "4": the rating first on the block's first line, then a separator. "3 facts
# are wrong" is reasoning, not a rating.
_LEADING = re.compile(
    rf"\s*({SCORE_TEXT})[ \t]*(?:$|[-\u2013\u2014:;,|)][ \t]*|\.(?:[ \t]+|$))(.*)", re.DOTALL | re.IGNORECASE
)


def _rated_block(block: str, scale: tuple[int, int]) -> tuple[float | None, str | None]:
    """The rating and rationale of one ``Text n`` block: from its ``Rating:`` lines (which must agree),
    else from a rating that starts the block (``Text 1: 4 - clear``)."""
    lines = labelled_lines(block, ("rating", "score"))
    rationale = labelled_field(block, ("rationale", "reason", "explanation", "justification"), multiline=True)
    ratings = {score for line in lines if (score := _score_or_none(line.group(1), scale)) is not None}
    if len(ratings) > 1:
        raise ParseError(f"two different ratings for one text: {sorted(ratings)}")
    if lines:
        return (ratings.pop() if ratings else None), one_line(rationale)
    leading = _LEADING.match(block)
    if leading is None:
        return None, one_line(rationale)
    return _score_or_none(leading.group(1), scale), one_line(rationale or leading.group(2))


_RATING_DIGIT = re.compile(r"(?im)^[^\w\n]*(?:rating|score)[^\w\n]*[:=][^\w\n]*(\d)")
_LEADING_DIGIT = re.compile(r"[ \t*_]*\n?[ \t*_]*(\d)(?![\w.]\w)")


def _unnumbered_blocks(text: str) -> dict[int, str]:
    """Blocks split at each ``Rating:`` line, when the answer has no ``Text n`` headers."""
    starts = [m.start() for m in labelled_lines(text, ("rating", "score"))]
    if not starts:
        return {}
    return {i + 1: text[s:e] for i, (s, e) in enumerate(zip(starts, [*starts[1:], len(text)], strict=True))}


def _get(entry: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): v for k, v in entry.items()}
    return next((lowered[name] for name in names if name in lowered), None)


def _score_or_none(value: Any, scale: tuple[int, int]) -> float | None:
    """A score, or ``None`` for one that cannot be read (one bad block must not lose the others); a
    range or a score on another scale fails the whole answer (:class:`AmbiguousScore`)."""
    return score_or_none(value, *scale)
