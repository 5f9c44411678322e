"""A test server for Anthropic's Messages API and Message Batches API, following the published reference.

Run it with ``python -m tests.servers.anthropic_server --port 8124 --api-key sk-ant-test``. Endpoints:

- ``POST /v1/messages``: a ``message`` object (``id``, ``type``, ``role``, ``content`` blocks, ``model``,
  ``stop_reason`` ``end_turn|max_tokens|stop_sequence|tool_use``, ``stop_sequence``, ``usage``). The key is
  read from ``x-api-key`` (or ``Authorization: Bearer``, as the 2.x SDKs send it; ``x-api-key`` wins when
  both are sent): none is a 401 ``authentication_error`` "x-api-key header is required", another key a 401
  "invalid x-api-key". ``anthropic-version`` is required (400) and must be one of
  :data:`~tests.servers.anthropic_schema.VERSIONS`. The body is validated as
  :mod:`tests.servers.anthropic_schema` describes (400 ``invalid_request_error``; a body over 32 MB is a
  413 ``request_too_large``). Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``
  with a ``request-id`` header, as every answer has.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, counted as ``usage`` counts.
- ``POST /v1/messages/batches``, ``GET /v1/messages/batches`` (newest first, ``limit``, ``after_id``,
  ``before_id``), ``GET /v1/messages/batches/{id}``, ``GET .../{id}/results`` (JSONL), ``POST
  .../{id}/cancel``, ``DELETE .../{id}``: see :mod:`tests.servers.anthropic_batches`.

Answers. The echo by default: ``"echo: <text of the last user turn>"``; with ``tool_choice`` naming a tool
(or ``any``: the first tool), a ``tool_use`` block of that tool with input ``{"echo": <text>}``; with
``output_config.format`` (structured outputs), the text ``{"echo": <text>}``. Scripted answers:
``replies`` is an ordered list of rules; the first whose ``contains`` is in the last user turn's text (and
whose ``model``, if given, is the request's) answers with its ``"reply"`` (text), its ``"tool_use"``
(``{"name", "input"}``: a ``tool_use`` block, ``stop_reason`` ``tool_use``), its ``"status"`` (an error:
``"message"``, ``"headers"``), or its ``"body"`` (sent as the whole 200 answer); else ``default_reply``
(text) when set. ``max_tokens`` cuts a text answer to that many words (``stop_reason`` ``max_tokens``), and
the first ``stop_sequences`` match ends it (``stop_reason`` ``stop_sequence``).

Token counts (``usage.input_tokens``, ``output_tokens``) follow :mod:`tests.servers.tokens`: input is the
words of the tools (name, description, schema JSON), the system prompt and every content block (an image
counts ``IMAGE_TOKENS``); output is the answer's words plus one end-of-turn token (``max_tokens`` when cut).

Prompt caching: the blocks marked ``cache_control`` (tools, then system, then messages; a top-level
``cache_control`` marks the last block) are breakpoints. The longest breakpoint prefix seen before for the
same model (within its ``ttl``) is read: ``cache_read_input_tokens``; the last breakpoint's prefix, when
longer and at least ``min_cache_tokens`` long (the reference's minimum is 1,024 to 4,096 by model; tests set
it low), is written: ``cache_creation_input_tokens`` (and ``cache_creation.ephemeral_5m_input_tokens`` or
``ephemeral_1h_input_tokens``). ``input_tokens`` is what remains; the three add up to the prompt's tokens.

Faults and limits: ``latency`` seconds before each answer; ``error_rate`` of requests (and the first
``fail_first``) fail at once with ``error_status`` (429 ``rate_limit_error`` by default; 529 is
``overloaded_error``, 500 ``api_error``) and a ``retry-after`` header (``retry_after``, ``None`` for
none). Every answer carries ``anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-{limit,
remaining,reset}`` headers for a sliding minute under ``rate_limits``; with ``enforce_rate_limits`` a request
over them is a 429 with ``retry-after``. ``models``, when set, lists the models that exist (others: 404
``not_found_error``); ``prefill: False`` refuses a final ``assistant`` turn, as models without prefill do.

Control: ``GET /stats`` (total requests, in flight and their maximum, errors), ``GET /requests`` (the JSON
bodies of the message requests since the last reset, batch items not included), ``POST /reset`` (clears
counters, the prompt cache and every batch, and takes new settings as JSON; see ``DEFAULTS``), ``POST
/control/batches/{id}`` (see :mod:`tests.servers.anthropic_batches`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

from tests.servers import anthropic_schema as schema
from tests.servers.anthropic_batches import MessageBatches
from tests.servers.anthropic_common import error_response, last_user_text, request_id, rfc3339
from tests.servers.tokens import END_TOKENS, IMAGE_TOKENS, count_json, count_tokens

KEEP_REQUESTS = 10_000
MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""The Messages API's request size limit (413 ``request_too_large`` above)."""

DEFAULTS: dict[str, Any] = {
    "latency": 0.0,
    "error_rate": 0.0,
    "error_status": 429,
    "retry_after": "0",  # a header value, or None for no header
    "api_key": None,
    "fail_first": 0,
    "seed": 0,
    "replies": [],  # scripted answers, first match wins
    "default_reply": None,
    "models": None,  # None: every model exists
    "prefill": True,
    "min_cache_tokens": 1024,
    "rate_limits": {"requests": 4000, "input_tokens": 2_000_000, "output_tokens": 400_000},
    "enforce_rate_limits": False,
    # Message Batches: see anthropic_batches.
    "batch_delay": 0.0,  # seconds from creation to the end of processing; None: only POST /control ends it
    "batch_results": [],  # [{"contains": ..., "type": "errored"|"expired"|"canceled", "error": {...}}]
    "max_batch_requests": 100_000,
    "max_batch_bytes": 256 * 1024 * 1024,
}


def block_tokens(block: Any) -> int:
    """The tokens of one content block, tool or system block (see :mod:`tests.servers.tokens`)."""
    if isinstance(block, str):
        return count_tokens(block)
    if isinstance(block, schema.TextBlock):
        return count_tokens(block.text)
    if isinstance(block, schema.ImageBlock):
        return IMAGE_TOKENS
    if isinstance(block, schema.DocumentBlock):
        return (
            count_tokens(block.source.data)
            if isinstance(block.source, schema.PlainTextSource)
            else IMAGE_TOKENS
        )
    if isinstance(block, schema.ToolUseBlock):
        return count_tokens(block.name) + count_json(block.input)
    if isinstance(block, schema.ToolResultBlock):
        content = block.content
        if content is None:
            return 0
        return count_tokens(content) if isinstance(content, str) else sum(block_tokens(b) for b in content)
    if isinstance(block, schema.ThinkingBlock):
        return count_tokens(block.thinking)
    if isinstance(block, schema.Tool):
        return (
            count_tokens(block.name) + count_tokens(block.description or "") + count_json(block.input_schema)
        )
    return 0


def prompt_units(params: schema.MessageCreateParams) -> list[tuple[str, int, schema.CacheControl | None]]:
    """The prompt as cacheable units in the API's cache order (tools, system, messages): each unit's
    identity (its JSON without ``cache_control``), its tokens, and its ``cache_control``."""
    units: list[tuple[str, int, schema.CacheControl | None]] = []

    def add(prefix: str, block: Any) -> None:
        if isinstance(block, str):
            units.append((f"{prefix}:{json.dumps(block)}", count_tokens(block), None))
            return
        identity = json.dumps(block.model_dump(exclude={"cache_control"}, by_alias=True), sort_keys=True)
        units.append((f"{prefix}:{identity}", block_tokens(block), getattr(block, "cache_control", None)))

    for tool in params.tools or []:
        add("tool", tool)
    system = params.system
    for block in [system] if isinstance(system, str) else system or []:
        add("system", block)
    for message in params.messages:
        for block in [message.content] if isinstance(message.content, str) else message.content:
            add(message.role, block)
    if params.cache_control is not None and units:
        identity, tokens, _ = units[-1]
        units[-1] = (identity, tokens, params.cache_control)
    return units


class AnthropicServer:
    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = {}
        self.batches = MessageBatches(self)
        self.reset(**settings)

    def reset(self, **settings: Any) -> None:
        """Clear the counters, the prompt cache and the batches, and apply ``settings`` (others: defaults)."""
        self.settings = {**DEFAULTS, **settings}
        self.random = random.Random(self.settings["seed"])
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.errors = 0
        self.received: deque[dict[str, Any]] = deque(maxlen=KEEP_REQUESTS)
        self.cache: dict[str, float] = {}  # prefix digest -> expiry time
        self.window: deque[tuple[float, int, int]] = deque()  # (time, input tokens, output tokens)
        self.messages_made = 0
        self.batches.clear()

    # -- the answer --------------------------------------------------------------------------------------

    def rule_for(self, text: str, model: str) -> dict[str, Any] | None:
        for rule in self.settings["replies"]:
            if rule.get("contains", "") in text and rule.get("model", model) == model:
                return rule
        if self.settings["default_reply"] is not None:
            return {"reply": self.settings["default_reply"]}
        return None

    def usage_in(self, params: schema.MessageCreateParams) -> dict[str, Any]:
        """The input side of ``usage``, with prompt caching simulated (and the cache updated)."""
        units = prompt_units(params)
        now = time.time()
        digests: list[str] = []
        running = hashlib.sha256(params.model.encode())
        cumulative: list[int] = []
        total = 0
        for identity, tokens, _ in units:
            running.update(identity.encode())
            digests.append(running.hexdigest())
            total += tokens
            cumulative.append(total)
        marks = [i for i, unit in enumerate(units) if unit[2] is not None]
        read = 0
        for i in reversed(marks):
            if self.cache.get(digests[i], 0.0) > now:
                read = cumulative[i]
                ttl = 3600 if units[i][2].ttl == "1h" else 300
                self.cache[digests[i]] = now + ttl  # a read refreshes the entry
                break
        created = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
        if (
            marks
            and cumulative[marks[-1]] > read
            and cumulative[marks[-1]] >= self.settings["min_cache_tokens"]
        ):
            last = units[marks[-1]][2]
            created[f"ephemeral_{last.ttl}_input_tokens"] = cumulative[marks[-1]] - read
            for i in marks:
                if cumulative[i] >= self.settings["min_cache_tokens"]:
                    self.cache[digests[i]] = now + (3600 if units[i][2].ttl == "1h" else 300)
        creation = sum(created.values())
        return {
            "input_tokens": total - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "cache_creation": created,
        }

    def message(self, params: schema.MessageCreateParams, rule: dict[str, Any] | None) -> dict[str, Any]:
        """The ``message`` object answering ``params`` (``rule``: the scripted rule that matched, if any)."""
        user = last_user_text(params)
        tools = [tool.name for tool in params.tools or []]
        choice = params.tool_choice
        tool_use: dict[str, Any] | None = None
        text = ""
        if rule is not None and "tool_use" in rule:
            tool_use = rule["tool_use"]
        elif rule is not None:
            text = rule["reply"]
        elif isinstance(choice, schema.ToolChoiceTool):
            tool_use = {"name": choice.name, "input": {"echo": user}}
        elif isinstance(choice, schema.ToolChoiceAny):
            tool_use = {"name": tools[0], "input": {"echo": user}}
        elif params.output_config is not None and params.output_config.format is not None:
            text = json.dumps({"echo": user})
        else:
            text = f"echo: {user}"
        stop_reason, stop_sequence = "end_turn", None
        if tool_use is not None:
            block_id = "toolu_" + uuid.uuid4().hex[:24]
            content = [
                {"type": "tool_use", "id": block_id, "name": tool_use["name"], "input": tool_use["input"]}
            ]
            output = count_tokens(tool_use["name"]) + count_json(tool_use["input"]) + END_TOKENS
            stop_reason = "tool_use"
        else:
            for sequence in params.stop_sequences or []:
                at = text.find(sequence)
                if at >= 0 and (stop_sequence is None or at < text.find(stop_sequence)):
                    stop_sequence = sequence
            if stop_sequence is not None:
                text, stop_reason = text[: text.find(stop_sequence)], "stop_sequence"
            output = count_tokens(text) + END_TOKENS
            if output > params.max_tokens:
                text = " ".join(text.split()[: params.max_tokens])
                output, stop_reason, stop_sequence = params.max_tokens, "max_tokens", None
            content = [{"type": "text", "text": text}] if params.max_tokens else []
        self.messages_made += 1
        usage = {**self.usage_in(params), "output_tokens": output}
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": params.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def check(self, params: schema.MessageCreateParams) -> tuple[int, str] | None:
        """What the API refuses beyond the body's shape: unknown models, prefill where unsupported."""
        models = self.settings["models"]
        if models is not None and params.model not in models:
            return 404, f"model: {params.model}"
        if not self.settings["prefill"] and params.messages[-1].role == "assistant":
            return (
                400,
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message.",
            )
        return None

    # -- rate limits -------------------------------------------------------------------------------------

    def window_totals(self) -> tuple[int, int, int, float]:
        now = time.time()
        while self.window and self.window[0][0] <= now - 60:
            self.window.popleft()
        requests = len(self.window)
        inputs = sum(w[1] for w in self.window)
        outputs = sum(w[2] for w in self.window)
        reset = self.window[0][0] + 60 if self.window else now
        return requests, inputs, outputs, reset

    def rate_headers(self) -> dict[str, str]:
        limits = self.settings["rate_limits"]
        requests, inputs, outputs, reset = self.window_totals()
        at = rfc3339(reset)
        headers: dict[str, str] = {}
        for name, limit, used in (
            ("requests", limits["requests"], requests),
            ("input-tokens", limits["input_tokens"], inputs),
            ("output-tokens", limits["output_tokens"], outputs),
            ("tokens", limits["input_tokens"] + limits["output_tokens"], inputs + outputs),
        ):
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, limit - used))
            headers[f"anthropic-ratelimit-{name}-reset"] = at
        return headers

    def over_limit(self, input_tokens: int) -> float | None:
        """Seconds to wait when this request would go over ``rate_limits`` (enforced only when asked)."""
        if not self.settings["enforce_rate_limits"]:
            return None
        limits = self.settings["rate_limits"]
        requests, inputs, outputs, reset = self.window_totals()
        if (
            requests + 1 > limits["requests"]
            or inputs + input_tokens > limits["input_tokens"]
            or outputs >= limits["output_tokens"]
        ):
            return max(0.0, reset - time.time())
        return None

    # -- HTTP --------------------------------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> web.Response | None:
        """401 for a missing or wrong key, 400 for a missing or unknown ``anthropic-version``."""
        key = self.settings["api_key"]
        sent = request.headers.get("x-api-key")
        if sent is None and request.headers.get("Authorization", "").startswith("Bearer "):
            sent = request.headers["Authorization"].removeprefix("Bearer ")
        if key is not None and sent is None:
            return error_response(401, "x-api-key header is required")
        if key is not None and sent != key:
            return error_response(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return error_response(400, "anthropic-version: header is required")
        if version not in schema.VERSIONS:
            return error_response(400, f"anthropic-version: invalid version {version!r}")
        return None

    async def read_json(self, request: web.Request, limit: int) -> Any:
        """The JSON body, or an error response (413 over ``limit`` bytes, 400 when it does not parse)."""
        if (request.content_length or 0) > limit:
            return error_response(413, "Request exceeds the maximum allowed number of bytes.")
        raw = await request.read()
        if len(raw) > limit:
            return error_response(413, "Request exceeds the maximum allowed number of bytes.")
        try:
            return json.loads(raw)
        except ValueError:
            return error_response(400, "There was an error parsing the body of your request as JSON.")

    def injected(self) -> web.Response | None:
        settings = self.settings
        if self.total <= settings["fail_first"] or self.random.random() < settings["error_rate"]:
            self.errors += 1
            status = settings["error_status"]
            headers = {} if settings["retry_after"] is None else {"retry-after": str(settings["retry_after"])}
            if status == 429:
                headers.update(self.rate_headers())
            messages = {429: "Number of requests has exceeded your rate limit", 529: "Overloaded"}
            return error_response(status, messages.get(status, f"injected {status}"), headers)
        return None

    async def messages(self, request: web.Request) -> web.Response:
        self.total += 1
        refused = self.authenticate(request)
        if refused is not None:
            return refused
        body = await self.read_json(request, MAX_REQUEST_BYTES)
        if isinstance(body, web.Response):
            return body
        injected = self.injected()
        if injected is not None:
            return injected
        version = request.headers["anthropic-version"]
        params = schema.parse_params(body, version)
        if isinstance(params, str):
            self.errors += 1
            return error_response(400, params)
        self.received.append(body)
        problem = self.check(params)
        if problem is not None:
            self.errors += 1
            return error_response(*problem)
        if params.stream:
            return error_response(400, "stream: this test server does not stream; send stream=false")
        rule = self.rule_for(last_user_text(params), params.model)
        if rule is not None and rule.get("status"):
            self.errors += 1
            headers = (
                {}
                if self.settings["retry_after"] is None
                else {"retry-after": str(self.settings["retry_after"])}
            )
            status = rule["status"]
            return error_response(
                status, rule.get("message", f"scripted {status}"), rule.get("headers", headers)
            )
        wait = self.over_limit(sum(unit[1] for unit in prompt_units(params)))
        if wait is not None:
            self.errors += 1
            headers = {"retry-after": str(max(1, round(wait))), **self.rate_headers()}
            return error_response(
                429, "Number of request tokens has exceeded your per-minute rate limit", headers
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.settings["latency"]:
                await asyncio.sleep(self.settings["latency"])
        finally:
            self.in_flight -= 1
        if rule is not None and "body" in rule:
            return web.json_response(rule["body"], headers={"request-id": request_id()})
        answer = self.message(params, rule)
        usage = answer["usage"]
        prompt = (
            usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
        )
        self.window.append((time.time(), prompt, usage["output_tokens"]))
        return web.json_response(answer, headers={"request-id": request_id(), **self.rate_headers()})

    async def count_tokens(self, request: web.Request) -> web.Response:
        refused = self.authenticate(request)
        if refused is not None:
            return refused
        body = await self.read_json(request, MAX_REQUEST_BYTES)
        if isinstance(body, web.Response):
            return body
        params = schema.parse_params(body, request.headers["anthropic-version"], count_tokens=True)
        if isinstance(params, str):
            return error_response(400, params)
        tokens = sum(unit[1] for unit in prompt_units(params))
        return web.json_response({"input_tokens": tokens}, headers={"request-id": request_id()})

    async def stats(self, request: web.Request) -> web.Response:
        stats = {
            "total": self.total,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "errors": self.errors,
            "messages": self.messages_made,
        }
        return web.json_response(stats)

    async def requests(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.received))

    async def reset_handler(self, request: web.Request) -> web.Response:
        settings = await request.json() if request.can_read_body else {}
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            return web.json_response({"error": f"unknown settings {sorted(unknown)}"}, status=400)
        self.reset(**settings)
        return web.json_response(self.settings)

    def app(self) -> web.Application:
        # Batches may be 256 MB; the size limits themselves are checked by the handlers.
        app = web.Application(client_max_size=2**30)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        self.batches.register(app)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/requests", self.requests)
        app.router.add_post("/reset", self.reset_handler)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests that fail")
    parser.add_argument("--error-status", type=int, default=429)
    parser.add_argument("--api-key", default=None, help="require this key")
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    args = parser.parse_args()
    server = AnthropicServer(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        api_key=args.api_key,
        min_cache_tokens=args.min_cache_tokens,
    )
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
