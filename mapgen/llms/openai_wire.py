"""OpenAI's chat completions wire format: how a request body is built and an answer read, apart from the
sending (:mod:`mapgen.llms._api`), so that each is testable alone, without a server.

:data:`OPENAI_CHAT` is the format object the OpenAI-shaped backends (:class:`~mapgen.OpenAILLM`,
:class:`~mapgen.InferenceEndpointsLLM`) return as ``llm.wire``: its ``path`` is relative to the backend's
base URL, ``body(llm, request, n, schema_style)`` is the JSON body of one request, and
``completions(answer, n)`` reads one answer body (raising :meth:`APIError.invalid_answer` for a malformed
one). Source: OpenAI's API reference, "Create chat completion".

Example:
    >>> from mapgen.core.prompt import Image, Prompt
    >>> prompt = Prompt("Describe the chart.", images=[Image(url="https://example.com/c.png")])
    >>> wire_messages(prompt)
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'Describe the chart.'}, \
{'type': 'image_url', 'image_url': {'url': 'https://example.com/c.png'}}]}]
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.core.schema import NotStrict, strict_schema
from mapgen.errors import EMPTY_ANSWER, REFUSED
from mapgen.llms._http import APIError


class ChatConfig(Protocol):
    """What :class:`OpenAIChatWire` reads from a backend's config (:class:`~mapgen.OpenAILLM`,
    :class:`~mapgen.InferenceEndpointsLLM`)."""

    @property
    def temperature(self) -> float: ...
    @property
    def top_p(self) -> float: ...
    @property
    def max_new_tokens(self) -> int: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def reasoning_effort(self) -> str | None: ...

    @property
    def supports_logprobs(self) -> bool: ...

    def body_model(self) -> str: ...

    def max_tokens_key(self) -> str: ...

    def sampling_body(self) -> dict[str, Any]: ...


MAX_TOP_LOGPROBS = 20
"""OpenAI's cap on ``top_logprobs``."""

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where OpenAI-compatible servers put a message's reasoning: ``reasoning_content`` (vLLM before 0.10,
llama.cpp's server, DeepSeek's API), ``reasoning`` (vLLM since 0.10, OpenRouter)."""


class OpenAIChatWire:
    """OpenAI's ``POST /chat/completions``: messages in, ``choices`` out.

    The body reads the backend's config through a few hooks (``body_model()``, ``max_tokens_key()``,
    ``sampling_body()``, and its ``seed``, ``reasoning_effort``, ``chat_template_kwargs``, ``extra_body``),
    so OpenAI's API and compatible servers (vLLM, TGI, llama.cpp) share it.

    Example:
        >>> import mapgen
        >>> from mapgen.core.request import Request
        >>> llm = mapgen.OpenAILLM("m", base_url="http://localhost:8000/v1", temperature=0.0, seed=7)
        >>> body = OPENAI_CHAT.body(llm, Request(Prompt("Hi"), index=1), 1, None)
        >>> body["messages"], body["seed"], body["max_tokens"]
        ([{'role': 'user', 'content': 'Hi'}], 8, 256)
        >>> OPENAI_CHAT.completions({"choices": [{"message": {"content": "Hello"}}]}, 1)[0].text
        'Hello'
    """

    path = "/chat/completions"

    def body(self, llm: ChatConfig, request: Request, n: int, schema_style: str | None) -> dict[str, Any]:
        """The JSON body for ``request`` answered ``n`` times, the backend's ``extra_body`` last."""
        body: dict[str, Any] = {
            "model": llm.body_model(),
            "messages": wire_messages(request.prompt),
            "temperature": llm.temperature,
            "top_p": llm.top_p,
            llm.max_tokens_key(): llm.max_new_tokens,
        }
        if llm.seed is not None:
            body["seed"] = llm.seed + request.seed_index
        if n > 1:
            body["n"] = n
        if request.schema is not None and schema_style is not None:
            body["response_format"] = response_format(request.schema, schema_style)
        if request.prompt.continue_final_message:  # vLLM's and SGLang's names for it
            body.update(continue_final_message=True, add_generation_prompt=False)
        if request.top_logprobs > 0 and llm.supports_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(request.top_logprobs, MAX_TOP_LOGPROBS)
        if llm.reasoning_effort is not None:
            body["reasoning_effort"] = llm.reasoning_effort
        template_kwargs = getattr(llm, "chat_template_kwargs", None)  # (OpenAILLM's)
        if template_kwargs:
            body["chat_template_kwargs"] = dict(template_kwargs)
        body.update(llm.sampling_body())
        body.update(getattr(llm, "extra_body", None) or {})
        return body

    def completions(self, answer: Any, n: int) -> list[Completion]:
        """The completions of one answer body: :func:`completions_from`."""
        return completions_from(answer, n)

    def rate_usage(self, answer: Any) -> tuple[int | None, int | None]:
        """The answer's prompt and completion tokens as its ``usage`` reports them (for the rate limiter)."""
        usage = answer.get("usage") if isinstance(answer, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens"))

    def schema_style_sent(self, body: dict[str, Any]) -> str:
        """How ``body``, built for a request with a schema, carried it
        (:attr:`~mapgen.core.request.Completion.schema_style`): its ``response_format`` type,
        :data:`NONSTRICT` for a ``json_schema`` without ``strict: true``, or ``none`` without one.

        Example:
            >>> shape = response_format({"type": "object", "additionalProperties": True}, "json_schema")
            >>> shape["json_schema"]["strict"], OPENAI_CHAT.schema_style_sent({"response_format": shape})
            (False, 'json_schema_nonstrict')
            >>> OPENAI_CHAT.schema_style_sent({"messages": []})
            'none'
        """
        shape = body.get("response_format")
        if not isinstance(shape, dict):
            return "none"
        spec = shape.get("json_schema")
        if shape.get("type") == "json_schema" and not (isinstance(spec, dict) and spec.get("strict") is True):
            return NONSTRICT
        return str(shape.get("type"))

    def schema_warning(self, style: str, schema: dict[str, Any]) -> str | None:
        """Why answers sent ``style`` are not constrained to ``schema`` (warned once per process and config),
        or ``None`` where they are: without a ``response_format`` (the server refused every style), or
        with ``strict: false`` (a schema with no strict form: OpenAI's API reads it as a guide only)."""
        if style == "none":
            return (
                "the server refused every response_format style mapgen tried, so answers go without a "
                "response_format: they are not constrained to the answer schema"
            )
        if style == NONSTRICT:
            try:
                strict_schema(schema)
                reason = "strict: true was not asked for"
            except NotStrict as error:
                reason = str(error)
            return (
                f"OpenAI's strict mode cannot take the answer schema ({reason}), so it goes as json_schema "
                "with strict: false, which OpenAI's API reads as a guide only: answers are not constrained "
                "to it there (servers that decode by grammar, such as vLLM's, still constrain to it)"
            )
        return None


OPENAI_CHAT = OpenAIChatWire()
"""The one :class:`OpenAIChatWire` (it holds no state)."""

NONSTRICT = "json_schema_nonstrict"
"""The :attr:`~mapgen.core.request.Completion.schema_style` of a ``json_schema`` sent with ``strict: false``
(a schema with no strict form, :class:`~mapgen.core.schema.NotStrict`)."""


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


def response_format(schema: dict[str, Any], style: str) -> dict[str, Any]:
    """The ``response_format`` that asks a server for JSON following ``schema``.

    ``json_schema`` is OpenAI's structured outputs with ``strict: true``, the schema in its strict form
    (:func:`mapgen.core.schema.strict_schema`; also vLLM, TGI 3, newer llama.cpp), or, for a schema that
    has none (:class:`~mapgen.core.schema.NotStrict`), the schema itself with ``strict: false``;
    ``json_object`` with a ``schema`` is llama-cpp-python's server; ``json`` with a ``value`` is TGI's.

    Example:
        >>> response_format({"type": "object"}, "json_object")
        {'type': 'json_object', 'schema': {'type': 'object'}}
    """
    if style == "json_schema":
        # OpenAI's strict structured outputs: constrained decoding, on a schema in its strict form.
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
        try:
            spec = {"name": name, "strict": True, "schema": strict_schema(schema)}
        except NotStrict:  # a dict field, `not`...: the schema as a guide instead (NONSTRICT), and a warning
            spec = {"name": name, "strict": False, "schema": schema}
        return {"type": "json_schema", "json_schema": spec}
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    if style == "json":
        return {"type": "json", "value": schema}
    raise ValueError(f"unknown response_format style {style!r}")


def completions_from(answer: Any, n: int) -> list[Completion]:
    """Completions from an OpenAI-shaped chat answer, in choice order (possibly fewer than ``n``).

    This is the one check of what the wire returned: a body that is not a chat completion (no
    ``choices``, as Azure's content filter answers; a choice without a ``message``; ``content`` of an
    unknown shape) raises :meth:`APIError.invalid_answer`, which is retried and never stored. ``content``
    given as a list of parts is read as its text parts joined. A choice without text, or stopped by a
    content filter, is a failed completion: ``refused`` when the model or a filter declined, else
    ``empty_answer``. A server's reasoning (``reasoning_content`` or ``reasoning``) is the completion's
    :attr:`~mapgen.core.request.Completion.reasoning`, kept also when no answer came after it.

    Example:
        >>> answer = {"choices": [{"message": {"content": [{"type": "text", "text": "Paris"}]}}]}
        >>> completions_from(answer, 1)[0].text
        'Paris'
        >>> completions_from({"choices": []}, 1)
        Traceback (most recent call last):
        ...
        mapgen.errors.APIError: HTTP 200 without choices
    """
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        error = answer.get("error") if isinstance(answer, dict) else None
        detail = error.get("message", error) if isinstance(error, dict) else error
        raise APIError.invalid_answer(
            "HTTP 200 without choices" + (f": {str(detail)[:200]}" if detail else "")
        )
    if not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
        raise APIError.invalid_answer("HTTP 200 with a choice that has no message")
    if len(choices) > 1:
        choices = sorted(choices, key=lambda c: c["index"] if isinstance(c.get("index"), int) else 0)
    usage = answer.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    choices = choices[:n]
    # usage counts every choice together: each gets an equal share, so that the shares add up to it
    prompt_tokens = shares(_int_or_none(usage.get("prompt_tokens")), len(choices))
    completion_tokens = shares(_int_or_none(usage.get("completion_tokens")), len(choices))
    cached_tokens = shares(_cached_tokens(usage), len(choices))
    completions = []
    for i, choice in enumerate(choices):
        message, finish = choice["message"], _str_or_none(choice.get("finish_reason"))
        text = message_text(message.get("content"))
        reasoning = message_reasoning(message)
        if not text or finish == "content_filter":  # a filtered answer is cut short, whatever it holds
            completions.append(_no_content(message, finish))
            completions[-1].reasoning = reasoning  # a trace cut by max_tokens is kept with the failure
            continue
        try:
            tokens, top_logprobs = logprobs_from(choice)
        except (AttributeError, TypeError):
            raise APIError.invalid_answer("HTTP 200 with malformed logprobs") from None
        completions.append(
            Completion(
                text=text,
                finish_reason=finish,
                prompt_tokens=prompt_tokens[i],
                completion_tokens=completion_tokens[i],
                tokens=tokens,
                top_logprobs=top_logprobs,
                reasoning=reasoning,
                cached_tokens=cached_tokens[i],
            )
        )
    return completions


def message_text(content: Any) -> str | None:
    """A message's ``content`` as text: a string, or the text of a list of content parts joined
    (``None`` when there is none); any other shape raises :meth:`APIError.invalid_answer`.

    Example:
        >>> message_text([{"type": "text", "text": "4"}, {"type": "text", "text": "2"}])
        '42'
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type", "text") in ("text", "output_text")]
        if all(isinstance(text, str) for text in texts):
            return "".join(texts) if texts else None
    raise APIError.invalid_answer(f"HTTP 200 with content of an unknown shape: {str(content)[:100]!r}")


def _no_content(message: dict[str, Any], finish: str | None) -> Completion:
    """A choice without text: the model or a content filter declined, or it wrote nothing."""
    refusal = message.get("refusal")
    if not refusal and isinstance(message.get("content"), list):
        parts = [p.get("refusal") for p in message["content"] if p.get("type") == "refusal"]
        refusal = next((p for p in parts if p), None)
    if refusal:
        return Completion.failed(str(refusal), REFUSED)
    if finish == "content_filter":
        return Completion.failed("stopped by a content filter", REFUSED)
    return Completion.failed(f"no text in the answer (finish_reason={finish})", EMPTY_ANSWER)


def shares(total: int | None, count: int) -> list[int | None]:
    """``total`` split into ``count`` whole shares that add up to it, the larger ones first (``None``
    stays ``None``): one request's usage among its ``n`` answers.

    Example:
        >>> shares(7, 3), shares(None, 2)
        ([3, 2, 2], [None, None])
    """
    if total is None:
        return [None] * count
    share, rest = divmod(total, count)
    return [share + (i < rest) for i in range(count)]


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens``: the prompt tokens OpenAI read from its prompt cache."""
    details = usage.get("prompt_tokens_details")
    return _int_or_none(details.get("cached_tokens")) if isinstance(details, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def logprobs_from(choice: dict[str, Any]) -> tuple[list[str] | None, list[dict[str, float]] | None]:
    """The tokens of an OpenAI-shaped choice and, per token, its ``top_logprobs`` as ``{token: logprob}``
    (``None, None`` when the answer has no log-probabilities).

    Example:
        >>> choice = {"logprobs": {"content": [{"token": "4", "logprob": -0.1,
        ...     "top_logprobs": [{"token": "4", "logprob": -0.1}, {"token": "3", "logprob": -2.4}]}]}}
        >>> logprobs_from(choice)
        (['4'], [{'4': -0.1, '3': -2.4}])
    """
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None, None
    tokens: list[str] = []
    top_logprobs: list[dict[str, float]] = []
    for entry in content:
        tokens.append(entry.get("token") or "")
        alternatives: dict[str, float] = {}
        for alternative in entry.get("top_logprobs") or ():
            # two token ids can decode to the same text: keep the likelier
            token, logprob = alternative.get("token"), alternative.get("logprob")
            if isinstance(token, str) and isinstance(logprob, (int, float)):
                alternatives[token] = max(float(logprob), alternatives.get(token, -math.inf))
        top_logprobs.append(alternatives)
    return tokens, top_logprobs
