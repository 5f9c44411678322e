"""Anthropic's Messages API (Claude models), on mapgen's shared sending layer."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mapgen.core.config import knob, secret
from mapgen.llms._api import (
    APILLM,
    Post,
    check_headers,
    check_http_options,
    require_modules,
    resolved_base_url,
)
from mapgen.llms._http import JSONClient, closable
from mapgen.llms.anthropic_wire import ANTHROPIC_MESSAGES, TOOL_STYLE, AnthropicMessagesWire
from mapgen.llms.provider_batches import AnthropicBatches

ANTHROPIC_API = "https://api.anthropic.com"

API_VERSIONS = ("2023-06-01", "2026-10-21")
"""The ``anthropic-version`` values mapgen can send. ``2023-06-01`` (the default) takes ``temperature``
(0 to 1), ``top_p`` and ``top_k``; ``2026-10-21`` (what the 2.x SDKs send) removed them: the model's own
sampling applies, which a config records as ``temperature=1.0, top_p=1.0``."""

OWNED_BODY_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stop_sequences",
        "tools", "tool_choice", "thinking", "stream",
    }
)  # fmt: skip
"""Body fields mapgen sets from the config and each request: not for ``extra_body``."""

_NO_SUCH_PARAMETER = (
    "Anthropic's Messages API has no such parameter (it takes temperature, top_p, top_k and stop); "
    "drop it, or use a backend whose server takes it."
)


@dataclass(frozen=True)
class AnthropicLLM(APILLM):
    """A Claude model behind Anthropic's Messages API (``POST /v1/messages``), or a server that speaks it.

    Requests are sent as :class:`~mapgen.OpenAILLM` sends them: all of a batch at once, at most
    ``max_concurrency`` in flight, 429, 529 (overloaded), 5xx, timeouts and lost connections retried
    ``max_retries`` times honouring ``retry-after``, answers kept in the response store. ``rpm`` limits
    requests per minute, ``tpm`` *input* tokens per minute and ``output_tpm`` output tokens per minute,
    as Anthropic's rate limits count them (cache reads do not count against input), across all
    ``num_proc`` workers together.

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY``, the server from ``base_url`` or
    ``ANTHROPIC_BASE_URL`` (Anthropic's API by default). The key is not part of the config's equality, repr
    or fingerprint, and is masked in error messages.

    - **System prompts and conversations**: a prompt's system turns go to ``system``, its user and
      assistant turns to ``messages``; images as ``image`` blocks.
    - **Several generations**: the API has no ``n`` and no ``seed``: each generation is its own request
      (told apart in the response store by its index), and ``seed`` is refused rather than ignored.
    - **Structured output**: a task's JSON schema becomes one tool (its ``input_schema``), forced with
      ``tool_choice``; the tool's input, as JSON, is the answer.
    - **Prompt caching**: a system prompt of at least ``cache_min_tokens`` tokens (estimated as characters
      / 4; 1,024 by default, the API's minimum for most models) is marked ``cache_control: ephemeral``, so
      the rows of a map that repeat it read it from the cache (``cached_tokens`` in the metadata). A knob:
      it changes what is billed, never the answer. ``None`` turns it off.
    - **Extended thinking**: ``thinking_budget=N`` (at least 1,024, below ``max_new_tokens``) turns it on;
      the thinking blocks become the completion's ``reasoning``. The API then takes no temperature other
      than 1 and no forced tool.
    - ``api_version``: the ``anthropic-version`` header (:data:`API_VERSIONS`); what it rejects is refused
      here, before anything is sent.

    ``transport``: ``"aiohttp"`` (and ``"auto"``) posts JSON directly; ``"sdk"`` goes through the official
    ``anthropic.AsyncAnthropic`` client's low-level request path, its own retries off.

    Example:
        >>> import mapgen
        >>> llm = mapgen.AnthropicLLM("claude-sonnet-4-5", api_key="sk-ant-...", temperature=0.2)
        >>> "sk-ant" in repr(llm), llm == mapgen.AnthropicLLM("claude-sonnet-4-5", temperature=0.2)
        (False, True)
        >>> mapgen.AnthropicLLM("claude-sonnet-4-5", seed=0)
        Traceback (most recent call last):
        ...
        ValueError: AnthropicLLM cannot honour seed=0: ...
    """

    model: str
    _: dataclasses.KW_ONLY
    base_url: str | None = None
    """The server's root, without ``/v1`` (as the SDK takes it); ``ANTHROPIC_BASE_URL`` or Anthropic's
    API when ``None``."""
    api_key: str | None = secret()
    default_headers: Mapping[str, str] | None = secret()
    """More headers on every request (a gateway's key header...), on either transport. Treated as
    credentials: not compared, fingerprinted or shown, and masked in error messages."""
    api_version: Literal["2023-06-01", "2026-10-21"] = "2023-06-01"
    thinking_budget: int | None = None
    """Tokens of extended thinking (``thinking: {"type": "enabled", "budget_tokens": ...}``); ``None``:
    off."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """More body fields (``metadata``, ``service_tier``...); they may affect output."""
    transport: Literal["auto", "aiohttp", "sdk"] = knob("auto")
    cache_min_tokens: int | None = knob(1024)
    output_tpm: float | None = knob(None)
    """Output tokens per minute (Anthropic's OTPM), reserved as ``max_new_tokens`` and corrected by usage."""

    store_name: ClassVar[str] = "mapgen.llms.anthropic.AnthropicLLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    credentials_hint: ClassVar[str] = "pass api_key=... or set ANTHROPIC_API_KEY instead."
    schema_styles: ClassVar[tuple[str, ...]] = (TOOL_STYLE,)
    supports_batch_api: ClassVar[bool] = True
    supports_n: ClassVar[bool] = False
    supports_continue_final_message: ClassVar[bool] = False
    """No open user turn to write on (Magpie); assistant prefill is left to the API's newer models' rules."""
    unsupported_sampling: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("min_p", "presence_penalty", "frequency_penalty", "repetition_penalty"), _NO_SUCH_PARAMETER
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(
                f"model must be a Claude model name such as 'claude-sonnet-4-5', got {self.model!r}."
            )
        check_http_options(self.base_url, self.transport, ("auto", "aiohttp", "sdk"), self.extra_body)
        object.__setattr__(self, "default_headers", check_headers(self.default_headers) or None)
        _ = self.resolved_base_url  # ANTHROPIC_BASE_URL is checked as base_url is
        if self.api_version not in API_VERSIONS:
            raise ValueError(f"api_version must be one of {API_VERSIONS}, got {self.api_version!r}.")
        owned = sorted(OWNED_BODY_FIELDS & set(self.extra_body))
        if owned:
            raise ValueError(
                f"extra_body sets {owned}, which mapgen sets from the config and each request: use the "
                "config's fields (temperature, top_p, top_k, stop, max_new_tokens, thinking_budget) instead."
            )
        self._check_sampling()
        if self.use_n:
            raise ValueError(
                "Anthropic's Messages API has no n: leave use_n unset (one request per generation)."
            )
        if self.reasoning_effort is not None:
            raise ValueError(
                "AnthropicLLM takes thinking_budget=... (extended thinking), not reasoning_effort."
            )
        if self.cache_min_tokens is not None and (
            isinstance(self.cache_min_tokens, bool)
            or not isinstance(self.cache_min_tokens, int)
            or self.cache_min_tokens < 0
        ):
            raise ValueError(f"cache_min_tokens must be an int >= 0 or None, got {self.cache_min_tokens!r}.")
        if self.output_tpm is not None and (isinstance(self.output_tpm, bool) or not self.output_tpm > 0):
            raise ValueError(f"output_tpm must be a positive number or None, got {self.output_tpm!r}.")

    def _check_sampling(self) -> None:
        """Refuse what the chosen ``anthropic-version`` and the API would reject (400), before sending."""
        if self.api_version == "2026-10-21":
            if self.temperature != 1.0 or self.top_p != 1.0 or self.top_k is not None:
                raise ValueError(
                    "anthropic-version 2026-10-21 takes no temperature, top_p or top_k (the model's own "
                    "sampling applies): pass temperature=1.0 and leave top_p and top_k, or use "
                    "api_version='2023-06-01'."
                )
        elif self.temperature > 1.0:
            raise ValueError(f"Anthropic's temperature ranges from 0 to 1, got {self.temperature!r}.")
        if self.stop is not None and any(not s.strip() for s in self.stop):
            raise ValueError("Anthropic's stop sequences must each contain non-whitespace.")
        if self.thinking_budget is not None:
            budget = self.thinking_budget
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
                raise ValueError(
                    f"thinking_budget must be an int >= 1024 (the API's minimum), got {budget!r}."
                )
            if budget >= self.max_new_tokens:
                raise ValueError(
                    f"thinking_budget ({budget}) must be below max_new_tokens ({self.max_new_tokens}): the "
                    "budget is part of max_tokens."
                )
            if self.temperature != 1.0 or self.top_k is not None or self.top_p < 0.95:
                raise ValueError(
                    "with thinking the API takes temperature=1.0 only, no top_k, and top_p from 0.95 to 1."
                )

    def sampling_gaps(self) -> Mapping[str, str]:
        gaps = dict(self.unsupported_sampling)
        gaps["seed"] = (
            "Anthropic's API has no seed. Each generation is its own request, and the response store keeps "
            "every answer, so a re-run reads the same answers instead of sampling again: drop seed."
        )
        return gaps

    def sampling_body(self) -> dict[str, Any]:
        """``temperature`` (always), ``top_p`` (when below 1: recent models refuse both set), ``top_k`` and
        ``stop_sequences``, as the API names them; nothing under version 2026-10-21 but the stops."""
        body: dict[str, Any] = {}
        if self.api_version == "2023-06-01":
            body["temperature"] = self.temperature
            if self.top_p < 1.0:
                body["top_p"] = self.top_p
            if self.top_k is not None:
                body["top_k"] = self.top_k
        if self.stop is not None:
            body["stop_sequences"] = list(self.stop)
        return body

    @property
    def wire(self) -> AnthropicMessagesWire:
        return ANTHROPIC_MESSAGES

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def resolved_base_url(self) -> str:
        return resolved_base_url(self.base_url, "ANTHROPIC_BASE_URL", ANTHROPIC_API, self.credentials_hint)

    @property
    def is_anthropic(self) -> bool:
        return self.resolved_base_url.startswith(ANTHROPIC_API)

    def fingerprint(self) -> dict[str, Any]:
        # Where requests go decides the answer: ANTHROPIC_BASE_URL counts when base_url is not given.
        return {**super().fingerprint(), "base_url": self.resolved_base_url}

    def caches(self, system: str) -> bool:
        """Whether to mark this system prompt for prompt caching (``cache_min_tokens``, characters / 4)."""
        return self.cache_min_tokens is not None and len(system) // 4 >= self.cache_min_tokens

    def resolved_api_key(self) -> str | None:
        key = self.api_key or os.environ.get("ANTHROPIC_API_KEY")
        return key if key and key.strip() else None

    def secrets(self) -> Sequence[str | None]:
        return (self.resolved_api_key(), *self.extra_headers().values())

    def extra_headers(self) -> dict[str, str]:
        """The headers sent beside the key and the API version: ``default_headers``."""
        return dict(self.default_headers or {})

    def rate_limit_key(self) -> str:
        return f"anthropic {self.resolved_base_url} {self.model}"

    def output_tpm_limit(self) -> float | None:
        return self.output_tpm

    def rate_tokens(self, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
        # Anthropic limits input and output tokens per minute apart: tpm is the input limit.
        return prompt_tokens, completion_tokens

    def request_headers(self) -> dict[str, str]:
        """The headers of every request: the key (``x-api-key``, when there is one) and the API version."""
        key = self.resolved_api_key()
        headers: dict[str, str] = {"anthropic-version": self.api_version, **self.extra_headers()}
        if key:
            headers["x-api-key"] = key
        return headers

    @property
    def resolved_transport(self) -> str:
        return "aiohttp" if self.transport == "auto" else self.transport

    def preflight(self) -> None:
        if self.resolved_api_key() is None and self.is_anthropic:
            raise ValueError(
                "AnthropicLLM needs an API key for Anthropic's API: pass api_key=... or set "
                "ANTHROPIC_API_KEY (or pass base_url=... for a server that needs none)."
            )
        require_modules(["aiohttp"] if self.resolved_transport == "aiohttp" else ["anthropic"], "anthropic")
        if self.batch_api:
            require_modules(["anthropic"], "anthropic")  # message batches go through the official client

    def batch_provider(self) -> AnthropicBatches:
        return AnthropicBatches(self)

    def open_client(self) -> Post:
        self.preflight()
        if self.resolved_transport == "aiohttp":
            client = JSONClient(
                f"{self.resolved_base_url}{self.wire.path}",
                headers=self.request_headers(),
                timeout=self.timeout,
                max_connections=self.max_concurrency,
            )
            return client.poster(self.secrets())
        return self._sdk_poster()

    def _sdk_poster(self) -> Post:
        """Posts through ``anthropic.AsyncAnthropic``'s low-level request path (no typed models), on its
        aiohttp transport, with the SDK's own retries off (mapgen retries, honouring ``retry-after``)."""
        import anthropic
        import httpx2

        limits = httpx2.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        try:
            http_client = anthropic.DefaultAioHttpClient(limits=limits, timeout=self.timeout)
        except RuntimeError:  # no aiohttp
            http_client = anthropic.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout)
        client = anthropic.AsyncAnthropic(
            api_key=self.resolved_api_key() or "none",
            base_url=self.resolved_base_url,
            max_retries=0,
            timeout=self.timeout,
            default_headers={"anthropic-version": self.api_version, **self.extra_headers()},
            http_client=http_client,
        )
        path = self.wire.path

        async def post(body: dict[str, Any]) -> object:
            # The SDK's errors propagate: the sending layer maps them (mapgen.llms._http.to_api_error).
            return await client.post(path, body=body, cast_to=object)

        return closable(post, client.close)
