"""Anthropic's Messages API wire format: how a request body is built and an answer read, apart from the
sending (:mod:`mapgen.llms._api`), so that each is testable without a server.

Source: Anthropic's API reference, "Messages" (``POST /v1/messages``). What differs from OpenAI's chat
format, and what mapgen does with it:

- the system prompt is the top-level ``system`` (several system turns are joined by a blank line), marked
  ``cache_control: {"type": "ephemeral"}`` when the backend asks for prompt caching
  (:meth:`~mapgen.AnthropicLLM.caches`), so rows that repeat a long system prompt read it from the cache;
- ``max_tokens`` is required; stop sequences are ``stop_sequences``; there is no ``seed`` and no ``n``
  (the backend sends one request per generation);
- images are ``image`` content blocks, before the text of their turn: ``url`` sources for ``http(s)``
  URLs (the API downloads them), ``base64`` sources for bytes and ``data:`` URLs;
- a JSON schema becomes one tool whose ``input_schema`` is the schema, forced with ``tool_choice``: the
  tool's input, as JSON, is the answer's text;
- the answer is a list of content blocks: ``text`` blocks are the answer, ``thinking`` blocks its
  reasoning; ``stop_reason`` becomes OpenAI's ``finish_reason`` vocabulary (:data:`FINISH_REASONS`), so
  datasets from several backends filter alike; ``refusal`` is a ``refused`` failure;
- ``usage.input_tokens`` counts only the uncached part of the prompt: ``prompt_tokens`` adds the cache's
  reads and writes back, and ``cached_tokens`` is the cache's reads.

Example:
    >>> answer = {"type": "message", "content": [{"type": "text", "text": "Paris"}],
    ...     "stop_reason": "end_turn",
    ...     "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 1200}}
    >>> c = ANTHROPIC_MESSAGES.completions(answer, 1)[0]
    >>> c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens, c.cached_tokens
    ('Paris', 'stop', 1203, 2, 1200)
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from mapgen.core.images import data_url_bytes, media_type
from mapgen.core.prompt import Image, Prompt
from mapgen.core.request import Completion, Request
from mapgen.errors import EMPTY_ANSWER, REFUSED
from mapgen.llms._http import APIError


class MessagesConfig(Protocol):
    """What :class:`AnthropicMessagesWire` reads from a backend's config (:class:`~mapgen.AnthropicLLM`)."""

    @property
    def model(self) -> str: ...
    @property
    def max_new_tokens(self) -> int: ...
    @property
    def thinking_budget(self) -> int | None: ...
    @property
    def extra_body(self) -> Mapping[str, Any]: ...

    def caches(self, system: str) -> bool: ...

    def sampling_body(self) -> dict[str, Any]: ...


FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",  # the forced tool of a structured answer: the answer is complete
    "max_tokens": "length",
    "model_context_window_exceeded": "length",  # cut too: the context window filled up first
    "refusal": "content_filter",
}
"""Anthropic's ``stop_reason`` values as OpenAI's ``finish_reason``; others (``pause_turn``) pass as they
are."""

TOOL_STYLE = "tool_use"
"""The one structured-output style of this format: a forced tool whose input schema is the answer's."""


class AnthropicMessagesWire:
    """Anthropic's ``POST /v1/messages``: ``system`` and ``messages`` in, content blocks out.

    Example:
        >>> import mapgen
        >>> llm = mapgen.AnthropicLLM("claude-sonnet-4-5", temperature=0.0, max_new_tokens=64, stop=["END"])
        >>> body = ANTHROPIC_MESSAGES.body(llm, Request(Prompt("Hi", system="Be brief.")), 1, None)
        >>> body
        {'model': 'claude-sonnet-4-5', 'max_tokens': 64, 'messages': [{'role': 'user', 'content': 'Hi'}], \
'system': 'Be brief.', 'temperature': 0.0, 'stop_sequences': ['END']}
    """

    path = "/v1/messages"

    def body(self, llm: MessagesConfig, request: Request, n: int, schema_style: str | None) -> dict[str, Any]:
        """The JSON body of one request (``n`` must be 1: the API answers once per request), the
        backend's ``extra_body`` last."""
        if n != 1:
            raise ValueError(f"Anthropic's Messages API answers once per request; got n={n}.")
        prompt = request.prompt
        body: dict[str, Any] = {
            "model": llm.model,
            "max_tokens": llm.max_new_tokens,
            "messages": messages(prompt),
        }
        system = system_prompt(prompt)
        if system:
            if llm.caches(system):
                body["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
            else:
                body["system"] = system
        body.update(llm.sampling_body())
        if llm.thinking_budget is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": llm.thinking_budget}
        if (
            request.schema is not None
            and schema_style == TOOL_STYLE
            and request.schema.get("type") == "object"
        ):
            tool = answer_tool(request.schema)
            body["tools"] = [tool]
            # Thinking cannot be combined with a forced tool: the model is then only offered it.
            forced = llm.thinking_budget is None
            body["tool_choice"] = {"type": "tool", "name": tool["name"]} if forced else {"type": "auto"}
        body.update(llm.extra_body)
        return body

    def completions(self, answer: Any, n: int = 1) -> list[Completion]:
        """The one completion of a ``message`` answer; a body that is not one (no ``content`` list, an
        ``error`` object, a block of an unknown shape) raises :meth:`APIError.invalid_answer`.

        Example:
            >>> ANTHROPIC_MESSAGES.completions({"type": "error", "error": {"message": "Overloaded"}})
            Traceback (most recent call last):
            ...
            mapgen.errors.APIError: HTTP 200 without content: Overloaded
        """
        content = answer.get("content") if isinstance(answer, dict) else None
        if not isinstance(content, list):
            error = answer.get("error") if isinstance(answer, dict) else None
            detail = error.get("message", error) if isinstance(error, dict) else error
            raise APIError.invalid_answer(
                "HTTP 200 without content" + (f": {str(detail)[:200]}" if detail else "")
            )
        texts: list[str] = []
        thoughts: list[str] = []
        tool_input: Any = None
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                thoughts.append(block["thinking"])
            elif kind == "tool_use" and isinstance(block.get("input"), dict):
                if tool_input is None:
                    tool_input = block["input"]
            elif kind not in ("redacted_thinking", "server_tool_use", "web_search_tool_result"):
                raise APIError.invalid_answer(
                    f"HTTP 200 with a content block of an unknown shape: {block!r:.100}"
                )
        stop_reason = answer.get("stop_reason")
        stop_reason = stop_reason if isinstance(stop_reason, str) else None
        finish = FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None
        reasoning = "\n\n".join(t for t in thoughts if t.strip()) or None
        text = json.dumps(tool_input, ensure_ascii=False) if tool_input is not None else "".join(texts)
        if stop_reason == "refusal":
            failed = Completion.failed(
                f"the model refused (stop_reason=refusal){': ' + text if text else ''}", REFUSED
            )
        elif not text:
            failed = Completion.failed(f"no text in the answer (stop_reason={stop_reason})", EMPTY_ANSWER)
        else:
            prompt_tokens, completion_tokens, cached, written = _usage(answer.get("usage"))
            return [
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cached_tokens=cached,
                    cache_write_tokens=written,
                    reasoning=reasoning,
                )
            ]
        failed.reasoning = reasoning  # a trace cut by max_tokens is kept with the failure
        failed.finish_reason = finish
        return [failed]

    def rate_usage(self, answer: Any) -> tuple[int | None, int | None]:
        """Input and output tokens as Anthropic's rate limits count them: cache reads do not count against
        the input tokens per minute, cache writes do."""
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if not isinstance(usage, dict):
            return None, None
        uncached, written = _int(usage.get("input_tokens")), _int(usage.get("cache_creation_input_tokens"))
        output = _int(usage.get("output_tokens"))
        return (uncached + (written or 0) if uncached is not None else None), output

    def schema_style_sent(self, body: dict[str, Any]) -> str:
        """How ``body``, built for a request with a schema, carried it
        (:attr:`~mapgen.core.request.Completion.schema_style`): ``tool_use`` (the answer tool, forced),
        ``tool_use_auto`` (only offered: with thinking), or ``none`` (no tool)."""
        if not body.get("tools"):
            return "none"
        choice = body.get("tool_choice")
        return (
            TOOL_STYLE if isinstance(choice, dict) and choice.get("type") == "tool" else f"{TOOL_STYLE}_auto"
        )

    def schema_warning(self, style: str, schema: dict[str, Any]) -> str | None:
        """Why answers sent ``style`` are not constrained to ``schema`` (warned once per process and config),
        or ``None``: without the answer tool (the server refused it, or the schema is no object)."""
        if style == "none":
            return (
                "answers go without the answer tool (the server refused it, or the schema is not an object): "
                "they are not constrained to the answer schema"
            )
        return None


ANTHROPIC_MESSAGES = AnthropicMessagesWire()
"""The one :class:`AnthropicMessagesWire` (it holds no state)."""


def system_prompt(prompt: Prompt) -> str | None:
    """The prompt's system turns as one text (joined by a blank line), or ``None``."""
    systems = [m.content for m in prompt.turns if m.role == "system" and m.content]
    return "\n\n".join(systems) if systems else None


def messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The ``messages`` of a body: the user and assistant turns, plain text, or, for a turn with images,
    its image blocks then its text block.

    Example:
        >>> messages(Prompt(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]))
        [{'role': 'user', 'content': 'Hi'}]
        >>> messages(Prompt("What is it?", images=[Image(url="https://example.com/c.png")]))[0]["content"]
        [{'type': 'image', 'source': {'type': 'url', 'url': 'https://example.com/c.png'}}, \
{'type': 'text', 'text': 'What is it?'}]
    """
    wire: list[dict[str, Any]] = []
    for message in prompt.turns:
        if message.role == "system":
            continue
        if not message.images:
            wire.append({"role": message.role, "content": message.content})
            continue
        blocks = [image_block(image) for image in message.images]
        if message.content:
            blocks.append({"type": "text", "text": message.content})
        wire.append({"role": message.role, "content": blocks})
    return wire


def image_block(image: Image) -> dict[str, Any]:
    """An ``image`` content block: an ``http(s)`` URL as a ``url`` source (the API downloads it), else the
    bytes, a ``data:`` URL's included, as a ``base64`` source with their media type.

    Example:
        >>> image_block(Image(url="data:image/jpg;base64,/9j/4A=="))["source"]
        {'type': 'base64', 'media_type': 'image/jpeg', 'data': '/9j/4A=='}
    """
    data, kind = image.data or b"", image.media_type
    if image.url is not None:
        if image.url[:5].lower() != "data:":
            return {"type": "image", "source": {"type": "url", "url": image.url}}
        data, kind = data_url_bytes(image.url)
        kind = media_type(data) or kind  # the bytes' own type: the API refuses a mismatch
    source = {"type": "base64", "media_type": kind, "data": base64.b64encode(data).decode()}
    return {"type": "image", "source": source}


def answer_tool(schema: dict[str, Any]) -> dict[str, Any]:
    """The tool that carries a structured answer: named after the schema's title (the API's name pattern,
    ``^[a-zA-Z0-9_-]{1,128}$``), its ``input_schema`` the schema.

    Example:
        >>> answer_tool({"title": "Review score", "type": "object", "properties": {}})["name"]
        'Review_score'
    """
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "answer"))[:128] or "answer"
    description = schema.get("description") or "Give the answer by calling this tool with it as input."
    return {"name": name, "description": str(description), "input_schema": schema}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(usage: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """``prompt_tokens`` (uncached + cache reads + cache writes), ``completion_tokens``, ``cached_tokens``
    (cache reads), ``cache_write_tokens`` (cache writes)."""
    if not isinstance(usage, dict):
        return None, None, None, None
    uncached = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    prompt = uncached + (read or 0) + (written or 0) if uncached is not None else None
    cached = read if read is not None else (0 if prompt is not None else None)
    return prompt, _int(usage.get("output_tokens")), cached, written
