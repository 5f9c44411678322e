"""The contract of tasks that take several rounds of model calls per row (multi-turn conversations).

A :class:`RoundsTask` keeps a small state per row and generation (plain data): :meth:`~RoundsTask.start`
makes it from the row, :meth:`~RoundsTask.next_prompt` says what to ask next (``None``: done),
:meth:`~RoundsTask.advance` takes the answer, and :meth:`~RoundsTask.result` gives the output columns.
``mapgen.generate`` runs the rounds (:mod:`mapgen.mapping.multi_round`): each round asks for every row still
going at once, through the same response store, deduplication and progress as any other request. A failed
answer, or an answer :meth:`~RoundsTask.advance` refuses (:class:`~mapgen.tasks.base.ParseError`), ends that
row's conversation with ``None`` and the reason; there are never more than :attr:`~RoundsTask.max_rounds`
rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.prompt import Prompt
from mapgen.tasks.base import ParseError, Task


@dataclass(frozen=True, kw_only=True)
class RoundsTask(Task):
    """Base of tasks that ask the model several times per row, each prompt built from earlier answers.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True, kw_only=True)
        ... class TwoJokes(RoundsTask):
        ...     outputs = ("jokes",)
        ...     inputs = ()
        ...     max_rounds = 2
        ...     def start(self, row): return {"jokes": []}
        ...     def next_prompt(self, state):
        ...         return Prompt("Tell a joke.") if len(state["jokes"]) < 2 else None
        ...     def advance(self, state, text): return {"jokes": [*state["jokes"], text]}
        ...     def result(self, state): return {"jokes": "\\n".join(state["jokes"])}
        >>> task = TwoJokes()
        >>> task.advance(task.start({}), "Knock knock.")
        {'jokes': ['Knock knock.']}
    """

    @property
    def max_rounds(self) -> int:
        """The most rounds one row takes: a class attribute, or computed by an instance (e.g. from
        ``num_turns``)."""
        return 2

    continues_final_message: ClassVar[bool] = False
    """Whether prompts end inside their last message (Magpie's open user turn): a backend that cannot
    send that is refused when ``mapgen.generate`` is built."""

    needs_row_index: ClassVar[bool] = False
    """Whether rows are told apart by their dataset index (tasks that read no column, such as Magpie:
    each row must draw its own sample). ``ds.map`` must then pass ``with_indices=True``."""

    def start(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The state of one row's conversation before any round; raise
        :class:`~mapgen.tasks.base.InputError` for a row that cannot start."""
        raise NotImplementedError

    def next_prompt(self, state: Mapping[str, Any]) -> Prompt | None:
        """What to ask next, or ``None`` when the conversation is complete."""
        raise NotImplementedError

    def advance(self, state: Mapping[str, Any], text: str) -> dict[str, Any]:
        """The state after the model answered ``text`` to :meth:`next_prompt`; raise
        :class:`~mapgen.tasks.base.ParseError` for an answer that cannot go on."""
        raise NotImplementedError

    def result(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The output columns' values of a complete conversation."""
        raise NotImplementedError

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        """The first round's prompt."""
        prompt = self.next_prompt(self.start(row))
        if prompt is None:
            raise ValueError(f"{type(self).__name__} asks nothing for this row.")
        return prompt

    def parse(self, text: str) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} takes several rounds: its outputs come from result().")


def with_next_turn(
    conversation: list[dict[str, str]], text: str, *, names: tuple[str, str] = ("user turn", "assistant turn")
) -> list[dict[str, str]]:
    """``conversation`` with the model's ``text`` as its next turn: the assistant's answer when the last
    turn is the user's, else the user's next message. ``names`` (user's, assistant's) name an empty one.

    Raises:
        ParseError: ``text`` is blank.

    Example:
        >>> with_next_turn([{"role": "user", "content": "Hi"}], " Hello! ")
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}]
    """
    answering = bool(conversation) and conversation[-1]["role"] == "user"
    text = text.strip()
    if not text:
        raise ParseError(f"the model wrote an empty {names[1] if answering else names[0]}")
    return [*conversation, {"role": "assistant" if answering else "user", "content": text}]
