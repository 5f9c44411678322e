"""OpenAI's chat wire format for what prompts and answers carry beyond text: image content parts in,
reasoning traces out. Apart from the sending (:mod:`mapgen.llms._api`), so each is testable alone.

Example:
    >>> from mapgen.prompt import Image, Prompt
    >>> prompt = Prompt("Describe the chart.", images=[Image(url="https://example.com/c.png")])
    >>> wire_messages(prompt)
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'Describe the chart.'}, \
{'type': 'image_url', 'image_url': {'url': 'https://example.com/c.png'}}]}]
"""

from __future__ import annotations

from typing import Any

from mapgen.prompt import Prompt

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where OpenAI-compatible servers put a message's reasoning: ``reasoning_content`` (vLLM before 0.10,
llama.cpp's server, DeepSeek's API), ``reasoning`` (vLLM since 0.10, OpenRouter)."""


def wire_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt's ``messages`` for a chat completions body: plain text content, or, for a message
    with images, a list of content parts, its text first and then one ``image_url`` part per image
    (a base64 ``data:`` URL, or the image's own URL), as OpenAI's API reference gives them."""
    messages: list[dict[str, Any]] = []
    for message in prompt.turns:
        if not message.images:
            messages.append({"role": message.role, "content": message.content})
            continue
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        parts += [
            {"type": "image_url", "image_url": {"url": image.url_or_data_url()}} for image in message.images
        ]
        messages.append({"role": message.role, "content": parts})
    return messages


def message_reasoning(message: dict[str, Any]) -> str | None:
    """The reasoning a server returned beside a message's content, or ``None`` (no field, or empty).

    Example:
        >>> message_reasoning({"content": "4", "reasoning_content": "2 + 2 = 4"})
        '2 + 2 = 4'
        >>> message_reasoning({"content": "4", "reasoning": None}) is None
        True
    """
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None
