"""Conversations: the next assistant turn of a chat in the Hugging Face chat format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.prompt import ROLES, Message, Prompt
from mapgen.core.review import ReviewLayout
from mapgen.tasks.base import InputError, Task


def read_conversation(value: Any, input: str = "messages") -> list[Message]:
    """A conversation column's value (a list of ``{"role", "content"}``, as chat datasets and TRL keep
    them) as :class:`~mapgen.core.prompt.Message` s, or :class:`~mapgen.tasks.base.InputError` saying what is
    wrong with it (extra keys such as ``name`` are ignored).

    Example:
        >>> read_conversation([{"role": "user", "content": "Hi"}])
        [Message(role='user', content='Hi', images=())]
        >>> read_conversation([{"role": "bot", "content": "Hi"}])
        Traceback (most recent call last):
        ...
        mapgen.errors.InputError: message 0 has role 'bot'; roles are ('system', 'user', 'assistant')
        >>> read_conversation([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])[0].content
        'Hi'
    """
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise InputError(
            input, f"expected a list of {{'role', 'content'}} messages, got {type(value).__name__}"
        )
    messages = []
    for k, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise InputError(input, f"message {k} is not a {{'role', 'content'}} mapping: {message!r}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise InputError(input, f"message {k} has role {role!r}; roles are {ROLES}")
        if isinstance(content, list):  # Hugging Face's multimodal format: a list of typed parts
            content = _text_of_parts(content, input, k)
        if not isinstance(content, str):
            raise InputError(input, f"message {k}'s content is a {type(content).__name__}, not text")
        messages.append(Message(role, content))
    return messages


def _text_of_parts(parts: list[Any], input: str, k: int) -> str:
    """The text of a message given as content parts (``[{"type": "text", "text": ...}]``), joined by
    newlines; a part of another type (an image) is an :class:`~mapgen.tasks.base.InputError`."""
    texts = []
    for part in parts:
        if (
            not isinstance(part, Mapping)
            or part.get("type") != "text"
            or not isinstance(part.get("text"), str)
        ):
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise InputError(input, f"message {k} has a {kind!r} part: only text parts are read from a chat")
        texts.append(part["text"])
    return "\n".join(texts)


@dataclass(frozen=True, kw_only=True)
class ChatGenerationTask(Task):
    """Write the next assistant turn of each row's conversation.

    Reads a ``messages`` column in the Hugging Face chat format (a list of ``{"role", "content"}`` with
    ``system``, ``user`` and ``assistant`` turns) and writes the answer to ``generations``; the
    ``generation_prompt`` column keeps the messages sent. The conversation must end with a user turn:
    a row that does not (or that is not a list of messages) gets ``None`` and an ``input`` error naming
    the column. ``system_prompt`` is sent first when a conversation has no system message of its own
    (a row's own system message wins). Another column name: ``input_columns={"messages": "chat"}``.

    Example:
        >>> task = ChatGenerationTask(system_prompt="Be brief.")
        >>> task.prompt({"messages": [{"role": "user", "content": "Hi"},
        ...                           {"role": "assistant", "content": "Hello!"},
        ...                           {"role": "user", "content": "Name a color."}]}).messages()[0]
        {'role': 'system', 'content': 'Be brief.'}
    """

    system_prompt: str | None = None

    outputs: ClassVar[tuple[str, ...]] = ("generations",)

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("messages",)

    def prompt(self, row: Mapping[str, Any]) -> Prompt:
        messages = read_conversation(row["messages"])
        if not messages or messages[-1].role != "user":
            last = messages[-1].role if messages else "nothing"
            raise InputError("messages", f"the conversation must end with a user turn; it ends with {last}")
        if self.system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", self.system_prompt))
        return Prompt(messages=messages)

    def parse(self, text: str) -> dict[str, Any]:
        return {"generations": text}

    def review(self) -> ReviewLayout:
        """People rate each generated turn as the next answer of its conversation, 1 to 5."""
        return ReviewLayout(
            text_fields={},
            rubric="How well it answers the conversation's last message, from 1 (poor) to 5 (excellent).",
        )
