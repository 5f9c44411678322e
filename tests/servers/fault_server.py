"""A small OpenAI-compatible chat server with configurable latency, injected errors and counters.

Run it with ``python -m tests.servers.fault_server --port 8123 --latency 0.1 --error-rate 0.1``. It answers
``POST /v1/chat/completions`` with ``"echo: <last user message>"`` (``" #i"`` appended to choice ``i`` when
``n > 1``) after ``latency`` seconds, or, for a fraction ``error_rate`` of requests, at once with
``error_status`` (429 by default) and a ``Retry-After`` header. ``GET /stats`` returns the counters (total
requests, requests in flight and their maximum, injected errors, and with ``?times=1`` the arrival time of
every request); ``POST /reset`` clears them and takes new settings as JSON, so that one server serves many
tests. With ``--api-key``, a request with another key gets a 401 whose message quotes the key it was sent,
as some providers do, so that tests can check the client scrubs it.

Scripted answers: ``replies`` is an ordered list of rules ``{"contains": "<substring of the last user
message>", "reply": "<text>"}``; the first rule whose ``contains`` is in the last user message answers (a
rule without ``contains`` matches every request; a rule with ``"model"`` only requests for that model), else
``default_reply`` does when set, else the echo. A scripted reply is sent whatever ``response_format`` asked
for. ``"reply"`` may be a list: choice ``i`` gets item ``i`` (modulo its length). A rule with ``"status":
500`` (and an optional ``"message"``) answers with that error instead, as the injected errors do (with the
rule's ``"headers"``, else the ``retry_after`` setting's). A rule's ``"body"`` is sent as the whole 200
answer instead of a chat completion (``"raw"``: that text, labelled JSON), and its ``"content"`` as each
choice's ``message.content`` (a list of parts, say), so that tests can send what misbehaving servers send.
``refuse_formats`` lists ``response_format`` types the server answers with a 400 that names them, as servers
that do not support one do. A rule's ``"logprobs"`` is OpenAI's ``choices[i].logprobs.content`` list
(``[{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]``), sent when the request asks
for ``logprobs``, each ``top_logprobs`` cut to the ``top_logprobs`` asked; without one, such a request gets
the reply's whitespace-led words as tokens, each certain.
Sampling parameters are validated as OpenAI's API reference says (``temperature`` in [0, 2], ``top_p`` in
[0, 1], ``presence_penalty`` and ``frequency_penalty`` in [-2, 2], ``stop`` a string or at most 4 strings,
``n`` >= 1, ``top_logprobs`` in [0, 20]) and, for the parameters OpenAI-compatible servers add, as vLLM's
server does (``top_k`` an int >= -1, ``min_p`` in [0, 1], ``repetition_penalty`` > 0): a 400
``invalid_request_error`` naming the ``param``.
vLLM's own checks (:func:`vllm_refusal`), with its 400s (``type`` ``BadRequestError``):
``continue_final_message`` needs ``add_generation_prompt: false``, and with ``max_context`` (tokens,
counted as ``usage`` is) a prompt longer than that, or a ``max_tokens`` over it, is refused. A continued
message keeps its role in the answer (``"user"`` for Magpie's open user turn), as vLLM answers it.
``cut_at_max_tokens``: a reply longer than the request's ``max_tokens`` (or ``max_completion_tokens``)
is cut to that many tokens, with ``finish_reason`` ``"length"``, as a real server cuts it.
``support_n``: ``False`` answers ``n > 1`` once (llama.cpp's server), ``"refuse"`` with a 422.
A rule's ``"in_turn"`` list answers the requests that match it in turn: the first gets item 0, the next
item 1, and every later one the last item (an invalid answer, then a valid one, say).
A ``json_schema`` ``response_format`` with ``"strict": true`` is checked as OpenAI's structured outputs
check it (https://platform.openai.com/docs/guides/structured-outputs, "Supported schemas"): the root is an
object, every object has ``additionalProperties: false`` and lists every property in ``required``, no
keyword outside the supported subset (:data:`STRICT_UNSUPPORTED`: ``oneOf``, ``allOf``, ``not``, ``if``,
``discriminator``, ``patternProperties``, ``minLength``, ``default``...), every subschema typed (``type``,
``anyOf``, ``$ref``, ``enum`` or ``const``: not ``{}``), no ``format`` outside :data:`STRICT_FORMATS`
(``binary``, ``uri``...), a ``name`` of at most 64 letters, digits, ``_`` and ``-``; a schema that
breaks a rule gets OpenAI's 400 ``Invalid schema for response_format`` (``param`` ``response_format``,
``code`` ``null``).
``GET /requests`` returns the JSON bodies of the chat requests received since the last reset, in order
(the last ``KEEP_REQUESTS`` of them). ``usage`` counts as :mod:`tests.servers.tokens` says: the words of
every message (system included; an image part counts ``IMAGE_TOKENS``), and the words of each choice plus
one end-of-turn token. OpenAI's Files and Batch APIs are served too, answered by the same rules: see
:mod:`tests.servers.openai_batches` (its settings are part of ``DEFAULTS``; ``/reset`` clears files and
batches).

Images: a message's ``content`` may be a list of content parts, validated as OpenAI's API does (a
malformed part, an image outside a user message, an empty list or an image that does not decode is a 400
naming the part); the text parts are the message's text for the rules. Each ``image_url`` part with a
base64 ``data:`` URL is decoded with Pillow, and the echo ends with ``[image <width>x<height> <format>]``
per image (``[image url <url>]`` for a URL, which this server does not download), so a test fails if the
bytes sent were wrong.

Reasoning: a rule's ``"reasoning"`` is sent beside the reply as ``message.reasoning_content`` (or under
the rule's ``"reasoning_field"``, such as ``"reasoning"``), as vLLM's and llama.cpp's servers do; a reply
may also hold a ``<think>`` block itself. ``chat_template_kwargs`` (an object, else a 400) with
``"enable_thinking": false`` turns the field off, as Qwen3's template does; ``reasoning_effort`` must be
one of OpenAI's values (else a 400), and a rule's ``"reasoning"`` ends with `` (effort: <value>)`` when
one was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections import deque
from typing import Any

from aiohttp import web

from tests.servers.openai_batches import BATCH_DEFAULTS, FilesAndBatches
from tests.servers.tokens import END_TOKENS, openai_content_tokens, openai_prompt_tokens

KEEP_REQUESTS = 10_000
"""How many request bodies ``GET /requests`` keeps (the latest), so that load runs stay small."""

DEFAULTS: dict[str, Any] = {
    "latency": 0.0,
    "error_rate": 0.0,
    "error_status": 429,
    "retry_after": "0",  # a header value, or None for no header
    "support_n": True,  # False: answer n > 1 once, as llama.cpp's server does; "refuse": a 422
    "api_key": None,
    "fail_first": 0,  # the first N requests fail, whatever error_rate says
    "seed": 0,
    "replies": [],  # scripted answers: [{"contains": ..., "reply": ...}, ...], first match wins
    "default_reply": None,  # the answer when no rule matches (None: the echo)
    "refuse_formats": [],  # response_format types answered with a 400
    "count_replies": False,  # append " [k]" (this request's number) to every text, so samples differ
    "max_context": None,  # tokens: a longer prompt gets vLLM's 400 (None: no limit)
    "cut_at_max_tokens": False,  # True: a reply longer than max_tokens is cut there, finish_reason "length"
    **BATCH_DEFAULTS,  # files and batches: see openai_batches
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# name -> (low, high, whether low is allowed): OpenAI's ranges, then those of vLLM's extra parameters.
RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 2.0, True),
    "top_p": (0.0, 1.0, True),
    "presence_penalty": (-2.0, 2.0, True),
    "frequency_penalty": (-2.0, 2.0, True),
    "min_p": (0.0, 1.0, True),
    "repetition_penalty": (0.0, float("inf"), False),
}


def cut_at(text: str, max_tokens: int) -> str:
    """``text`` cut to its first ``max_tokens`` tokens (whitespace-led words, as ``usage`` counts them),
    where it and its end-of-turn token do not fit: what a server sends when the answer hits ``max_tokens``."""
    words = re.findall(r"\s*\S+", text)
    return text if len(words) + END_TOKENS <= max_tokens else "".join(words[:max_tokens])


def invalid_parameter(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first sampling parameter of ``body`` out of its documented type or range, as
    ``(param, message)``; ``None`` when all are valid (or absent: ``null`` means the default)."""
    for name, (low, high, closed) in RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value) or value > high or value < low or (value == low and not closed):
            return name, f"{value!r} is not a valid value for '{name}': expected a number in [{low}, {high}]."
    stop = body.get("stop")
    stops = [stop] if stop is None or isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or len(stops) > 4
        or not all(s is None or isinstance(s, str) for s in stops)
    ):
        return "stop", f"{stop!r} is not valid under any of the given schemas - 'stop' (at most 4 strings)"
    checks = {
        "n": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "top_logprobs": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 20,
        "top_k": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1,
    }
    for name, valid in checks.items():
        if body.get(name) is not None and not valid(body[name]):
            return name, f"{body[name]!r} is not a valid value for '{name}'."
    return None


def vllm_refusal(body: dict[str, Any], max_context: int | None) -> dict[str, Any] | None:
    """The ``error`` object of the 400 that vLLM's server (0.32) gives ``body`` for what this server
    checks of vLLM's own: ``continue_final_message`` without ``add_generation_prompt: false`` (whose
    default is true), and, with ``max_context``, a prompt longer than the context or a ``max_tokens``
    over it (a prompt that fits, with ``max_tokens`` that do not, is answered: vLLM cuts the answer)."""
    if body.get("continue_final_message") and body.get("add_generation_prompt", True):
        message = (
            "continue_final_message and add_generation_prompt are not compatible. Use "
            "continue_final_message when you want the model to continue the final message, and "
            "add_generation_prompt when you want to add a header that will prompt it to start a new "
            "assistant message instead."
        )
        return {"message": message, "type": "BadRequestError", "param": None, "code": 400}
    if max_context is None:
        return None
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > max_context:
        message = (
            f"max_tokens={max_tokens} cannot be greater than max_model_len={max_context}. Please request "
            f"fewer output tokens. (parameter=max_tokens, value={max_tokens})"
        )
        return {"message": message, "type": "BadRequestError", "param": "max_tokens", "code": 400}
    if openai_prompt_tokens(body["messages"]) > max_context:
        count = max_context + 1  # vLLM counts no further
        message = (
            f"This model's maximum context length is {max_context} tokens. However, your prompt contains "
            f"at least {count} input tokens, which exceeds this limit even without any output tokens. "
            f"Please reduce the length of the input prompt. (parameter=input_tokens, value={count})"
        )
        return {"message": message, "type": "BadRequestError", "param": "input_tokens", "code": 400}
    return None


STRICT_UNSUPPORTED = (
    "default",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "uniqueItems",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "oneOf",
    "discriminator",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
)
"""Keywords OpenAI's strict structured outputs refuse ("... is not permitted"): those outside its
"Supported schemas" subset (``anyOf`` is its one composition; ``discriminator`` is OpenAPI's, not JSON
schema's)."""

STRICT_FORMATS = ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
"""The string ``format`` s OpenAI's strict structured outputs take; another is "'uri' is not a valid
format"."""

STRICT_TYPED = ("type", "anyOf", "$ref", "enum", "const")
"""Keywords that type a subschema; one with none of them (``{}``, a description alone) is "schema must
have a 'type' key"."""


def schema_problem(response_format: dict[str, Any]) -> str | None:
    """Why OpenAI would refuse this ``response_format`` (its strict-mode rules), or ``None``."""
    if response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        return "Missing required parameter: 'response_format.json_schema.schema'."
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        return f"Invalid 'response_format.json_schema.name': string does not match pattern, got {name!r}."
    if not spec.get("strict"):
        return None
    schema = spec["schema"]
    prefix = f"Invalid schema for response_format '{name}': "
    if schema.get("type") != "object" or "anyOf" in schema:
        return prefix + "schema must be a JSON Schema of 'type: \"object\"', got something else."

    def walk(node: Any, context: tuple[str, ...]) -> str | None:
        if isinstance(node, list):
            return next(filter(None, (walk(item, (*context, str(i))) for i, item in enumerate(node))), None)
        if not isinstance(node, dict):
            return None
        bad = next((key for key in node if key in STRICT_UNSUPPORTED), None)
        if bad is not None:
            return f"In context={context}, '{bad}' is not permitted."
        if not any(key in node for key in STRICT_TYPED):
            return f"In context={context}, schema must have a 'type' key."
        if "format" in node and node["format"] not in STRICT_FORMATS:
            return f"In context={context}, {node['format']!r} is not a valid format."
        if node.get("type") == "object" or "properties" in node:
            if node.get("additionalProperties") is not False:
                return (
                    f"In context={context}, 'additionalProperties' is required to be supplied "
                    "and to be false."
                )
            properties = node.get("properties") or {}
            missing = [key for key in properties if key not in (node.get("required") or [])]
            if missing:
                return (
                    f"In context={context}, 'required' is required to be supplied and to be an array "
                    f"including every key in properties. Missing '{missing[0]}'."
                )
            for key, sub in properties.items():
                problem = walk(sub, (*context, "properties", key))
                if problem:
                    return problem
        for key in ("items", "anyOf", "$defs"):
            if key in node:
                sub = node[key]
                subs = sub.items() if key == "$defs" else [(key, sub)]
                for label, item in subs:
                    problem = walk(item, (*context, key) if key != "$defs" else (*context, key, label))
                    if problem:
                        return problem
        return None

    problem = walk(schema, ())
    return prefix + problem if problem else None


class FaultServer:
    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = {}
        self.batches = FilesAndBatches(self)
        self.reset(**settings)

    def reset(self, **settings: Any) -> None:
        """Clear the counters and apply ``settings``; those not given go back to their defaults."""
        self.settings = {**DEFAULTS, **settings}
        self.random = random.Random(self.settings["seed"])
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.errors = 0
        self.times: list[float] = []
        self.received: deque[dict[str, Any]] = deque(maxlen=KEEP_REQUESTS)
        self.batches.clear()
        self.turns: dict[int, int] = {}  # requests answered so far by each "in_turn" rule (by id)

    def rule_for(self, user: str, model: str | None = None) -> dict[str, Any] | None:
        """The first scripted rule that matches ``user`` (and ``model``, for a rule that names one), else
        one for ``default_reply``, else ``None``."""
        for rule in self.settings["replies"]:
            if rule.get("contains", "") in user and rule.get("model", model) == model:
                return rule
        if self.settings["default_reply"] is not None:
            return {"reply": self.settings["default_reply"]}
        return None

    def unauthorized(self, request: web.Request) -> web.Response | None:
        """A 401 when the server has a key and the request's ``Authorization`` is not ``Bearer <key>``."""
        key = self.settings["api_key"]
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {sent}."
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request_error"}}, status=401
            )
        return None

    async def chat(self, request: web.Request) -> web.Response:
        self.total += 1
        self.times.append(time.time())
        settings = self.settings
        refused = self.unauthorized(request)
        if refused is not None:
            return refused
        if self.total <= settings["fail_first"] or self.random.random() < settings["error_rate"]:
            self.errors += 1
            headers = {} if settings["retry_after"] is None else {"Retry-After": str(settings["retry_after"])}
            error = {"error": {"message": f"injected {settings['error_status']}", "type": "injected"}}
            return web.json_response(error, status=settings["error_status"], headers=headers)
        body = await request.json()
        self.received.append(body)
        invalid = validate_body(body)
        if invalid is None:
            checked = invalid_parameter(body)
            invalid = None if checked is None else (checked[1], checked[0])
        if invalid is not None:
            self.errors += 1
            message, param = invalid
            error = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
            return web.json_response(error, status=400)
        if (body.get("n") or 1) > 1 and settings["support_n"] == "refuse":
            self.errors += 1
            error = {"error": {"message": "n > 1 is not supported", "type": "invalid_request_error"}}
            return web.json_response(error, status=422)
        refused = vllm_refusal(body, settings["max_context"])
        if refused is not None:
            self.errors += 1
            return web.json_response({"error": refused}, status=400)
        user = next((message_text(m) for m in reversed(body["messages"]) if m["role"] == "user"), "")
        rule = self.rule_for(user, body.get("model"))
        if rule is not None and rule.get("status"):
            self.errors += 1
            headers = {} if settings["retry_after"] is None else {"Retry-After": str(settings["retry_after"])}
            headers = rule.get("headers", headers)
            message = rule.get("message", f"scripted {rule['status']}")
            error = {"error": {"message": message, "type": "scripted"}}
            return web.json_response(error, status=rule["status"], headers=headers)
        requested_format = (body.get("response_format") or {}).get("type")
        problem = schema_problem(body.get("response_format") or {})
        if problem is not None:
            self.errors += 1
            error = {
                "error": {
                    "message": problem,
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": None,
                }
            }
            return web.json_response(error, status=400)
        if requested_format in settings["refuse_formats"]:
            self.errors += 1
            message = f"response_format type {requested_format!r} is not supported by this server"
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request_error"}}, status=400
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if settings["latency"]:
                await asyncio.sleep(settings["latency"])
        finally:
            self.in_flight -= 1
        if rule is not None and "raw" in rule:  # a body that is not JSON, labelled as JSON
            return web.Response(text=rule["raw"], content_type="application/json")
        return web.json_response(self.completion(body, user, rule))

    def completion(self, body: dict[str, Any], user: Any, rule: dict[str, Any] | None) -> dict[str, Any]:
        """The 200 answer to the chat request ``body`` (``user``: its last user message's content; ``rule``:
        the scripted rule that matched, if any), ``usage`` counted as :mod:`tests.servers.tokens` says."""
        settings = self.settings
        n = body.get("n") or 1
        if n > 1 and not settings["support_n"]:
            n = 1  # as llama.cpp's server does: ignore n, answer once
        if rule is not None and "body" in rule:
            return rule["body"]
        if rule is not None and "content" in rule:
            texts = [rule["content"]] * n
        elif rule is not None and "in_turn" in rule:
            turn = self.turns[id(rule)] = self.turns.get(id(rule), -1) + 1
            texts = [rule["in_turn"][min(turn, len(rule["in_turn"]) - 1)]] * n
        elif rule is not None:
            reply = rule["reply"]
            texts = [reply[i % len(reply)] if isinstance(reply, list) else reply for i in range(n)]
        elif body.get("response_format", {}).get("type") in ("json_schema", "json_object"):
            texts = [json.dumps({"echo": user, "choice": i}) for i in range(n)]
        else:
            parts_sent = [p for m in body["messages"] for p in parts(m)]
            images = [image_summary(p) for p in parts_sent if p["type"] == "image_url"]
            texts = [f"echo: {user}" + (f" #{i}" if n > 1 else "") + "".join(images) for i in range(n)]
        if settings["count_replies"]:
            texts = [f"{text} [{self.total}]" for text in texts]
        finish = [(rule or {}).get("finish_reason", "stop")] * len(texts)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if settings["cut_at_max_tokens"] and isinstance(limit, int):
            cut = [cut_at(text, limit) for text in texts]
            pairs = zip(cut, texts, finish, strict=True)
            finish = ["length" if short != text else reason for short, text, reason in pairs]
            texts = cut
        # vLLM's: a message continued (continue_final_message) keeps its role, a user's too (Magpie's)
        role = body["messages"][-1]["role"] if body.get("continue_final_message") else "assistant"
        choices = [
            {
                "index": i,
                "message": {"role": role, "content": text, **self.reasoning(body, rule)},
                "logprobs": self.logprobs(body, rule, text),
                "finish_reason": finish[i],
            }
            for i, text in enumerate(texts)
        ]
        prompt = openai_prompt_tokens(body.get("messages") or [])
        ends = [END_TOKENS if reason != "length" else 0 for reason in finish]  # a cut answer has none
        output = sum(openai_content_tokens(text) + end for text, end in zip(texts, ends, strict=True))
        usage = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
        return {
            "id": f"chatcmpl-{self.total}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fault"),
            "choices": choices,
            "usage": usage,
        }

    @staticmethod
    def reasoning(body: dict[str, Any], rule: dict[str, Any] | None) -> dict[str, Any]:
        """The message's reasoning field for a rule that has some, unless the request turned thinking off."""
        if not rule or rule.get("reasoning") is None:
            return {}
        if (body.get("chat_template_kwargs") or {}).get("enable_thinking") is False:
            return {}
        effort = body.get("reasoning_effort")
        text = rule["reasoning"] + (f" (effort: {effort})" if effort else "")
        return {rule.get("reasoning_field", "reasoning_content"): text}

    @staticmethod
    def logprobs(body: dict[str, Any], rule: dict[str, Any] | None, text: str) -> dict[str, Any] | None:
        """OpenAI's ``choices[i].logprobs`` for ``text``, when the request asked for them."""
        if not body.get("logprobs"):
            return None
        top = body.get("top_logprobs") or 0
        content = (rule or {}).get("logprobs")
        if content is None:
            tokens = re.findall(r"\s*\S+|\s+", text)
            content = [
                {"token": t, "logprob": 0.0, "top_logprobs": [{"token": t, "logprob": 0.0}]} for t in tokens
            ]
        return {
            "content": [{**entry, "top_logprobs": entry.get("top_logprobs", [])[:top]} for entry in content]
        }

    async def requests(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.received))

    async def stats(self, request: web.Request) -> web.Response:
        stats: dict[str, Any] = {
            "total": self.total,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "errors": self.errors,
        }
        if request.query.get("times"):
            stats["times"] = self.times
        return web.json_response(stats)

    async def reset_handler(self, request: web.Request) -> web.Response:
        settings = await request.json() if request.can_read_body else {}
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            return web.json_response({"error": f"unknown settings {sorted(unknown)}"}, status=400)
        self.reset(**settings)
        return web.json_response(self.settings)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fault", "object": "model"}]})

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=2**30
        )  # batch input files: up to 200 MB, checked by the handler
        app.router.add_post("/v1/chat/completions", self.chat)
        self.batches.register(app)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/requests", self.requests)
        app.router.add_post("/reset", self.reset_handler)
        return app


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
PART_TYPES = {"system": ("text",), "user": ("text", "image_url"), "assistant": ("text", "refusal")}
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")


def parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in parts(message) if p["type"] == "text")


def validate_body(body: dict[str, Any]) -> tuple[str, str] | None:
    """``(message, param)`` of the 400 that OpenAI's API gives this body, for what this server checks:
    messages and their content parts, ``reasoning_effort``, ``chat_template_kwargs``."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        return f"Invalid value: {effort!r}. Supported values are: {REASONING_EFFORTS}.", "reasoning_effort"
    if "chat_template_kwargs" in body and not isinstance(body["chat_template_kwargs"], dict):
        return "chat_template_kwargs: Input should be a valid dictionary", "chat_template_kwargs"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array.", "messages"
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in PART_TYPES:
            return f"Invalid {where}: expected an object with a role in {list(PART_TYPES)}.", where
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"Invalid type for '{where}.content': expected a string or an array.", f"{where}.content"
        if not content:
            return f"Invalid '{where}.content': empty array. Expected at least 1 part.", f"{where}.content"
        for j, part in enumerate(content):
            problem = part_problem(part, PART_TYPES[message["role"]])
            if problem is not None:
                return problem, f"{where}.content[{j}]"
    return None


def part_problem(part: Any, allowed: tuple[str, ...]) -> str | None:
    """What is wrong with one content part, as OpenAI's 400 says it, or ``None``."""
    if not isinstance(part, dict) or part.get("type") not in allowed:
        kind = part.get("type") if isinstance(part, dict) else part
        return f"Invalid value: {kind!r}. Supported values are: {list(allowed)}."
    if part["type"] in ("text", "refusal"):
        return (
            None
            if isinstance(part.get(part["type"]), str)
            else f"Missing required parameter: '{part['type']}'."
        )
    image = part.get("image_url")
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        return "Missing required parameter: 'image_url.url'."
    if image.get("detail", "auto") not in ("auto", "low", "high"):
        return f"Invalid value: {image['detail']!r}. Supported values are: 'auto', 'low', and 'high'."
    url = image["url"]
    if not url.startswith(("http://", "https://", "data:")):
        return f"Invalid 'image_url.url': {url[:40]!r} is not a URL or a base64 data URL."
    if url.startswith("data:") and decode_image(url) is None:
        return f"You uploaded an unsupported image. Please make sure your image has one of {IMAGE_FORMATS}."
    return None


def decode_image(url: str) -> Any:
    """The PIL image of a base64 ``data:`` URL in a format OpenAI takes, or ``None``."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    header, _, data = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        return None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return None
    return image if image.format in IMAGE_FORMATS else None


def image_summary(part: dict[str, Any]) -> str:
    url = part["image_url"]["url"]
    if not url.startswith("data:"):
        return f" [image url {url}]"
    image = decode_image(url)
    return f" [image {image.width}x{image.height} {image.format}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests that fail")
    parser.add_argument("--error-status", type=int, default=429)
    parser.add_argument("--retry-after", default="0", help="Retry-After header on errors ('none': no header)")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--no-n", action="store_true", help="ignore n and answer one choice")
    args = parser.parse_args()
    server = FaultServer(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        retry_after=None if args.retry_after == "none" else args.retry_after,
        api_key=args.api_key,
        support_n=not args.no_n,
    )
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
