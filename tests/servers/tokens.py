"""The test servers' token counting: deterministic, documented, and importable, so that tests can compare
a client's estimate with what a server reports.

A token is a whitespace-separated word (``len(text.split())``); an image counts ``IMAGE_TOKENS``. A reply
costs its words plus one end-of-turn token (``END_TOKENS``), so even an empty answer costs one output token,
as at the providers. Structured parts count the words of their JSON (``json.dumps`` with default spacing):
a tool's name, description and ``input_schema``, a ``tool_use`` block's name and ``input``.

>>> count_tokens("Give one tip for sleeping well.")
6
>>> openai_prompt_tokens([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi you"}])
4
"""

from __future__ import annotations

import json
from typing import Any

IMAGE_TOKENS = 100
"""What one image counts, whatever its size (the providers count by pixels; we do not decode images)."""

END_TOKENS = 1
"""The end-of-turn token every answer that stops by itself adds to its words."""


def count_tokens(text: str) -> int:
    """The number of whitespace-separated words in ``text``."""
    return len(text.split())


def count_json(value: Any) -> int:
    """The tokens of a JSON value: the words of its ``json.dumps``."""
    return count_tokens(json.dumps(value))


def openai_content_tokens(content: Any) -> int:
    """The tokens of an OpenAI chat message's ``content``: a string, or a list of ``text`` and ``image_url``
    parts (``None``, as an assistant message with tool calls has, counts nothing)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for part in content:
        if part.get("type") == "text":
            total += count_tokens(part.get("text", ""))
        elif part.get("type") in ("image_url", "input_image"):
            total += IMAGE_TOKENS
    return total


def openai_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """``usage.prompt_tokens`` of a chat request: the tokens of every message's content, system included."""
    return sum(openai_content_tokens(message.get("content")) for message in messages)
