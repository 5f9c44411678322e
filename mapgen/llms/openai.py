"""OpenAI's chat API and any OpenAI-compatible server (vLLM, llama.cpp, TGI, Ollama, LiteLLM, ...)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mapgen.core.config import added, knob, secret
from mapgen.llms._api import (
    APILLM,
    Post,
    check_extra_body,
    check_headers,
    check_http_options,
    require_modules,
    resolved_base_url,
)
from mapgen.llms._http import JSONClient, closable
from mapgen.llms.provider_batches import OpenAIBatches

OPENAI_API = "https://api.openai.com/v1"

MAX_STOP = 4
"""The most stop sequences OpenAI's API takes."""

_SERVER_ONLY = (
    "OpenAI's API has no such parameter; OpenAI-compatible servers such as vLLM and llama.cpp take it: "
    "pass their base_url=... (or use presence_penalty/frequency_penalty with OpenAI)."
)


@dataclass(frozen=True)
class OpenAILLM(APILLM):
    """A chat model behind OpenAI's API or any OpenAI-compatible ``base_url``.

    All requests of a batch are sent at once, at most ``max_concurrency`` in flight, on an event loop that
    mapgen runs in each worker (so it works in Jupyter and with ``num_proc``). 429, 5xx, timeouts and
    connection errors are retried ``max_retries`` times with exponential backoff and jitter, honouring
    ``Retry-After``; after that the row gets ``None`` and the error in its error column, and the run goes
    on. ``rpm`` / ``tpm`` limit requests and tokens per minute across all ``num_proc`` workers together.

    The key comes from ``api_key`` or ``OPENAI_API_KEY`` (a local server needs none); it is not part of
    the config's equality, repr or fingerprint, and is masked in error messages. With a ``seed``,
    generation ``i`` of a row is asked with ``seed + i``; without one, a row's generations are asked in
    one request with ``n`` where the server honours it (detected, or set ``use_n``).

    ``transport`` picks how requests travel: ``"aiohttp"`` posts JSON directly (about 0.1 ms of CPU per
    request), ``"sdk"`` goes through the official ``openai.AsyncOpenAI`` client (its low-level request
    path, about 0.5 ms); ``"auto"`` uses the SDK for OpenAI's own API and aiohttp for any other
    ``base_url``. See ``docs/api_backends.md`` for the measurements.

    Example:
        >>> import mapgen
        >>> llm = mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-...", max_concurrency=128, temperature=0.2)
        >>> "sk-" in repr(llm), repr(llm).startswith("OpenAILLM(temperature=0.2, top_p=1.0")  # no key
        (False, True)
        >>> llm == mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-other", temperature=0.2)  # keys, knobs aside
        True
    """

    model: str
    _: dataclasses.KW_ONLY
    base_url: str | None = None
    """Server root ending in ``/v1`` (``http://localhost:8000/v1`` for vLLM); ``OPENAI_BASE_URL`` or
    OpenAI's API when ``None``."""
    api_key: str | None = secret()
    organization: str | None = secret()
    """Sent as ``OpenAI-Organization``; ``OPENAI_ORG_ID`` when ``None``, as the SDK reads it."""
    project: str | None = secret()
    """Sent as ``OpenAI-Project``; ``OPENAI_PROJECT_ID`` when ``None``, as the SDK reads it."""
    default_headers: Mapping[str, str] | None = secret()
    """More headers on every request (a gateway's key header...), on either transport. Treated as
    credentials: not compared, fingerprinted or shown, and masked in error messages."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """More body fields (a server's own options, such as vLLM's ``ignore_eos``); they affect output."""
    transport: Literal["auto", "aiohttp", "sdk"] = knob("auto")
    chat_template_kwargs: Mapping[str, Any] = added(default_factory=dict)
    """Options for the server's chat template, sent as ``chat_template_kwargs`` (vLLM, SGLang and
    llama.cpp's server): ``{"enable_thinking": False}`` turns Qwen3's thinking off. Not for OpenAI's API."""

    store_name: ClassVar[str] = "mapgen.llms.openai.OpenAILLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    credentials_hint: ClassVar[str] = "pass api_key=... or set OPENAI_API_KEY instead."
    supports_batch_api: ClassVar[bool] = True
    supports_logprobs: ClassVar[bool] = True
    """Asks for ``logprobs`` / ``top_logprobs`` (at most 20) when a request wants them, as
    ``label(..., weighted_ratings=True)`` does; OpenAI's reasoning models and some servers refuse them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a model name such as 'gpt-4o-mini', got {self.model!r}.")
        check_http_options(self.base_url, self.transport, ("auto", "aiohttp", "sdk"), self.extra_body)
        object.__setattr__(self, "default_headers", check_headers(self.default_headers) or None)
        for name in ("organization", "project"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}.")
        _ = self.resolved_base_url  # OPENAI_BASE_URL is checked as base_url is
        if not isinstance(self.chat_template_kwargs, Mapping):
            raise TypeError(f"chat_template_kwargs must be a mapping, got {self.chat_template_kwargs!r}.")
        if self.chat_template_kwargs and self.is_openai:
            raise ValueError(
                "chat_template_kwargs is for servers that render a chat template (vLLM, llama.cpp); "
                "OpenAI's API has none: drop it, or pass base_url=... for your server."
            )
        check_extra_body(self, self.extra_body)
        if self.is_openai and self.stop is not None and len(self.stop) > MAX_STOP:
            raise ValueError(f"OpenAI's API takes at most {MAX_STOP} stop sequences, got {len(self.stop)}.")

    def sampling_gaps(self) -> Mapping[str, str]:
        # OpenAI's own API refuses top_k, min_p and repetition_penalty; compatible servers take them.
        if self.is_openai:
            return dict.fromkeys(("top_k", "min_p", "repetition_penalty"), _SERVER_ONLY)
        return {}

    def sampling_body(self) -> dict[str, Any]:
        body = super().sampling_body()
        if "repetition_penalty" in body and not self.is_openai:
            # vLLM, SGLang and TGI read repetition_penalty, llama.cpp's servers repeat_penalty; each
            # ignores the other's name.
            body["repeat_penalty"] = body["repetition_penalty"]
        return body

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def resolved_base_url(self) -> str:
        return resolved_base_url(self.base_url, "OPENAI_BASE_URL", OPENAI_API, self.credentials_hint)

    @property
    def is_openai(self) -> bool:
        return self.resolved_base_url.startswith(OPENAI_API)

    @property
    def supports_continue_final_message(self) -> bool:
        """OpenAI-compatible servers get ``continue_final_message`` in the body (vLLM and SGLang read it);
        OpenAI's own API has no way to end a prompt inside a message."""
        return not self.is_openai

    def fingerprint(self) -> dict[str, Any]:
        # Where requests go decides the answer: OPENAI_BASE_URL counts when base_url is not given.
        return {**super().fingerprint(), "base_url": self.resolved_base_url}

    def resolved_api_key(self) -> str | None:
        # An empty or blank key (OPENAI_API_KEY="") is no key: it must fail before anything is sent.
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        return key if key and key.strip() else None

    def secrets(self) -> Sequence[str | None]:
        return (self.resolved_api_key(), *self.extra_headers().values())

    def extra_headers(self) -> dict[str, str]:
        """The headers sent beside the key: ``default_headers``, then the organization and project (from
        the fields, else ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``).

        Example:
            >>> OpenAILLM("gpt-4o-mini", organization="org-1", default_headers={"X-Key": "k"}).extra_headers()
            {'X-Key': 'k', 'OpenAI-Organization': 'org-1'}
        """
        headers = dict(self.default_headers or {})
        organization = self.organization or os.environ.get("OPENAI_ORG_ID")
        project = self.project or os.environ.get("OPENAI_PROJECT_ID")
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        return headers

    def rate_limit_key(self) -> str:
        return f"openai {self.resolved_base_url} {self.model}"

    def body_model(self) -> str:
        return self.model

    def max_tokens_key(self) -> str:
        # OpenAI's reasoning models accept only max_completion_tokens; other servers know max_tokens.
        return "max_completion_tokens" if self.is_openai else "max_tokens"

    @property
    def resolved_transport(self) -> str:
        if self.transport == "auto":
            return "sdk" if self.is_openai else "aiohttp"
        return self.transport

    def preflight(self) -> None:
        if self.resolved_api_key() is None and self.is_openai:
            raise ValueError(
                "OpenAILLM needs an API key for OpenAI's API: pass api_key=... or set OPENAI_API_KEY "
                "(or pass base_url=... for a server that needs none)."
            )
        require_modules(["aiohttp"] if self.resolved_transport == "aiohttp" else ["openai"], "openai")
        if self.batch_api:
            require_modules(["openai"], "openai")  # files and batches go through the official client

    def batch_provider(self) -> OpenAIBatches:
        return OpenAIBatches(self)

    def open_client(self) -> Post:
        self.preflight()
        key = self.resolved_api_key()
        transport = self.resolved_transport
        if transport == "aiohttp":
            headers = {**self.extra_headers(), **({"Authorization": f"Bearer {key}"} if key else {})}
            client = JSONClient(
                f"{self.resolved_base_url}/chat/completions",
                headers=headers,
                timeout=self.timeout,
                max_connections=self.max_concurrency,
            )
            return client.poster(self.secrets())
        return sdk_poster(
            self.resolved_base_url,
            key or "none",
            self.timeout,
            self.max_concurrency,
            self.secrets(),
            headers=self.extra_headers(),
        )


def sdk_poster(
    base_url: str,
    api_key: str,
    timeout: float,
    max_connections: int,
    secrets: Sequence[Any],
    *,
    headers: Mapping[str, str] | None = None,
) -> Post:
    """Posts through ``openai.AsyncOpenAI``'s low-level request path (no typed models), on its aiohttp
    transport when aiohttp is installed, with the SDK's own retries off: mapgen's retries honour
    ``Retry-After: 0`` and release the concurrency slot while waiting. ``secrets`` is kept for callers;
    the SDK's exceptions are scrubbed where they are mapped."""
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    try:
        http_client = openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
    except RuntimeError:  # no aiohttp
        http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)
    client = openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
        default_headers=dict(headers or {}),
    )

    async def post(body: dict[str, Any]) -> object:
        # The SDK's errors (status, timeout, connection, a body that is not JSON) propagate: the sending
        # layer maps them to APIError in one place (mapgen.llms._http.to_api_error).
        return await client.post("/chat/completions", body=body, cast_to=object)

    return closable(post, client.close)
