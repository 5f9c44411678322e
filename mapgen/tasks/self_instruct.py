"""Self-Instruct: new instructions for an AI application, from a seed text.

Follows Self-Instruct (Wang et al., 2022): the model is told what the application is for and asked
for a numbered list of diverse, self-contained instructions grounded in the row's seed text (a topic or
a document). The prompt text is mapgen's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, Field, create_model

from mapgen.core.review import ReviewLayout
from mapgen.core.schema import UNDOCUMENTED
from mapgen.tasks.base import ParseError, Task
from mapgen.tasks.parsing import list_items, load_json

TEMPLATE = """\
You write instructions that users could give to this AI application: {{ application_description }}

Write {{ num_instructions }} new, varied instructions about the following text or topic:
{{ input }}

{{ criteria }}
Write one instruction per line, numbered 1 to {{ num_instructions }}, and nothing else.
"""

CRITERIA = (
    "Each instruction must make sense on its own, be answerable by an AI assistant in text, and differ "
    "from the others in what it asks (explain, compare, list, plan, rewrite, solve...). Mix short and "
    "longer instructions; do not number sub-questions or add answers."
)


@dataclass(frozen=True, kw_only=True)
class SelfInstructTask(Task):
    """Write ``num_instructions`` instructions from each row's ``input`` (a seed topic or text).

    Use with :func:`mapgen.generate`; writes ``instructions`` (per generation, a list of strings).

    Example:
        >>> task = SelfInstructTask(application_description="A cooking assistant.", num_instructions=2)
        >>> task.parse("Here are two:\\n1. Suggest a vegan dinner.\\n\\n2. **Explain** how yeast works.")
        {'instructions': ['Suggest a vegan dinner.', 'Explain how yeast works.']}
    """

    application_description: str = "An AI assistant that answers questions and helps with tasks."
    num_instructions: int = 5
    criteria: str = CRITERIA
    system_prompt: str | None = None
    template: str = TEMPLATE

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"instructions": pa.list_(pa.string())}

    def __post_init__(self) -> None:
        if isinstance(self.num_instructions, bool) or not isinstance(self.num_instructions, int):
            raise TypeError(f"num_instructions must be an int, got {self.num_instructions!r}.")
        if self.num_instructions < 1:
            raise ValueError(f"num_instructions must be at least 1, got {self.num_instructions}.")

    @property
    def answer_model(self) -> type[BaseModel]:
        return instructions_model(self.num_instructions)

    def parse(self, text: str) -> dict[str, Any]:
        data = load_json(text)
        if isinstance(data, dict) and isinstance(data.get("instructions"), list):
            items = [str(item).strip() for item in data["instructions"] if str(item).strip()]
        else:
            items = [item for item in list_items(text) if not _lead_in(item)]
        unique = list(dict.fromkeys(items))[: self.num_instructions]
        if not unique:
            raise ParseError("found no instructions")
        return {"instructions": unique}

    def review(self) -> ReviewLayout:
        """One record per written instruction, beside its seed, rated 1 to 5 by people."""
        return ReviewLayout(
            items="instructions",
            per_generation=True,
            text_fields={"input": "Seed"},
            rubric="Is it clear, self-contained and answerable? From 1 (unusable) to 5 (excellent).",
        )


def _lead_in(item: str) -> bool:
    """``Sure! Here are five instructions:`` and the like."""
    lowered = item.lower()
    return lowered.startswith(("here are", "here is", "sure", "certainly")) and len(item) < 120


@lru_cache(maxsize=64)
def instructions_model(count: int) -> type[BaseModel]:
    """The answer model for ``count`` instructions: a list of exactly that many, 10 to 400 characters
    each."""
    item = Annotated[str, Field(min_length=10, max_length=400)]
    return create_model(
        "Instructions",
        __config__=UNDOCUMENTED,
        __doc__=f"{count} new instructions.",
        instructions=(list[item], Field(min_length=count, max_length=count)),
    )
