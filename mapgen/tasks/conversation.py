"""Multi-turn synthetic conversations: a model plays the user, from a persona, and the assistant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.core.columns import MESSAGES
from mapgen.core.prompt import Prompt
from mapgen.core.review import ReviewLayout, conversation_review
from mapgen.tasks.base import InputError, render_template, template_variables
from mapgen.tasks.chat import read_conversation
from mapgen.tasks.rounds import RoundsTask, with_next_turn

USER_SYSTEM_PROMPT = (
    "You play the user in a conversation with an AI assistant. Who you are: {persona}\n"
    "Write only the user's next message, as that person would: no preamble, no quotes, no role label."
)


@dataclass(frozen=True, kw_only=True)
class ConversationTask(RoundsTask):
    """Extend a conversation by ``num_turns`` user/assistant exchanges, the user turns written by the
    model playing a persona.

    ``persona`` is a Jinja2 template over the row (its columns are the task's inputs): who the user is,
    or any system prompt for the simulated user. Each user turn is asked with that persona as the system
    prompt and the conversation so far as a transcript; each assistant turn is an ordinary chat request
    over the conversation (with ``system_prompt`` first, if given). With ``extend=True`` the task also
    reads a ``messages`` column (the Hugging Face chat format) and continues it; a conversation that ends
    with a user turn is answered first. Writes ``conversation``: every message, as distilabel 1.x and
    the Magpie paper name it.

    Example:
        >>> task = ConversationTask(num_turns=1, persona="a {{ job }} planning a trip")
        >>> task.inputs
        ('job',)
        >>> first = task.prompt({"job": "nurse"})
        >>> first.system.splitlines()[0].split(". ")[-1]
        'Who you are: a nurse planning a trip'
        >>> state = task.advance(task.start({"job": "nurse"}), "Where should I go in May?")
        >>> task.next_prompt(state).messages()
        [{'role': 'user', 'content': 'Where should I go in May?'}]
    """

    num_turns: int = 2
    persona: str = "{{ persona }}"
    system_prompt: str | None = None
    extend: bool = False

    outputs: ClassVar[Mapping[str, pa.DataType]] = {"conversation": MESSAGES}

    def __post_init__(self) -> None:
        if isinstance(self.num_turns, bool) or not isinstance(self.num_turns, int) or self.num_turns < 1:
            raise ValueError(f"num_turns must be an int >= 1, got {self.num_turns!r}.")
        if not isinstance(self.persona, str) or not self.persona.strip():
            raise ValueError(f"persona must be a Jinja2 string, got {self.persona!r}.")

    @property
    def inputs(self) -> tuple[str, ...]:
        variables = template_variables(self.persona)
        return (*variables, "messages") if self.extend and "messages" not in variables else variables

    @property
    def max_rounds(self) -> int:
        return 2 * self.num_turns + 1  # + answering a given conversation's last user turn

    def start(self, row: Mapping[str, Any]) -> dict[str, Any]:
        messages = read_conversation(row["messages"]) if self.extend else []
        given = [{"role": m.role, "content": m.content} for m in messages]
        if any(m["role"] == "system" for m in given[1:]):
            raise InputError("messages", "a system message may only come first")
        if self.system_prompt and not (given and given[0]["role"] == "system"):
            given.insert(0, {"role": "system", "content": self.system_prompt})
        persona = render_template(self.persona, row)
        return {"conversation": given, "persona": persona, "written": 0}

    def next_prompt(self, state: Mapping[str, Any]) -> Prompt | None:
        conversation = list(state["conversation"])
        if conversation and conversation[-1]["role"] == "user":
            return Prompt(messages=conversation)
        if state["written"] >= self.num_turns:
            return None
        turns = [m for m in conversation if m["role"] != "system"]
        if turns:
            transcript = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)
            ask = f"The conversation so far:\n\n{transcript}\n\nWrite your next message to the assistant."
        else:
            ask = "Write your first message to the assistant."
        return Prompt(ask, system=USER_SYSTEM_PROMPT.format(persona=state["persona"]))

    def advance(self, state: Mapping[str, Any], text: str) -> dict[str, Any]:
        conversation = with_next_turn(state["conversation"], text)
        written = state["written"] + (conversation[-1]["role"] == "user")
        return {**state, "conversation": conversation, "written": written}

    def result(self, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"conversation": state["conversation"]}

    def review(self) -> ReviewLayout:
        """One record per written conversation, shown as a transcript, rated 1 to 5 by people."""
        return conversation_review(
            "Does the user stay in character, and does the assistant help? 1 (poor) to 5 (excellent)."
        )
