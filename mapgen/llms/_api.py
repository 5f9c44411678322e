"""The sending that every API backend shares: concurrent requests, retries with backoff, rate limits,
``n``, schema fallbacks, fatal errors.

An API backend is two layers. Its *wire format* (``llm.wire``: :mod:`mapgen.llms.openai_wire`,
:mod:`mapgen.llms.anthropic_wire`) says what to send and how to read the answer: a ``path``, ``body(llm,
request, n, schema_style)`` and ``completions(answer, n)``, plain functions of data, tested without a
server. Its config class (a subclass of :class:`APILLM`) says where to send it and with which credentials
(:meth:`APILLM.open_client`). This module is the one sending piece: it posts every request of a batch
concurrently on the process's event loop (:mod:`mapgen.runtime.event_loop`), at most ``max_concurrency`` at a
time, retries what a retry may mend, and turns each answer, or each error that outlasted its retries, into
a :class:`~mapgen.core.request.Completion`. Errors of every transport (aiohttp, the official SDKs,
``huggingface_hub``) become :class:`~mapgen.llms._http.APIError` in one place,
:func:`mapgen.llms._http.to_api_error`. ``docs/new_backend.md`` says how to add a provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import tenacity

from mapgen.core.config import added, knob
from mapgen.core.optional import require_installed
from mapgen.core.prices import priced
from mapgen.core.request import Completion, OnComplete, Request
from mapgen.core.urls import check_no_credentials, mask_url
from mapgen.errors import ENGINE, INTERRUPTED, FatalAPIError, SchemaWarning
from mapgen.llms._http import APIError, to_api_error
from mapgen.llms._window import Window
from mapgen.llms.base import LLM, SendLimits, sample_groups
from mapgen.llms.openai_wire import OPENAI_CHAT
from mapgen.llms.ratelimit import Limiter, RateLimiter, rate_limiter
from mapgen.runtime import event_loop
from mapgen.runtime.progress import counters

logger = logging.getLogger(__name__)

Post = Callable[[dict[str, Any]], Awaitable[object]]
"""Sends one request body and returns the JSON answer (the wire format checks its shape); raises
:class:`~mapgen.llms._http.APIError` or the transport's own exception (:func:`to_api_error` maps it)."""

MAX_BACKOFF = 30.0
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""The values of ``reasoning_effort`` in OpenAI's API reference (each model takes some of them)."""


_FATAL: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "mapgen_fatal", default=None
)
"""The fatal errors (:attr:`APIError.fatal`) met so far by one run
(:func:`mapgen.runtime.event_loop.stopping_errors`): once there is one, its requests still queued are not
sent. Per run (a batch), so a fixed key or model is tried again by the next map."""

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
        output_limiter: Limiter | None = None,
    ) -> None:
        self.open_client = open_client
        self.max_concurrency = max_concurrency
        self.limiter = limiter
        self.output_limiter = output_limiter
        """Output tokens per minute, where the provider limits them apart (Anthropic's OTPM)."""
        self.secrets = tuple(s for s in secrets if s)
        self.n_supported: bool | None = None
        self.schema_style = 0
        self.schema_style_confirmed = False
        self.schema_styles_seen: set[str] = set()
        """The schema styles answers came with so far (each warned of once, where it constrains nothing)."""
        self._clients: dict[Any, Post] = {}
        self._windows: dict[Any, Window] = {}

    def client(self) -> Post:
        return event_loop.loop_local(self._clients, self.open_client)

    def window(self) -> Window:
        """This loop's ``max_concurrency`` slots, shared by every call on it, earliest run first."""
        return event_loop.loop_local(self._windows, lambda: Window(self.max_concurrency))

    def close(self) -> None:
        """Close the HTTP sessions of loops that still run (at exit: no "Unclosed client session")."""
        for loop, post in list(self._clients.items()):
            close = getattr(post, "aclose", None)
            if close is not None and loop.is_running() and not loop.is_closed():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        self._clients.clear()


def check_headers(headers: Any) -> dict[str, str]:
    """``default_headers`` as a dict of strings (a gateway's key header, ``OpenAI-Organization``...), or
    ``TypeError``. Headers may hold credentials: the fields that take them are secrets (not compared,
    fingerprinted or shown), and their values are masked in error messages.

    Example:
        >>> check_headers({"X-Gateway-Key": "k-123"})
        {'X-Gateway-Key': 'k-123'}
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        raise TypeError(f"default_headers must map header names to strings, got {type(headers).__name__}.")
    return dict(headers)


def check_http_options(
    base_url: str | None, transport: str, transports: Sequence[str], extra_body: Any
) -> None:
    """The checks every HTTP backend makes on its ``base_url``, ``transport`` and ``extra_body``.

    (A ``base_url`` with credentials in it, ``https://user:key@host``, was refused before, by
    :attr:`LLM.url_fields <mapgen.llms.base.LLM.url_fields>`: the key goes in the backend's key field, where
    it is kept out of reprs, fingerprints and messages, and sent as the provider wants.)"""
    http = isinstance(base_url, str) and base_url.startswith(("http://", "https://"))
    if base_url is not None and not http:
        # Masked: a URL this check refuses may still hold a secret (http:/user:key@host, //user:key@host).
        raise ValueError(f"base_url must start with http:// or https://, got {mask_url(base_url)!r}.")
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


def resolved_base_url(base_url: str | None, variable: str, default: str, hint: str) -> str:
    """``base_url``, else ``$variable``, else ``default``, without its trailing slash. The variable's URL
    enters the fingerprint (hence provenance records and cards) as ``base_url`` does, so it is checked
    as ``base_url`` is: one with credentials is refused (:func:`~mapgen.core.urls.check_no_credentials`)."""
    if not base_url:
        base_url = os.environ.get(variable)
        check_no_credentials(base_url, variable, hint)
    return (base_url or default).rstrip("/")


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
    require_installed(modules, extra, "this backend")


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
    batch_api: bool = knob(False)
    """Send through the provider's batch API (half the price, answers within 24 hours) instead of one
    request at a time: see :mod:`mapgen.mapping.batch_mode`. A knob: the same request gets the same store key,
    so a batch answer serves a later synchronous run and the other way round."""
    batch_wait: bool = knob(True)
    """With ``batch_api``: wait for the batch jobs, polling; ``False`` raises :class:`mapgen.BatchPending`
    once they are submitted, and the same map run later collects them."""
    batch_poll_interval: float = knob(30.0)
    """Seconds between two polls of a running batch job."""
    reasoning_effort: str | None = added(None)
    """How hard a reasoning model thinks, sent as ``reasoning_effort``: one of :data:`REASONING_EFFORTS`
    (OpenAI's values; vLLM's server takes them for gpt-oss); ``None`` sends none (the model's default)."""

    supports_schema: ClassVar[bool] = True
    supports_images: ClassVar[bool] = True
    """Images go as ``image_url`` content parts; the model behind the server must be a vision model."""
    concurrent_batches: ClassVar[bool] = True
    """Safe to call from several threads at once (``MapFunction.acall`` relies on it)."""
    supports_batch_api: ClassVar[bool] = False
    """Whether :meth:`batch_provider` gives the provider's batch API (``batch_api=True``)."""
    schema_styles: ClassVar[tuple[str, ...]] = ("json_schema", "json_object")
    """``response_format`` shapes to try in turn until the server takes one
    (:func:`~mapgen.llms.openai_wire.response_format`)."""
    url_fields: ClassVar[tuple[str, ...]] = ("base_url",)
    """A backend's server root is checked for credentials (:attr:`LLM.url_fields`)."""
    supports_n: ClassVar[bool] = True
    """Whether the wire format can ask for several answers in one request (``n``); else one request
    per generation."""
    billed_per_token: ClassVar[bool] = True

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
        if self.batch_api and not self.supports_batch_api:
            raise ValueError(f"{type(self).__name__} has no batch API: drop batch_api=True.")
        interval = self.batch_poll_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(f"batch_poll_interval must be a positive number of seconds, got {interval!r}.")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(
                f"reasoning_effort must be one of {REASONING_EFFORTS} or None, got {self.reasoning_effort!r}."
            )

    # What a backend provides.

    @property
    def wire(self) -> Any:
        """The wire format: ``path``, ``body(llm, request, n, schema_style)``, ``completions(answer, n)``,
        ``rate_usage(answer)``, and ``schema_style_sent(body)`` and ``schema_warning(style, schema)`` (how a
        body carried its schema, and why that left answers unconstrained); OpenAI's chat completions unless
        the backend says otherwise."""
        return OPENAI_CHAT

    def open_client(self) -> Post:
        """A function that posts one body, built on the running loop (once per loop and process)."""
        raise NotImplementedError

    def body_model(self) -> str:
        """The ``model`` field of a request body."""
        raise NotImplementedError

    def max_tokens_key(self) -> str:
        """The body field that caps an answer's length."""
        return "max_tokens"

    def sampling_body(self) -> dict[str, Any]:
        """The typed sampling parameters that are set, as body fields (by default, by their own names)."""
        return self.sampling_options()

    def rate_limit_key(self) -> str:
        """What the provider's rate limit applies to (the server and the model)."""
        raise NotImplementedError

    def batch_provider(self) -> Any:
        """The provider's batch API for this config (a :class:`mapgen.llms.provider_batches.BatchProvider`),
        where :attr:`supports_batch_api`."""
        raise NotImplementedError

    def secrets(self) -> Sequence[str | None]:
        """Credentials to mask in error messages."""
        return ()

    def send_limits(self) -> SendLimits:
        return SendLimits(self.max_concurrency, self.rpm, self.tpm)

    def output_tpm_limit(self) -> float | None:
        """Output tokens per minute, for providers that limit them apart from input (else ``None``)."""
        return None

    def rate_tokens(self, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
        """What a request's tokens weigh against ``tpm`` and against :meth:`output_tpm_limit`: by default
        ``tpm`` counts both (OpenAI's limit is on the total)."""
        return prompt_tokens + completion_tokens, 0

    # The shared machinery.

    def load_engine(self, rank: int | None) -> APIEngine:
        limiter = output_limiter = None
        if self.rpm or self.tpm:
            limiter = rate_limiter(self.rate_limit_key(), rpm=self.rpm, tpm=self.tpm)
        output_tpm = self.output_tpm_limit()
        if output_tpm:
            output_limiter = rate_limiter(f"{self.rate_limit_key()} output", tpm=output_tpm)
        return APIEngine(
            self.open_client,
            max_concurrency=self.max_concurrency,
            limiter=limiter,
            secrets=self.secrets(),
            output_limiter=output_limiter,
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
        return event_loop.run(self.acomplete(requests, rank=rank, on_complete=on_complete))

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

        # The run's: a fatal error met by one call of the run stops the others' queued requests too (the
        # first rows of a batch go ahead of the rest, in a call of their own).
        fatal = event_loop.stopping_errors()
        _FATAL.set(fatal)  # the tasks below run in a copy of this context: they share this list
        await self._run_workers(engine, self._groups(engine, requests), deliver)
        if fatal:
            first = fatal[0]
            assert isinstance(first, APIError)  # only _attempt appends to it, an APIError
            raise fatal_error(first)
        return [c if c is not None else Completion.failed("no answer") for c in results]

    async def _run_workers(
        self,
        engine: APIEngine,
        groups: list[list[tuple[int, Request]]],
        deliver: Callable[[int, Completion], None],
    ) -> None:
        """Answer ``groups`` in order with ``max_concurrency`` workers that each take the next group.

        The same window as one task per group behind the window's slots, for less CPU: a batch of 1,000
        requests makes 64 tasks instead of 1,000, and none of them queues for a slot (each queued acquire
        costs a future and a wake-up). The window (:mod:`mapgen.llms._window`) still bounds what is in
        flight, across the calls that share this loop, earliest run first. A request that goes to wait for
        a retry frees its slot and calls :data:`_SPARE`, which starts one more worker, so the window stays
        full meanwhile."""
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
                    if worker.done() and (error := worker.exception()) is not None:
                        raise error  # a bug: stop the rest at once
                running = [worker for worker in workers if not worker.done()]
        except BaseException:
            for worker in workers:
                worker.cancel()
            raise

    def _groups(self, engine: APIEngine, requests: Sequence[Request]) -> list[list[tuple[int, Request]]]:
        return self.call_groups(requests, n_supported=engine.n_supported)

    def call_groups(
        self, requests: Sequence[Request], *, n_supported: bool | None = None
    ) -> list[list[tuple[int, Request]]]:
        """The calls that answer ``requests``, each as its ``(position, request)`` list: requests that one
        ``n=`` call can answer (same prompt and schema, consecutive indices) together, only when the API
        has ``n`` (:attr:`supports_n`), no seed is set (with one, generation ``i`` must use ``seed + i``),
        ``use_n`` is not ``False`` and the server has not refused ``n`` (``n_supported``); else one each.
        The dry run (:func:`mapgen.estimate`) counts calls by this rule too."""
        if not self.supports_n or self.seed is not None or self.use_n is False or n_supported is False:
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
                # The server refuses n > 1 (TGI does), or this prompt (vLLM answers one too long for its
                # context with a 400): ask one by one, and only a single request that gets past the
                # error proves it was n.
                kinds: list[str | None] = []

                def noted(position: int, completion: Completion) -> None:
                    kinds.append(completion.error_kind)
                    deliver(position, completion)

                await event_loop.gather([self._answer_group(engine, [item], noted) for item in group])
                if any(kind != error.kind for kind in kinds):
                    engine.n_supported = False
                return
            for i, (position, _) in enumerate(group):
                failed = Completion.failed(str(error), error.kind)
                failed.retries = error.retries if i == 0 else 0  # the group's one request's, counted once
                deliver(position, failed)
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
            await event_loop.gather([self._answer_group(engine, [item], deliver) for item in rest])

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
                        failed, first = first, None
                        raise failed
                    completions = await self._attempt(engine, request, n)
                    if completions:  # one request's retries, counted once: on its first answer of n
                        completions[0].retries = attempt.retry_state.attempt_number - 1
                    return completions
        except APIError as error:
            attempts = retrying.statistics.get("attempt_number", 1)
            ended = error.with_context(attempts, self.max_retry_wait)
            if attempts > 1 or error.retryable:
                logger.warning(
                    "%s(%r): request failed, not retried again: %s",
                    type(self).__name__,
                    self.model_name,
                    ended,
                )
            raise ended from None
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
            before_sleep=self._before_retry,
            sleep=event_loop.pause,
            reraise=True,
        )

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        """Count a retry and log it with its reason and wait (the server's ``Retry-After`` when it sent one):
        ``INFO`` on the ``mapgen.llms._api`` logger. The reason is the error's message, scrubbed of secrets
        where it was made (:func:`mapgen.errors.scrub`); no URL or header is logged."""
        counters.add(retries=1)
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        retry_after = getattr(error, "retry_after", None)
        logger.info(
            "%s(%r): retry %d of %d in %.2f s (%s), after %s",
            type(self).__name__,
            self.model_name,
            state.attempt_number,
            self.max_retries,
            wait,
            "the server's Retry-After" if retry_after is not None else "backoff",
            error,
        )

    async def _attempt(self, engine: APIEngine, request: Request, n: int) -> list[Completion]:
        """Post once (again with the next ``response_format`` shape if the server refuses this one)
        and validate the answer."""
        style = engine.schema_style
        while True:
            shape = self.schema_styles[style] if request.schema and style < len(self.schema_styles) else None
            body = self.wire.body(self, request, n, shape)
            try:
                answer = await self._post(engine, body, request, n)
                completions = self.wire.completions(answer, n)
                completions = priced(self, completions)
            except APIError as error:
                if request.schema is not None and _about_schema(error):
                    retry_style = self._schema_fallback(engine, style)
                    if retry_style is not None:
                        logger.info(
                            "%s(%r): the server refused response_format %s (%s); trying %s",
                            type(self).__name__,
                            self.model_name,
                            _style_name(self.schema_styles, style),
                            error,
                            _style_name(self.schema_styles, retry_style),
                        )
                        style = retry_style
                        continue
                fatal = _FATAL.get()
                if error.fatal and fatal is not None and not fatal:
                    fatal.append(error)  # the first one stops the call; those raised after it repeat it
                raise
            if request.schema is not None:
                if not engine.schema_style_confirmed:
                    # Only a style that worked becomes the process's choice for this server.
                    engine.schema_style, engine.schema_style_confirmed = style, True
                self._note_schema_style(engine, body, request.schema, completions)
            return completions

    def _note_schema_style(
        self, engine: APIEngine, body: dict[str, Any], schema: dict[str, Any], completions: list[Completion]
    ) -> None:
        """Tell each completion how its schema went (:attr:`Completion.schema_style`), and warn, once per
        process and config, when that left the answers unconstrained (:class:`~mapgen.errors.SchemaWarning`:
        no ``response_format`` at all, or only a guide)."""
        style = self.wire.schema_style_sent(body)
        for completion in completions:
            completion.schema_style = style
        if style in engine.schema_styles_seen:
            return
        engine.schema_styles_seen.add(style)
        reason = self.wire.schema_warning(style, schema)
        if reason is not None:
            warnings.warn(
                f"{type(self).__name__}({self.model_name!r}): {reason}. Validation still checks every answer "
                f"(one that fails is asked again), and each answer's metadata says schema_style={style!r}. "
                "Said once per process and config.",
                SchemaWarning,
                stacklevel=2,
            )

    def _schema_fallback(self, engine: APIEngine, style: int) -> int | None:
        """The ``response_format`` shape to try after the server refused ``style``, or ``None``. Past the
        last shape comes none at all: the task's tolerant parser reads the answer."""
        if engine.schema_style_confirmed:
            return engine.schema_style if engine.schema_style != style else None
        return style + 1 if style < len(self.schema_styles) else None

    async def _post(self, engine: APIEngine, body: dict[str, Any], request: Request, n: int) -> Any:
        limited = bool(engine.limiter and engine.limiter.tpm) or engine.output_limiter is not None
        estimate = self.rate_tokens(*self._token_estimate(request, n)) if limited else (0, 0)
        async with engine.window().slot(event_loop.run_order()):
            if engine.limiter is not None:
                await engine.limiter.acquire(estimate[0])
            if engine.output_limiter is not None:
                await engine.output_limiter.acquire(estimate[1])
            # Checked once a slot is ours, the moment before sending: requests queued behind the
            # window are dropped when another one's error proved fatal or the run was interrupted.
            fatal = _FATAL.get()
            if fatal:
                raise fatal[0]
            if event_loop.interrupted():
                raise APIError("interrupted before it was sent", retryable=False, kind=INTERRUPTED)
            post = engine.client()  # a client that cannot be built (no key) is misconfiguration: it raises
            try:
                answer = await post(body)
            except APIError:
                raise
            except ImportError as error:  # a client library missing: every request would fail alike
                raise APIError(f"{error}", retryable=False, kind=ENGINE, fatal=True) from None
            except Exception as error:  # a transport's own error type: the one mapping to mapgen's errors
                raise to_api_error(error, engine.secrets, self.timeout) from None
        if limited:
            self._correct_limits(engine, answer, estimate)
        return answer

    def _correct_limits(self, engine: APIEngine, answer: Any, estimate: tuple[int, int]) -> None:
        """Give the rate limiters the difference between the tokens reserved and those the answer used."""
        prompt, completion = self.wire.rate_usage(answer)
        if prompt is None or completion is None:
            return
        used = self.rate_tokens(prompt, completion)
        if engine.limiter is not None and engine.limiter.tpm:
            engine.limiter.correct(used[0] - estimate[0])
        if engine.output_limiter is not None:
            engine.output_limiter.correct(used[1] - estimate[1])

    def _token_estimate(self, request: Request, n: int) -> tuple[int, int]:
        """Prompt and completion tokens to reserve before sending: characters / 4 of the prompt, and
        ``max_new_tokens`` per answer (the providers' own rate limiters reserve that much too)."""
        prompt = sum(len(m.content) for m in request.prompt.turns)
        return prompt // 4 + 8, self.max_new_tokens * n


class _RetryWait(tenacity.wait.wait_base):
    """The server's ``Retry-After`` when it sent one, else exponential backoff with full jitter."""

    def __init__(self, cap: float) -> None:
        # A Retry-After over the cap is never waited for: _worth_retrying refuses it first.
        self.backoff = tenacity.wait_random_exponential(multiplier=0.5, max=min(MAX_BACKOFF, cap))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return retry_after if retry_after is not None else self.backoff(retry_state)


def _style_name(styles: Sequence[str], style: int) -> str:
    """A ``response_format`` shape as a log line names it (``json_schema``...), or ``none`` past the last
    one (no ``response_format``: the task's tolerant parser reads the answer)."""
    return styles[style] if style < len(styles) else "none"


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
