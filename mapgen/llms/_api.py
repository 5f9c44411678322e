"""What the API backends share: concurrent requests, retries with backoff, rate limits, ``n``, schemas.

A backend subclasses :class:`APILLM` and says how to reach its server (:meth:`APILLM.open_client`) and
what to send (:meth:`APILLM.chat_body`); this module sends every request of a batch concurrently on the
process's event loop (:mod:`mapgen.llms._async`), at most ``max_concurrency`` at a time, and turns each
answer, or each error that outlasted its retries, into a :class:`~mapgen.llms.base.Completion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.config import knob
from mapgen.llms import _async
from mapgen.llms._http import APIError, scrub
from mapgen.llms.base import LLM, Completion, OnComplete, Request, sample_groups
from mapgen.progress import counters
from mapgen.ratelimit import RateLimiter

Post = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one request body and returns the JSON answer (OpenAI's chat completion shape), or raises
:class:`~mapgen.llms._http.APIError`."""

MAX_BACKOFF = 30.0
MAX_TOP_LOGPROBS = 20
"""OpenAI's cap on ``top_logprobs``."""


class APIEngine:
    """A backend's live state in one process: a client per event loop, the concurrency limit, the rate
    limiter, and what was learnt about the server (whether it honours ``n``, which schema style it takes)."""

    def __init__(
        self,
        open_client: Callable[[], Post],
        *,
        max_concurrency: int,
        limiter: RateLimiter | None,
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


@dataclass(frozen=True, kw_only=True)
class APILLM(LLM):
    """Base of the backends that call an HTTP API; see :class:`~mapgen.OpenAILLM` for the knobs."""

    max_concurrency: int = knob(64)
    timeout: float = knob(120.0)
    max_retries: int = knob(8)
    rpm: float | None = knob(None)
    tpm: float | None = knob(None)
    use_n: bool | None = knob(None)

    supports_schema: ClassVar[bool] = True
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
        if not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}.")
        RateLimiter("check", rpm=self.rpm, tpm=self.tpm)  # validates the limits

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
            "messages": request.prompt.messages(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            self.max_tokens_key(): self.max_new_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed + request.index
        if n > 1:
            body["n"] = n
        if request.schema is not None and schema_style is not None:
            body["response_format"] = response_format(request.schema, schema_style)
        if request.top_logprobs > 0 and self.supports_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(request.top_logprobs, MAX_TOP_LOGPROBS)
        body.update(getattr(self, "extra_body", None) or {})
        return body

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
            limiter = RateLimiter(self.rate_limit_key(), rpm=self.rpm, tpm=self.tpm)
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

        jobs = [self._answer_group(engine, group, deliver) for group in self._groups(engine, requests)]
        await _async.gather(jobs)
        return [c if c is not None else Completion.failed("no answer") for c in results]

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
            answer = await self._send(engine, request, len(group))
        except APIError as error:
            if len(group) > 1 and error.status in (400, 422) and engine.n_supported is not True:
                engine.n_supported = False  # the server refuses n > 1 (TGI does): ask one by one
                await _async.gather([self._answer_group(engine, [item], deliver) for item in group])
                return
            for position, _ in group:
                deliver(position, Completion.failed(str(error)))
            return
        completions = completions_from(answer, len(group))
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

    async def _send(self, engine: APIEngine, request: Request, n: int) -> dict[str, Any]:
        """One request with retries: backoff with jitter on 429, 5xx, timeouts and connection errors,
        honouring ``Retry-After`` (``0`` included). The concurrency slot is released while waiting."""
        post = engine.client()
        semaphore = engine.semaphore()
        estimate = self._token_estimate(request, n) if engine.limiter and engine.limiter.tpm else 0
        attempt = 0
        while True:
            style = engine.schema_style
            body = self.chat_body(request, n, self.schema_styles[style] if request.schema else None)
            async with semaphore:
                if engine.limiter is not None:
                    await engine.limiter.acquire(estimate)
                try:
                    answer = await post(body)
                except APIError as failure:
                    error = failure
                except Exception as failure:  # a client library's own error type
                    error = APIError(
                        scrub(f"{type(failure).__name__}: {failure}", engine.secrets), retryable=False
                    )
                else:
                    if request.schema is not None:
                        engine.schema_style_confirmed = True
                    if engine.limiter is not None and estimate:
                        used = (answer.get("usage") or {}).get("total_tokens")
                        if isinstance(used, int):
                            engine.limiter.correct(used - estimate)
                    return answer
            if (
                request.schema is not None
                # llama-cpp-python's server answers a response_format it does not know with a 500
                and (error.status in (400, 422) or "response_format" in str(error))
                and not engine.schema_style_confirmed
                and style + 1 < len(self.schema_styles)
            ):
                if engine.schema_style == style:
                    engine.schema_style = style + 1  # the server wants another response_format shape
                continue
            if not error.retryable or attempt >= self.max_retries:
                if attempt:
                    raise APIError(
                        f"{error} (after {attempt + 1} attempts)", status=error.status, retryable=False
                    )
                raise error
            attempt += 1
            counters.add(retries=1)
            if error.retry_after is not None:
                delay = error.retry_after
            else:
                delay = random.uniform(0.5, 1.0) * min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1))
            if delay > 0:
                await asyncio.sleep(delay)

    def _token_estimate(self, request: Request, n: int) -> int:
        prompt = len(request.prompt.user) + len(request.prompt.system or "")
        return prompt // 4 + 8 + self.max_new_tokens * n


def response_format(schema: dict[str, Any], style: str) -> dict[str, Any]:
    """The ``response_format`` that asks a server for JSON following ``schema``.

    ``json_schema`` is OpenAI's structured outputs (also vLLM, TGI 3, newer llama.cpp);
    ``json_object`` with a ``schema`` is llama-cpp-python's server; ``json`` with a ``value`` is TGI's.

    Example:
        >>> response_format({"type": "object"}, "json_object")
        {'type': 'json_object', 'schema': {'type': 'object'}}
    """
    if style == "json_schema":
        name = str(schema.get("title") or "answer")
        return {"type": "json_schema", "json_schema": {"name": name[:64], "schema": schema}}
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    if style == "json":
        return {"type": "json", "value": schema}
    raise ValueError(f"unknown response_format style {style!r}")


def completions_from(answer: dict[str, Any], n: int) -> list[Completion]:
    """Completions from an OpenAI-shaped chat answer, in choice order (possibly fewer than ``n``)."""
    choices = sorted(answer.get("choices") or (), key=lambda choice: choice.get("index") or 0)
    usage = answer.get("usage") or {}
    completions = []
    for choice in choices[:n]:
        message = choice.get("message") or {}
        text = message.get("content")
        finish = choice.get("finish_reason")
        if text is None:
            refusal = message.get("refusal")
            reason = f"refused: {refusal}" if refusal else f"no content (finish_reason={finish})"
            completions.append(Completion(text=None, finish_reason=finish, error=reason))
            continue
        tokens, top_logprobs = logprobs_from(choice)
        completions.append(
            Completion(
                text=text,
                finish_reason=finish,
                prompt_tokens=usage.get("prompt_tokens"),
                # usage counts all choices together: per choice only when there is one
                completion_tokens=usage.get("completion_tokens") if len(choices) == 1 else None,
                tokens=tokens,
                top_logprobs=top_logprobs,
            )
        )
    return completions


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
