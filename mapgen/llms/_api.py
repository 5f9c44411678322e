"""What the API backends share: concurrent requests, retries with backoff, rate limits, ``n``, schemas.

A backend subclasses :class:`APILLM` and says how to reach its server (:meth:`APILLM.open_client`) and
what to send (:meth:`APILLM.chat_body`); this module sends every request of a batch concurrently on the
process's event loop (:mod:`mapgen.llms._async`), at most ``max_concurrency`` at a time, and turns each
answer, or each error that outlasted its retries, into a :class:`~mapgen.llms.base.Completion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import tenacity

from mapgen.config import added, knob
from mapgen.costs import priced
from mapgen.errors import EMPTY_ANSWER, ENGINE, INTERRUPTED, REFUSED, FatalAPIError
from mapgen.llms import _async
from mapgen.llms._http import APIError, scrub
from mapgen.llms.base import LLM, Completion, OnComplete, Request, sample_groups
from mapgen.llms.openai_wire import message_reasoning, wire_messages
from mapgen.progress import counters
from mapgen.ratelimit import Limiter, RateLimiter, rate_limiter
from mapgen.schema import NotStrict, strict_schema

Post = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one request body and returns the JSON answer (OpenAI's chat completion shape), or raises
:class:`~mapgen.llms._http.APIError`."""

MAX_BACKOFF = 30.0
MAX_TOP_LOGPROBS = 20
"""OpenAI's cap on ``top_logprobs``."""
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""The values of ``reasoning_effort`` in OpenAI's API reference (each model takes some of them)."""


_FATAL: contextvars.ContextVar[list[APIError] | None] = contextvars.ContextVar("mapgen_fatal", default=None)
"""The fatal errors (:attr:`APIError.fatal`) met so far by one ``complete`` call: once there is one, its
requests still queued are not sent. Per call, so a fixed key or model is tried again by the next map."""

_SPARE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "mapgen_spare", default=None
)
"""Starts one more worker of the current ``complete`` call (see :meth:`APILLM._run_workers`)."""


class APIEngine:
    """A backend's live state in one process: a client per event loop, the concurrency limit, the rate
    limiter, and what was learnt about the server (whether it honours ``n``, which schema style it takes)."""

    def __init__(
        self,
        open_client: Callable[[], Post],
        *,
        max_concurrency: int,
        limiter: Limiter | None,
        secrets: Sequence[str | None],
    ) -> None:
        self.open_client = open_client
        self.max_concurrency = max_concurrency
        self.limiter = limiter
        self.secrets = tuple(s for s in secrets if s)
        self.n_supported: bool | None = None
        self.schema_style = 0
        self.schema_style_confirmed = False
        self._clients: dict[Any, Post] = {}
        self._semaphores: dict[Any, asyncio.Semaphore] = {}

    def client(self) -> Post:
        return _async.loop_local(self._clients, self.open_client)

    def semaphore(self) -> asyncio.Semaphore:
        return _async.loop_local(self._semaphores, lambda: asyncio.Semaphore(self.max_concurrency))

    def close(self) -> None:
        """Close the HTTP sessions of loops that still run (at exit: no "Unclosed client session")."""
        for loop, post in list(self._clients.items()):
            close = getattr(post, "aclose", None)
            if close is not None and loop.is_running() and not loop.is_closed():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        self._clients.clear()


def check_http_options(
    base_url: str | None, transport: str, transports: Sequence[str], extra_body: Any
) -> None:
    """The checks every HTTP backend makes on its ``base_url``, ``transport`` and ``extra_body``."""
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}.")
    if transport not in transports:
        expected = ", ".join(repr(t) for t in transports)
        raise ValueError(f"transport must be one of {expected}, got {transport!r}.")
    if not isinstance(extra_body, Mapping):
        raise TypeError(f"extra_body must be a mapping, got {type(extra_body).__name__}.")


OWNED_BODY_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "n",
        "response_format", "logprobs", "top_logprobs", "stream", "continue_final_message",
        "add_generation_prompt", "reasoning_effort", "chat_template_kwargs",
    }
)  # fmt: skip
"""Body fields mapgen sets from the config and each request: ``extra_body`` must not override them (the
dataset would record one value while another was sent, and a schema's constraint would be lost)."""


def check_extra_body(llm: LLM, extra_body: Mapping[str, Any]) -> None:
    """Raise when ``extra_body`` sets a body field that mapgen sets itself (:data:`OWNED_BODY_FIELDS`), or
    a typed sampling parameter that the config sets too: either would be silently overridden."""
    owned = sorted(OWNED_BODY_FIELDS & set(extra_body))
    if owned:
        raise ValueError(
            f"extra_body sets {owned}, which mapgen sets from the config and each request: use the config's "
            "fields (model, temperature, top_p, max_new_tokens, seed, reasoning_effort...) instead; a task's "
            "schema sets response_format. extra_body is for a server's own options."
        )
    both = sorted(name for name in llm.sampling_options() if name in extra_body)
    if both:
        raise ValueError(f"{both} set both as field(s) and in extra_body: keep the field(s) only.")


def require_modules(modules: Sequence[str], extra: str) -> None:
    """Raise ``ImportError`` naming the extra to install when a client library is missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"this backend needs {', '.join(missing)}, which is not installed: pip install 'mapgen[{extra}]'."
        )


@dataclass(frozen=True, kw_only=True)
class APILLM(LLM):
    """Base of the backends that call an HTTP API; see :class:`~mapgen.OpenAILLM` for the knobs."""

    max_concurrency: int = knob(64)
    timeout: float = knob(120.0)
    max_retries: int = knob(8)
    max_retry_wait: float = knob(60.0)
    """The longest wait before a retry, in seconds: a ``Retry-After`` beyond it fails the request with
    its error instead of sleeping (the official clients cap it likewise)."""
    rpm: float | None = knob(None)
    tpm: float | None = knob(None)
    use_n: bool | None = knob(None)
    reasoning_effort: str | None = added(None)
    """How hard a reasoning model thinks, sent as ``reasoning_effort``: one of :data:`REASONING_EFFORTS`
    (OpenAI's values; vLLM's server takes them for gpt-oss); ``None`` sends none (the model's default)."""

    supports_schema: ClassVar[bool] = True
    supports_images: ClassVar[bool] = True
    """Images go as ``image_url`` content parts; the model behind the server must be a vision model."""
    concurrent_batches: ClassVar[bool] = True
    """Safe to call from several threads at once (``MapFunction.acall`` relies on it)."""
    schema_styles: ClassVar[tuple[str, ...]] = ("json_schema", "json_object")
    """``response_format`` shapes to try in turn until the server takes one (:func:`response_format`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("max_concurrency", 1), ("max_retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        for name in ("timeout", "max_retry_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}.")
        RateLimiter("check", rpm=self.rpm, tpm=self.tpm)  # validates the limits
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(
                f"reasoning_effort must be one of {REASONING_EFFORTS} or None, got {self.reasoning_effort!r}."
            )

    # What a backend provides.

    def open_client(self) -> Post:
        """A function that posts one body, built on the running loop (once per loop and process)."""
        raise NotImplementedError

    def body_model(self) -> str:
        """The ``model`` field of a request body."""
        raise NotImplementedError

    def max_tokens_key(self) -> str:
        """The body field that caps an answer's length."""
        return "max_tokens"

    def chat_body(self, request: Request, n: int, schema_style: str | None) -> dict[str, Any]:
        """The OpenAI-shaped JSON body for ``request`` answered ``n`` times, the backend's
        ``extra_body`` last."""
        body: dict[str, Any] = {
            "model": self.body_model(),
            "messages": wire_messages(request.prompt),
            "temperature": self.temperature,
            "top_p": self.top_p,
            self.max_tokens_key(): self.max_new_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed + request.seed_index
        if n > 1:
            body["n"] = n
        if request.schema is not None and schema_style is not None:
            body["response_format"] = response_format(request.schema, schema_style)
        if request.prompt.continue_final_message:  # vLLM's and SGLang's names for it
            body.update(continue_final_message=True, add_generation_prompt=False)
        if request.top_logprobs > 0 and self.supports_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(request.top_logprobs, MAX_TOP_LOGPROBS)
        if self.reasoning_effort is not None:
            body["reasoning_effort"] = self.reasoning_effort
        if getattr(self, "chat_template_kwargs", None):
            body["chat_template_kwargs"] = dict(self.chat_template_kwargs)  # type: ignore[attr-defined]
        body.update(self.sampling_body())
        body.update(getattr(self, "extra_body", None) or {})
        return body

    def sampling_body(self) -> dict[str, Any]:
        """The typed sampling parameters that are set, as body fields (by default, by their own names)."""
        return self.sampling_options()

    def rate_limit_key(self) -> str:
        """What the provider's rate limit applies to (the server and the model)."""
        raise NotImplementedError

    def secrets(self) -> Sequence[str | None]:
        """Credentials to mask in error messages."""
        return ()

    # The shared machinery.

    def load_engine(self, rank: int | None) -> APIEngine:
        limiter = None
        if self.rpm or self.tpm:
            limiter = rate_limiter(self.rate_limit_key(), rpm=self.rpm, tpm=self.tpm)
        return APIEngine(
            self.open_client, max_concurrency=self.max_concurrency, limiter=limiter, secrets=self.secrets()
        )

    def complete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        """Answer every request, all at once up to ``max_concurrency``, on this process's event loop.

        ``on_complete`` is called on the loop's thread as each answer arrives."""
        if not requests:
            return []
        return _async.run(self.acomplete(requests, rank=rank, on_complete=on_complete))

    async def acomplete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        """:meth:`complete` as a coroutine, for callers that run their own loop (``datasets``' async map).

        Every call on the same loop shares one ``max_concurrency`` window, so concurrent batches keep
        the window full across batch boundaries."""
        engine = self.engine(rank)
        results: list[Completion | None] = [None] * len(requests)

        def deliver(position: int, completion: Completion) -> None:
            results[position] = completion
            if on_complete is not None:
                on_complete(position, completion)

        fatal: list[APIError] = []
        _FATAL.set(fatal)  # the tasks below run in a copy of this context: they share this list
        await self._run_workers(engine, self._groups(engine, requests), deliver)
        if fatal:
            raise fatal_error(fatal[0])
        return [c if c is not None else Completion.failed("no answer") for c in results]

    async def _run_workers(
        self,
        engine: APIEngine,
        groups: list[list[tuple[int, Request]]],
        deliver: Callable[[int, Completion], None],
    ) -> None:
        """Answer ``groups`` in order with ``max_concurrency`` workers that each take the next group.

        The same window as one task per group behind the semaphore, for less CPU: a batch of 1,000
        requests makes 64 tasks instead of 1,000, and none of them queues on the semaphore (each queued
        acquire costs a future and a wake-up). The semaphore still bounds what is in flight, across the
        calls that share this loop. A request that goes to wait for a retry frees its slot and calls
        :data:`_SPARE`, which starts one more worker, so the window stays full meanwhile."""
        pending = iter(groups)
        workers: list[asyncio.Future[None]] = []

        async def work() -> None:
            for group in pending:  # one iterator shared by every worker: each group is taken once
                await self._answer_group(engine, group, deliver)

        def spare() -> None:
            workers.append(asyncio.ensure_future(work()))

        _SPARE.set(spare)  # the workers run in copies of this context
        for _ in range(min(len(groups), self.max_concurrency)):
            spare()
        try:
            running = workers
            while running:  # again for the spares added meanwhile
                await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
                for worker in running:
                    if worker.done() and worker.exception() is not None:
                        raise worker.exception()  # type: ignore[misc]  # a bug: stop the rest at once
                running = [worker for worker in workers if not worker.done()]
        except BaseException:
            for worker in workers:
                worker.cancel()
            raise

    def _groups(self, engine: APIEngine, requests: Sequence[Request]) -> list[list[tuple[int, Request]]]:
        """Requests that one ``n=`` call can answer: same prompt and schema, consecutive indices. Only when
        no seed is set (with one, generation ``i`` must use ``seed + i``) and the server honours ``n``."""
        if self.seed is not None or self.use_n is False or engine.n_supported is False:
            return [[(i, r)] for i, r in enumerate(requests)]
        return sample_groups(requests)

    async def _answer_group(
        self,
        engine: APIEngine,
        group: list[tuple[int, Request]],
        deliver: Callable[[int, Completion], None],
    ) -> None:
        request = group[0][1]
        try:
            completions = await self._send(engine, request, len(group))
        except APIError as error:
            if len(group) > 1 and error.status in (400, 422) and engine.n_supported is not True:
                engine.n_supported = False  # the server refuses n > 1 (TGI does): ask one by one
                await _async.gather([self._answer_group(engine, [item], deliver) for item in group])
                return
            for position, _ in group:
                deliver(position, Completion.failed(str(error), error.kind))
            return
        for (position, _), completion in zip(group, completions, strict=False):
            deliver(position, completion)
        if len(group) > 1:
            if len(completions) < len(group):
                engine.n_supported = False  # the server ignored n (llama.cpp's does): ask one by one
            elif engine.n_supported is None:
                engine.n_supported = True
        rest = group[len(completions) :]
        if rest:
            await _async.gather([self._answer_group(engine, [item], deliver) for item in rest])

    async def _send(self, engine: APIEngine, request: Request, n: int) -> list[Completion]:
        """One request's completions, retried by :meth:`retry_policy`; raises the last
        :class:`APIError` once retries are spent (or at once for one that no retry can mend)."""
        try:
            # Most requests succeed at once: they skip the retry machinery, which costs about 0.1 ms.
            return await self._attempt(engine, request, n)
        except APIError as error:
            first: APIError | None = error
            spare = _SPARE.get()
            if spare is not None and self.max_retries and _worth_retrying(error, self.max_retry_wait):
                spare()  # this request waits to retry: another worker takes its place meanwhile
        retrying = self.retry_policy()
        try:
            async for attempt in retrying:
                with attempt:
                    if first is not None:  # the policy decides on the first attempt's error too
                        error, first = first, None
                        raise error
                    return await self._attempt(engine, request, n)
        except APIError as error:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise error.with_context(attempts, self.max_retry_wait) from None
        raise AssertionError("unreachable: the retry policy either returns or raises")

    def retry_policy(self) -> tenacity.AsyncRetrying:
        """Up to ``max_retries`` retries of errors that a retry may mend (429, 5xx, timeouts, lost
        connections, malformed 200s), after the server's ``Retry-After`` (``0`` included) when it sent
        one and it is within ``max_retry_wait``, else exponential backoff with jitter. The concurrency
        slot is free while waiting, and an interrupt (Ctrl-C) ends the wait."""
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=_RetryWait(self.max_retry_wait),
            retry=tenacity.retry_if_exception(lambda e: _worth_retrying(e, self.max_retry_wait)),
            before_sleep=lambda _: counters.add(retries=1),
            sleep=_async.pause,
            reraise=True,
        )

    async def _attempt(self, engine: APIEngine, request: Request, n: int) -> list[Completion]:
        """Post once (again with the next ``response_format`` shape if the server refuses this one)
        and validate the answer."""
        style = engine.schema_style
        while True:
            shape = self.schema_styles[style] if request.schema and style < len(self.schema_styles) else None
            body = self.chat_body(request, n, shape)
            try:
                answer = await self._post(engine, body, request, n)
                completions = completions_from(answer, n)
                completions = priced(self, completions, completion_tokens=_output_tokens(answer))
            except APIError as error:
                if request.schema is not None and _about_schema(error):
                    retry_style = self._schema_fallback(engine, style)
                    if retry_style is not None:
                        style = retry_style
                        continue
                fatal = _FATAL.get()
                if error.fatal and fatal is not None and not fatal:
                    fatal.append(error)  # the first one stops the call; those raised after it repeat it
                raise
            if request.schema is not None and not engine.schema_style_confirmed:
                # Only a style that worked becomes the process's choice for this server.
                engine.schema_style, engine.schema_style_confirmed = style, True
            return completions

    def _schema_fallback(self, engine: APIEngine, style: int) -> int | None:
        """The ``response_format`` shape to try after the server refused ``style``, or ``None``. Past the
        last shape comes none at all: the task's tolerant parser reads the answer."""
        if engine.schema_style_confirmed:
            return engine.schema_style if engine.schema_style != style else None
        return style + 1 if style < len(self.schema_styles) else None

    async def _post(self, engine: APIEngine, body: dict[str, Any], request: Request, n: int) -> Any:
        estimate = self._token_estimate(request, n) if engine.limiter and engine.limiter.tpm else 0
        async with engine.semaphore():
            if engine.limiter is not None:
                await engine.limiter.acquire(estimate)
            # Checked once a slot is ours, the moment before sending: requests queued behind the
            # window are dropped when another one's error proved fatal or the run was interrupted.
            fatal = _FATAL.get()
            if fatal:
                raise fatal[0]
            if _async.interrupted():
                raise APIError("interrupted before it was sent", retryable=False, kind=INTERRUPTED)
            post = engine.client()  # a client that cannot be built (no key) is misconfiguration: it raises
            try:
                answer = await post(body)
            except APIError:
                raise
            except ImportError as error:  # a client library missing: every request would fail alike
                raise APIError(f"{error}", retryable=False, kind=ENGINE, fatal=True) from None
            except Exception as error:  # a client library's own error type
                message = scrub(f"{type(error).__name__}: {error}", engine.secrets)
                raise APIError(message, retryable=False, kind=ENGINE) from None
        if estimate and isinstance(answer, dict):
            used = (answer.get("usage") or {}).get("total_tokens")
            if isinstance(used, int):
                engine.limiter.correct(used - estimate)  # type: ignore[union-attr]
        return answer

    def _token_estimate(self, request: Request, n: int) -> int:
        prompt = sum(len(m.content) for m in request.prompt.turns)
        return prompt // 4 + 8 + self.max_new_tokens * n


def response_format(schema: dict[str, Any], style: str) -> dict[str, Any]:
    """The ``response_format`` that asks a server for JSON following ``schema``.

    ``json_schema`` is OpenAI's structured outputs with ``strict: true``, the schema in its strict form
    (:func:`mapgen.schema.strict_schema`; also vLLM, TGI 3, newer llama.cpp);
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
        except NotStrict:  # a dict field: constrained to {} in strict mode; the schema as a guide instead
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
    :attr:`~mapgen.llms.base.Completion.reasoning`, kept also when no answer came after it.

    Example:
        >>> answer = {"choices": [{"message": {"content": [{"type": "text", "text": "Paris"}]}}]}
        >>> completions_from(answer, 1)[0].text
        'Paris'
        >>> completions_from({"choices": []}, 1)
        Traceback (most recent call last):
        ...
        mapgen.llms._http.APIError: HTTP 200 without choices
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
    completions = []
    for choice in choices[:n]:
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
                prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
                # usage counts all choices together: per choice only when there is one
                completion_tokens=_int_or_none(usage.get("completion_tokens")) if len(choices) == 1 else None,
                tokens=tokens,
                top_logprobs=top_logprobs,
                reasoning=reasoning,
                cached_tokens=_cached_tokens(usage),
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


def _output_tokens(answer: Any) -> int | None:
    """``usage.completion_tokens`` of an OpenAI-shaped answer: every choice's tokens together."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    return _int_or_none(usage.get("completion_tokens")) if isinstance(usage, dict) else None


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens``: the prompt tokens OpenAI read from its prompt cache."""
    details = usage.get("prompt_tokens_details")
    return _int_or_none(details.get("cached_tokens")) if isinstance(details, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _RetryWait(tenacity.wait.wait_base):
    """The server's ``Retry-After`` when it sent one, else exponential backoff with full jitter."""

    def __init__(self, cap: float) -> None:
        # A Retry-After over the cap is never waited for: _worth_retrying refuses it first.
        self.backoff = tenacity.wait_random_exponential(multiplier=0.5, max=min(MAX_BACKOFF, cap))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return retry_after if retry_after is not None else self.backoff(retry_state)


def _worth_retrying(error: BaseException, cap: float) -> bool:
    if not isinstance(error, APIError) or not error.retryable:
        return False
    return error.retry_after is None or error.retry_after <= cap


_SCHEMA_WORDS = re.compile(r"response_format|json_schema|json_object|schema|grammar|guided", re.IGNORECASE)


def _about_schema(error: APIError) -> bool:
    """Whether the server refused the ``response_format`` shape (so another may work), as opposed to
    refusing the request for another reason (a prompt too long, a bad parameter)."""
    # llama-cpp-python's server answers a response_format it does not know with a 500.
    return error.status in (400, 422, 500) and bool(_SCHEMA_WORDS.search(str(error)))


def fatal_error(error: APIError) -> FatalAPIError:
    """The exception that stops a map on an error every request would get, with what to check."""
    hints = {
        401: "check the API key (api_key=... or the provider's environment variable)",
        403: "the key has no access to this model or endpoint",
        404: "check the model name and base_url",
    }
    hint = hints.get(error.status or 0, "install the missing package")
    return FatalAPIError(f"{error} ({hint}); stopped before sending the remaining requests.")


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
