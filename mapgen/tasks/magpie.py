"""Magpie (Xu et al. 2024, arXiv 2406.08464): instructions, and whole conversations, drawn from an
aligned model with no seed data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.core.columns import MESSAGES
from mapgen.core.prompt import Prompt
from mapgen.core.review import ReviewLayout, conversation_review
from mapgen.tasks.rounds import RoundsTask, with_next_turn


@dataclass(frozen=True, kw_only=True)
class MagpieTask(RoundsTask):
    """Let an aligned model write the user's instruction itself, then answer it: synthetic chat data from
    nothing but the model's chat template.

    Each instruction round sends the conversation so far with an empty, open user turn
    (``continue_final_message``): the backend renders it with the model's own chat template and cuts it
    where a user's text would begin (for ChatML, ``...<|im_start|>user\\n``: the *pre-query* prefix), so
    the model, trained to answer after such text, writes a plausible user query instead. The response
    round is an ordinary chat request. ``num_turns`` exchanges make a multi-turn conversation
    (Magpie-MT); ``only_instruction`` stops after the first instruction. ``system_prompt`` steers the
    topic (the paper's way to target a domain); without one, the template's own default applies.

    It reads no column: each row draws its own sample, told apart by its dataset index, so call
    ``ds.map(fn, batched=True, with_indices=True)`` on a dataset with as many rows as you want samples.
    Writes ``instruction``, ``response`` (the first exchange) and ``conversation`` (every message,
    the system prompt first if given). Runs on local engines and OpenAI-compatible servers that read
    ``continue_final_message``; ``mapgen.generate`` refuses other backends before sending anything.

    Example:
        >>> task = MagpieTask(num_turns=2, system_prompt="You help with cooking.")
        >>> task.prompt({})
        Prompt(messages=[{'role': 'system', 'content': 'You help with cooking.'}, \
{'role': 'user', 'content': ''}], continue_final_message=True)
        >>> state = task.advance(task.start({}), " How do I boil an egg?\\n")
        >>> task.next_prompt(state).messages()[-1]
        {'role': 'user', 'content': 'How do I boil an egg?'}
    """

    num_turns: int = 1
    system_prompt: str | None = None
    only_instruction: bool = False

    outputs: ClassVar[Mapping[str, pa.DataType]] = {
        "instruction": pa.string(),
        "response": pa.string(),
        "conversation": MESSAGES,
    }
    continues_final_message: ClassVar[bool] = True
    needs_row_index: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.num_turns, bool) or not isinstance(self.num_turns, int) or self.num_turns < 1:
            raise ValueError(f"num_turns must be an int >= 1, got {self.num_turns!r}.")
        if self.only_instruction and self.num_turns != 1:
            raise ValueError("only_instruction writes one instruction: leave num_turns at 1.")

    @property
    def inputs(self) -> tuple[str, ...]:
        return ()

    @property
    def max_rounds(self) -> int:
        return 1 if self.only_instruction else 2 * self.num_turns

    def start(self, row: Mapping[str, Any]) -> dict[str, Any]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return {"conversation": system}

    def next_prompt(self, state: Mapping[str, Any]) -> Prompt | None:
        conversation = list(state["conversation"])
        users = sum(m["role"] == "user" for m in conversation)
        if self.only_instruction and users:
            return None  # the instruction is written; no response is asked
        if conversation and conversation[-1]["role"] == "user":  # an instruction to answer
            return Prompt(messages=conversation)
        if users >= self.num_turns:
            return None
        return Prompt(messages=[*conversation, {"role": "user", "content": ""}], continue_final_message=True)

    def advance(self, state: Mapping[str, Any], text: str) -> dict[str, Any]:
        return {
            "conversation": with_next_turn(state["conversation"], text, names=("instruction", "response"))
        }

    def result(self, state: Mapping[str, Any]) -> dict[str, Any]:
        conversation = state["conversation"]
        users = [m["content"] for m in conversation if m["role"] == "user"]
        answers = [m["content"] for m in conversation if m["role"] == "assistant"]
        return {
            "instruction": users[0] if users else None,
            "response": answers[0] if answers else None,
            "conversation": conversation,
        }

    def review(self) -> ReviewLayout:
        """One record per drawn conversation, shown as a transcript, rated 1 to 5 by people."""
        return conversation_review(
            "Is the instruction clear and useful, and the answer right? 1 (poor) to 5 (excellent)."
        )
