"""Evol-Instruct and Deita's Evol-Complexity / Evol-Quality: rewrite an instruction or an answer.

Follows WizardLM (Xu et al., 2023) and Deita (Liu et al., 2023): a rewrite method is chosen (adding
constraints, deepening, concretizing, asking for more reasoning steps, or a new instruction in the same
domain for breadth), and the model writes the rewritten text only. As in WizardLM's elimination step,
answers that refuse, that copy the meta-prompt's wording, or that are empty become ``None`` with the
reason. The prompt texts are mapgen's own.

The method of a row is chosen from a hash of its text: the same row always gets the same method, in
every process and every run (so caching and resume stay exact), and a dataset gets a mix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.review import ReviewLayout
from mapgen.tasks.base import ParseError, Task
from mapgen.tasks.parsing import strip_markdown

INSTRUCTION_METHODS: dict[str, str] = {
    "breadth": (
        "Write a brand-new instruction in the same domain as the given one, about a rarer or more "
        "specific topic, of similar length and difficulty."
    ),
    "constraints": "Add one more constraint or requirement that the answer must satisfy.",
    "deepen": "Ask about the issue in more depth and breadth, so that answering takes more expertise.",
    "concretizing": "Replace general concepts with more specific ones.",
    "reasoning": "Make it explicitly require several steps of reasoning to answer.",
}
"""Evol-Instruct's rewrite methods (``breadth`` writes a new instruction; the others deepen)."""

QUALITY_METHODS: dict[str, str] = {
    "helpfulness": "Make the answer more helpful to the user.",
    "relevance": "Make the answer more relevant to the instruction.",
    "depth": "Make the answer go deeper into the subject.",
    "creativity": "Make the answer more creative.",
    "details": "Add useful details to the answer.",
}
"""Evol-Quality's rewrite methods."""

INSTRUCTION_TEMPLATE = """\
You rewrite instructions for AI assistants; people must still be able to understand and answer \
them. {{ method }}
The rewritten instruction must be self-contained and reasonable, must keep any code or table in the \
original, and may add at most 10 to 20 words. Write only the rewritten instruction: no preamble, no \
label, no answer.

Original instruction:
{{ input }}
"""

QUALITY_TEMPLATE = """\
You improve answers written by AI assistants. {{ method }}
Keep what is right in the answer, keep it an answer to the same instruction, and write only the \
improved answer: no preamble, no label, no comments about the change.

Instruction:
{{ input }}

Answer to improve:
{{ generation }}
"""

REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "as an ai",
    "i cannot",
    "i can't",
    "i can not",
    "i am unable",
    "i'm unable",
    "i'm not able",
)
LEAKS = (
    "rewritten instruction",
    "original instruction",
    "rewritten prompt",
    "given prompt",
    "#rewritten",
    "#given",
    "improved answer",
    "answer to improve",
    "rewrite the",
)
_LABEL = re.compile(
    r"^\W*(?:rewritten|new|evolved|improved|harder)\s+(?:instruction|prompt|answer|version)\W*[:\-]?\s*",
    re.IGNORECASE,
)


def check_rewrite(text: str) -> str:
    """The rewritten text, without a leading ``Rewritten instruction:`` label; :class:`ParseError` for
    empty answers, refusals and answers that leak the meta-prompt.

    Example:
        >>> check_rewrite("**Rewritten instruction:** List three prime numbers above 100.")
        'List three prime numbers above 100.'
    """
    cleaned = _LABEL.sub("", strip_markdown(text).strip()).strip()
    if not cleaned:
        raise ParseError("empty rewrite")
    lowered = cleaned.lower()
    if lowered.startswith(REFUSALS) or any(f" {phrase}" in lowered[:200] for phrase in REFUSALS[:5]):
        raise ParseError("the model refused to rewrite")
    leaked = next((phrase for phrase in LEAKS if phrase in lowered), None)
    if leaked:
        raise ParseError(f"the rewrite leaks the meta-prompt ({leaked!r})")
    return cleaned


def pick_method(methods: tuple[str, ...], text: str) -> str:
    """A method for ``text``: the same in every process and run, spread evenly over a dataset."""
    digest = hashlib.sha256(text.encode()).digest()
    return methods[int.from_bytes(digest[:4], "big") % len(methods)]


@dataclass(frozen=True, kw_only=True)
class EvolInstructTask(Task):
    """Rewrite each row's ``input`` instruction with an Evol-Instruct method (WizardLM).

    ``methods`` are names of :data:`INSTRUCTION_METHODS`; each row gets one (see the module docs). Use
    with :func:`mapgen.generate`; writes ``instructions`` (one rewritten instruction per generation,
    ``None`` with the reason in ``generation_errors`` for refusals and meta-prompt leaks).

    Example:
        >>> task = EvolInstructTask(methods=("constraints",))
        >>> "one more constraint" in task.prompt({"input": "Write a poem."}).user
        True
        >>> task.parse("I'm sorry, but I can't help with that.")
        Traceback (most recent call last):
        ...
        mapgen.errors.ParseError: the model refused to rewrite
    """

    methods: tuple[str, ...] = tuple(INSTRUCTION_METHODS)
    system_prompt: str | None = None
    template: str = INSTRUCTION_TEMPLATE

    outputs: ClassVar[tuple[str, ...]] = ("instructions",)
    known_methods: ClassVar[Mapping[str, str]] = INSTRUCTION_METHODS

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in self.known_methods]
        if not self.methods or unknown:
            raise ValueError(
                f"methods must be a non-empty subset of {list(self.known_methods)}; unknown: {unknown}."
            )

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("input",)

    def method_for(self, row: Mapping[str, Any]) -> str:
        """The method this row is rewritten with."""
        return pick_method(self.methods, "\n".join(str(row[name]) for name in self.inputs))

    def template_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().template_values(row), "method": self.known_methods[self.method_for(row)]}

    def parse(self, text: str) -> dict[str, Any]:
        return {self.outputs[0]: check_rewrite(text)}

    def review(self) -> ReviewLayout:
        """One record per rewritten instruction, beside the original, rated 1 to 5 by people."""
        return ReviewLayout(
            items=self.outputs[0],
            per_generation=True,
            text_fields={"input": "Input"},
            rubric="Is it clear, self-contained and answerable? From 1 (unusable) to 5 (excellent).",
        )


@dataclass(frozen=True, kw_only=True)
class EvolComplexityTask(EvolInstructTask):
    """Evol-Instruct's in-depth methods only (Deita's Evol-Complexity): each rewrite is harder.

    Example:
        >>> EvolComplexityTask().methods
        ('constraints', 'deepen', 'concretizing', 'reasoning')
    """

    methods: tuple[str, ...] = ("constraints", "deepen", "concretizing", "reasoning")


@dataclass(frozen=True, kw_only=True)
class EvolQualityTask(EvolInstructTask):
    """Rewrite each row's ``generation`` (an answer to ``input``) into a better one (Deita's
    Evol-Quality), with one of :data:`QUALITY_METHODS`.

    Use with :func:`mapgen.generate`; writes ``generations`` (one improved answer per generation).
    To improve one of a list column's answers, make a ``generation`` column first (e.g.
    ``ds.map(lambda r: {"generation": r["generations"][0]})``) or pass ``input_columns``.

    Example:
        >>> task = EvolQualityTask(methods=("details",))
        >>> task.inputs
        ('input', 'generation')
        >>> task.parse("Improved answer: Paris, on the Seine, is France's capital.")
        {'generations': "Paris, on the Seine, is France's capital."}
    """

    methods: tuple[str, ...] = tuple(QUALITY_METHODS)
    template: str = QUALITY_TEMPLATE

    outputs: ClassVar[tuple[str, ...]] = ("generations",)
    known_methods: ClassVar[Mapping[str, str]] = QUALITY_METHODS

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("input", "generation")

    def review(self) -> ReviewLayout:
        """Improved answers are generations: people rate each one of a row, 1 to 5."""
        return ReviewLayout()
