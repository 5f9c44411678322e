"""Pairwise judging: which of two answers to one question is better, A, B or a tie, after an explanation.

The prompt has the shape of MT-Bench's pairwise comparison (Zheng et al., 2023, "Judging LLM-as-a-Judge
with MT-Bench and Chatbot Arena", arXiv 2306.05685): a system prompt that asks an impartial judge to
compare two assistants' answers, explain first, and end with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie);
the question and both answers in delimited blocks. The prompt text is mapgen's own. Judges favour one
position (the paper measured it); ``mapgen.label(judge, PairwiseJudgeTask(), swap=True)`` asks in both
orders and writes ``inconsistent`` where the verdicts disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from mapgen.core.prompt import Prompt
from mapgen.core.review import ReviewLayout
from mapgen.core.schema import UNDOCUMENTED, answer_schema
from mapgen.tasks.base import InputError, ParseError
from mapgen.tasks.labelling import LabellingTask
from mapgen.tasks.parsing import load_json, one_line, strip_markdown

SYSTEM_PROMPT = (
    "Act as an impartial judge of the answers that two AI assistants gave to the user question shown "
    "below. Decide which assistant follows the user's instructions and answers the question better, "
    "weighing helpfulness, relevance, accuracy, depth, creativity and level of detail. Start by comparing "
    "the two answers and explain your judgement briefly. The order in which the answers are shown must not "
    "sway you, nor their length, nor the assistants' names: be as objective as you can. After your "
    'explanation, give your verdict in exactly this format: "[[A]]" if assistant A is better, "[[B]]" if '
    'assistant B is better, and "[[C]]" for a tie.'
)

TEMPLATE = """\
[User Question]
{{ input }}

[The Start of Assistant A's Answer]
{{ generations[0] }}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{{ generations[1] }}
[The End of Assistant B's Answer]
"""

PREFERENCES = ("a", "b", "tie")
"""What ``preference`` holds: the first answer is better, the second, or neither; with ``swap=True`` also
``inconsistent`` (the verdicts of the two orders disagree)."""

INCONSISTENT = "inconsistent"


class Verdict(BaseModel):
    """A pairwise answer: the explanation first, then the verdict (C: a tie)."""

    model_config = UNDOCUMENTED

    explanation: str = Field(max_length=800)
    verdict: Literal["A", "B", "C"]


SCHEMA: dict[str, Any] = answer_schema(Verdict)


@dataclass(frozen=True, kw_only=True)
class PairwiseJudgeTask(LabellingTask):
    """Judge which of a row's two ``generations`` answers its ``input`` better, MT-Bench-style.

    Writes ``preference`` (``"a"``: the first generation, ``"b"``: the second, or ``"tie"``) and
    ``rationale`` (the judge's explanation), one each per row. A row must hold exactly two generations,
    neither ``None``; other rows get an ``input`` error and no request. With
    ``mapgen.label(judge, task, swap=True)`` each row is judged again with the answers swapped, and
    ``preference`` is ``"inconsistent"`` where the two verdicts disagree once the second is put back in
    the row's order (``rating_consistency`` then ``False``); :func:`mapgen.to_preference` turns the rows
    into chosen / rejected pairs. Answers are read tolerantly: the last ``[[A]]``, ``[[B]]`` or ``[[C]]``
    (also ``[[tie]]``, single brackets at the end, or a ``Verdict: B`` line), or JSON.

    Example:
        >>> PairwiseJudgeTask().parse("A gives the right date; B does not.\\n\\nFinal verdict: [[A]]")
        {'preference': 'a', 'rationale': 'A gives the right date; B does not.'}
        >>> PairwiseJudgeTask().parse('{"explanation": "Both are right.", "verdict": "C"}')
        {'preference': 'tie', 'rationale': 'Both are right.'}
    """

    system_prompt: str | None = SYSTEM_PROMPT
    template: str = TEMPLATE

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"preference": pa.string(), "rationale": pa.string()}
    answer_model: ClassVar[type[BaseModel]] = Verdict
    num_items: ClassVar[int | None] = 2

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        answers = row.get(self.items)
        if not isinstance(answers, (list, tuple)) or len(answers) != 2:
            count = len(answers) if isinstance(answers, (list, tuple)) else type(answers).__name__
            raise InputError(self.items, f"{type(self).__name__} compares exactly 2 answers, got {count}")
        return super().prompt(row)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict):
            lowered = {str(key).lower(): value for key, value in data.items()}
            verdict = next((lowered[k] for k in ("verdict", "winner", "preference") if k in lowered), None)
            if verdict is not None:
                reason = next(
                    (lowered[k] for k in ("explanation", "rationale", "reason") if k in lowered), None
                )
                return {"preference": _preference(verdict), "rationale": one_line(reason)}
        clean = strip_markdown(text)
        found = (
            list(_DOUBLE.finditer(clean)) or list(_LABELLED.finditer(clean)) or list(_SINGLE.finditer(clean))
        )
        if not found:
            raise ParseError("found no verdict (expected [[A]], [[B]] or [[C]] after the explanation)")
        last = found[-1]
        before = _VERDICT_LABEL.sub("", clean[: last.start()])
        return {"preference": _preference(last.group(1)), "rationale": one_line(before)}

    def merge_orders(
        self, given: Mapping[str, Any], reverse: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool | None]:
        """``given``'s outputs, its ``preference`` made ``inconsistent`` where ``reverse`` (the verdict on
        the swapped answers: its ``a`` is the row's ``b``) prefers otherwise, ``None`` where either has
        none; and whether they agree.

        Example:
            >>> task = PairwiseJudgeTask()
            >>> task.merge_orders({"preference": "a"}, {"preference": "b"})
            ({'preference': 'a'}, True)
            >>> task.merge_orders({"preference": "a"}, {"preference": "a"})
            ({'preference': 'inconsistent'}, False)
        """
        merged = dict(given)
        first, second = given.get("preference"), _SWAPPED.get(reverse.get("preference") or "")
        if first is None or second is None:  # a verdict is missing: no preference that held both ways
            merged["preference"] = None
            return merged, None
        merged["preference"] = first if first == second else INCONSISTENT
        return merged, first == second

    def review(self) -> ReviewLayout:
        """Both answers of a row side by side, each rated by people; the judge's explanation suggested."""
        rubric = (
            "Which answer follows the question's instructions and answers it better? Rate each from 1 (poor) "
            "to 5 (excellent): the better answer higher, both the same for a tie."
        )
        return super().review().replace(rubric=rubric)


_VERDICTS = {"a": "a", "b": "b", "c": "tie", "tie": "tie"}
_SWAPPED = {"a": "b", "b": "a", "tie": "tie"}
_CHOICE = r"(A|B|C|tie)"
# "[[A]]" (the format), "[[ tie ]]"
_DOUBLE = re.compile(rf"\[\[\s*{_CHOICE}\s*\]\]", re.IGNORECASE)
# "Verdict: B", "Final verdict - Assistant A", "Winner: tie", "Verdict: a tie.": the choice ends the line,
# so the article in "Verdict: a close call, but B ..." or "Decision: A draw ..." is no verdict for A
_LABELLED = re.compile(
    rf"^\W*(?:final\s+)?(?:verdict|winner|decision)\W*(?:is\W*)?(?:assistant\s+|a\s+(?=tie\b))?{_CHOICE}\W*$",
    re.IGNORECASE | re.MULTILINE,
)
# "[A]" as the answer's last word
_SINGLE = re.compile(rf"\[\s*{_CHOICE}\s*\]\W*$", re.IGNORECASE)
# "... Final verdict:" left before the mark
_VERDICT_LABEL = re.compile(
    r"\s*\b(?:my\s+)?(?:final\s+)?(?:verdict|decision)(?:\s+is)?\b\W*$", re.IGNORECASE
)


def _preference(verdict: Any) -> str:
    word = re.sub(r"^assistant\s+", "", str(verdict).strip().strip("[]").strip(), flags=re.IGNORECASE)
    value = _VERDICTS.get(word.lower())
    if value is None:
        raise ParseError(f"verdict {verdict!r} is not A, B or C (a tie)")
    return value
