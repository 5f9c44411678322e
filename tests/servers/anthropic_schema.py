"""Validation of Anthropic Messages API request bodies, as the API reference states it (pydantic models).

The API answers a malformed body with a 400 ``invalid_request_error`` whose message is
``"<dotted.location>: <reason>"`` (the API is built on pydantic, and its messages read as pydantic's do);
:func:`validate_params` returns that message, or ``None`` for a valid body. What it checks, beyond shapes:

- ``model``, ``max_tokens`` (``>= 0``; 0 only pre-warms the cache, and is refused inside a batch) and
  ``messages`` (at least one) are required; unknown fields are "Extra inputs are not permitted".
- Roles are ``user`` and ``assistant``; consecutive turns of one role are combined (not an error), a final
  ``assistant`` turn is a prefill (which may be empty, but not end with whitespace); every other message
  has non-empty content, and no ``text`` block is empty.
- Content is a string or a list of ``text``, ``image`` (``base64`` with media type ``image/jpeg|png|gif|webp``
  and valid base64 data, or ``url`` with an ``http(s)://`` URL, which the API downloads), ``document``
  (``base64`` PDF, ``text``, ``url``), ``tool_use``, ``tool_result`` and ``thinking`` blocks; ``tool_result``
  blocks must answer ``tool_use`` ids of the turn before, and every ``tool_use`` must be answered in the
  next turn.
- ``system`` is a string or a list of ``text`` blocks; ``cache_control`` is ``{"type": "ephemeral",
  "ttl": "5m"|"1h"}``, on at most 4 blocks.
- ``tools`` have a unique ``name`` (``^[a-zA-Z0-9_-]{1,128}$``) and an ``input_schema`` of type object;
  ``tool_choice`` is ``auto``, ``any``, ``tool`` (naming one of ``tools``) or ``none``, and needs ``tools``
  unless ``auto``/``none``.
- ``stop_sequences`` each contain non-whitespace.
- Not modelled (refused as unknown shapes): server tools (``web_search_...``, ``code_execution_...``),
  ``search_result`` and ``container_upload`` blocks.
- Version ``2023-06-01`` takes ``temperature`` (0 to 1), ``top_p`` (0 to 1) and ``top_k`` (``>= 0``);
  version ``2026-10-21`` (what the 2.x SDKs send) removed them (Extra inputs are not permitted, even at
  their defaults), and refuses ``document`` blocks in ``assistant`` turns and non-empty ``citations`` on
  ``text`` blocks of ``user`` turns.

>>> validate_params({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
>>> validate_params({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
'max_tokens: Field required'
>>> validate_params({"model": "m", "max_tokens": 8, "messages": [], "temperature": 0.5}, "2026-10-21")
'temperature: Extra inputs are not permitted'
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

VERSIONS = ("2023-06-01", "2026-10-21")
"""The ``anthropic-version`` values the API accepts."""

MAX_CACHE_BREAKPOINTS = 4


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheControl(Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] = "5m"


class Cacheable(Strict):
    cache_control: CacheControl | None = None


class TextBlock(Cacheable):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(Strict):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str

    @field_validator("data")
    @classmethod
    def _base64(cls, data: str) -> str:
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("Invalid base64 data") from error
        return data


class URLSource(Strict):
    """An image or PDF the API downloads: over HTTP(S) only (a ``data:`` URL goes as a ``base64`` source)."""

    type: Literal["url"]
    url: str

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError("Only HTTP(S) URLs are supported; send other images as base64 sources")
        return url


class FileSource(Strict):
    type: Literal["file"]
    file_id: str


class ImageBlock(Cacheable):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | URLSource | FileSource, Field(discriminator="type")]


class Base64PDFSource(Strict):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(Strict):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class DocumentBlock(Cacheable):
    type: Literal["document"]
    source: Annotated[Base64PDFSource | PlainTextSource | URLSource | FileSource, Field(discriminator="type")]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(Cacheable):
    type: Literal["tool_use"]
    id: str = Field(pattern=r"^[a-zA-Z0-9_-]+$")
    name: str = Field(min_length=1)
    input: dict[str, Any]


ToolResultContent = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(Cacheable):
    type: Literal["tool_result"]
    tool_use_id: str = Field(pattern=r"^[a-zA-Z0-9_-]+$")
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None


class ThinkingBlock(Strict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(Strict):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(Strict):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(Cacheable):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]

    @field_validator("input_schema")
    @classmethod
    def _object(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError("Input should be a JSON schema of type 'object'")
        return schema


class ToolChoiceAuto(Strict):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(Strict):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(Strict):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(Strict):
    type: Literal["none"]


class Metadata(Strict):
    user_id: str | None = Field(default=None, max_length=256)


class ThinkingEnabled(Strict):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)


class ThinkingDisabled(Strict):
    type: Literal["disabled"]


class ThinkingAdaptive(Strict):
    type: Literal["adaptive"]


class JSONOutputFormat(Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(Strict):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


class MessageCreateParams(Strict):
    """The body of ``POST /v1/messages`` in version 2026-10-21 (no sampling parameters)."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=0)
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None
    tools: list[Tool] | None = None
    tool_choice: (
        Annotated[
            ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
        ]
        | None
    ) = None
    thinking: (
        Annotated[ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")] | None
    ) = None
    cache_control: CacheControl | None = None
    output_config: OutputConfig | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    container: Any = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None

    @field_validator("stop_sequences")
    @classmethod
    def _not_blank(cls, sequences: list[str] | None) -> list[str] | None:
        if sequences and any(not s.strip() for s in sequences):
            raise ValueError("Each stop sequence must contain non-whitespace")
        return sequences


class MessageCreateParamsV1(MessageCreateParams):
    """Version 2023-06-01: the same, with the sampling parameters."""

    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)


class CountTokensParams(MessageCreateParams):
    """The body of ``POST /v1/messages/count_tokens``: a message request without ``max_tokens``."""

    max_tokens: int | None = Field(default=None, ge=0)  # type: ignore[assignment]


class CountTokensParamsV1(CountTokensParams):
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)


def _location(loc: tuple[Any, ...]) -> str:
    # pydantic puts the tried member of a plain union in the location ("str", "list[...]"); the API's
    # messages keep the tags of tagged unions ("text", "base64") but not those.
    kept = [str(part) for part in loc if not (isinstance(part, str) and ("[" in part or part in ("str",)))]
    return ".".join(kept)


def _first_error(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    # A missing top-level field says most; else, for `str | list[...]` where both members fail, the deeper
    # location says what is wrong.
    top_missing = [e for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    chosen = top_missing[0] if top_missing else max(errors, key=lambda e: len(e["loc"]))
    message = chosen["msg"].removeprefix("Value error, ")
    where = _location(tuple(chosen["loc"]))
    return f"{where}: {message}" if where else message


def _blocks(content: Any) -> list[Any]:
    return [] if isinstance(content, str) else list(content)


def _check_conversation(params: MessageCreateParams, version: str) -> str | None:
    if not params.messages:
        return "messages: at least one message is required"
    last = len(params.messages) - 1
    for index, message in enumerate(params.messages):
        blocks = [message.content] if isinstance(message.content, str) else message.content
        final_assistant = index == last and message.role == "assistant"
        if not final_assistant and (not blocks or any(b == "" for b in blocks)):
            return (
                f"messages.{index}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        if any(isinstance(b, TextBlock) and not b.text for b in blocks):
            return f"messages.{index}: text content blocks must be non-empty"
        tail = blocks[-1] if blocks else ""
        tail_text = tail if isinstance(tail, str) else getattr(tail, "text", "")
        if final_assistant and tail_text and tail_text != tail_text.rstrip():
            return "messages: final assistant content cannot end with trailing whitespace"
    turns: list[tuple[str, list[Any]]] = []
    for message in params.messages:  # consecutive turns of one role are combined
        blocks = _blocks(message.content) or [message.content]
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message.role, list(blocks)))
    for index, (role, blocks) in enumerate(turns):
        results = {b.tool_use_id for b in blocks if isinstance(b, ToolResultBlock)}
        previous = turns[index - 1] if index else None
        uses = {b.id for b in previous[1] if isinstance(b, ToolUseBlock)} if previous else set()
        if results and role != "user":
            return f"messages.{index}: tool_result blocks are only allowed in user turns"
        if results - uses:
            if not uses:
                return (
                    f"messages.{index}.content: tool_result block(s) provided when previous message does not "
                    "contain any tool_use blocks"
                )
            return (
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                + ", ".join(sorted(results - uses))
            )
        if uses - results and role == "user":
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                "immediately after: " + ", ".join(sorted(uses - results))
            )
        if version == "2026-10-21":
            for block in blocks:
                if role == "assistant" and isinstance(block, DocumentBlock):
                    return f"messages.{index}: document blocks are not allowed in assistant messages"
                if role == "user" and isinstance(block, TextBlock) and block.citations:
                    return f"messages.{index}: citations are not allowed on text blocks in user messages"
    return None


def _check_tools(params: MessageCreateParams) -> str | None:
    names = [tool.name for tool in params.tools or []]
    if len(set(names)) != len(names):
        return "tools: Tool names must be unique."
    choice = params.tool_choice
    if choice is not None and choice.type in ("any", "tool") and not names:
        return "tool_choice: tool_choice may only be specified while providing tools."
    if isinstance(choice, ToolChoiceTool) and choice.name not in names:
        return f"tool_choice.tool.name: Tool '{choice.name}' not found in provided tools"
    if isinstance(params.thinking, ThinkingEnabled) and params.thinking.budget_tokens >= params.max_tokens:
        return "thinking.enabled.budget_tokens: `max_tokens` must be greater than `thinking.budget_tokens`"
    return None


def cache_breakpoints(params: MessageCreateParams) -> int:
    """How many blocks carry ``cache_control`` (tools, system, then messages)."""
    blocks: list[Any] = list(params.tools or [])
    blocks += _blocks(params.system or [])
    for message in params.messages:
        blocks += _blocks(message.content)
    count = sum(1 for block in blocks if getattr(block, "cache_control", None) is not None)
    return count + (params.cache_control is not None)


def parse_params(
    body: Any, version: str = "2026-10-21", *, count_tokens: bool = False
) -> MessageCreateParams | str:
    """The validated request, or the API's error message for it."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    if count_tokens:
        model = CountTokensParamsV1 if version == "2023-06-01" else CountTokensParams
    else:
        model = MessageCreateParamsV1 if version == "2023-06-01" else MessageCreateParams
    try:
        params = model.model_validate(body)
    except ValidationError as error:
        return _first_error(error)
    problem = _check_conversation(params, version) or _check_tools(params)
    if problem:
        return problem
    found = cache_breakpoints(params)
    if found > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )
    return params


def validate_params(body: Any, version: str = "2026-10-21") -> str | None:
    """``None`` when ``body`` is a valid ``POST /v1/messages`` body under ``version``, else the API's 400
    message for it."""
    result = parse_params(body, version)
    return result if isinstance(result, str) else None
