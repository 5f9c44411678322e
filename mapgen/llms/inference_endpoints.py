"""Hugging Face inference: serverless models (Inference Providers), dedicated Inference Endpoints, and any
Text Generation Inference (TGI) or OpenAI-compatible URL."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mapgen.core.config import knob, secret
from mapgen.llms._api import APILLM, Post, check_extra_body, check_http_options
from mapgen.llms._http import JSONClient, closable


@dataclass(frozen=True)
class InferenceEndpointsLLM(APILLM):
    """A chat model served by Hugging Face, through ``huggingface_hub``'s ``AsyncInferenceClient``.

    ``model_or_endpoint`` is one of:

    - a model id (``"meta-llama/Llama-3.1-8B-Instruct"``): serverless inference, routed to ``provider``
      (``"auto"`` by default, Hugging Face picks);
    - the name of a dedicated Inference Endpoint (``"my-endpoint"``, in ``namespace`` or your own): its URL
      is looked up once per process (``huggingface_hub.get_inference_endpoint``);
    - a URL (``"http://localhost:8080"``): a TGI server or any OpenAI-compatible one; ``/v1/chat/completions``
      is appended unless present. Pass ``base_url=`` instead to keep ``model_or_endpoint`` as the model
      name sent in the body. A URL with credentials in it (``user:password@``, ``?token=``...) is refused,
      here and in ``base_url``: the token goes in ``token``.

    Concurrency, retries, rate limits, ``n`` and structured output work as in :class:`~mapgen.OpenAILLM`.
    The token comes from ``token``, ``HF_TOKEN`` or your saved login; it is not part of the config's
    equality, repr or fingerprint, and is masked in error messages.

    ``transport``: ``"hub"`` uses ``AsyncInferenceClient.chat_completion``; ``"aiohttp"`` posts JSON
    directly to a URL (much less CPU per request); ``"auto"`` uses aiohttp for URLs and endpoints and the
    hub client for serverless model ids.

    Example:
        >>> import mapgen
        >>> llm = mapgen.InferenceEndpointsLLM("meta-llama/Llama-3.1-8B-Instruct", token="hf_...", seed=0)
        >>> llm.model_name
        'meta-llama/Llama-3.1-8B-Instruct'
        >>> llm == mapgen.InferenceEndpointsLLM("meta-llama/Llama-3.1-8B-Instruct", seed=0)
        True
    """

    model_or_endpoint: str
    _: dataclasses.KW_ONLY
    base_url: str | None = None
    namespace: str | None = None
    """Owner of a dedicated endpoint named by ``model_or_endpoint`` (you, by default)."""
    provider: str | None = None
    """Inference provider for a serverless model id (``"auto"``, ``"together"``, ...)."""
    token: str | None = secret()
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    transport: Literal["auto", "aiohttp", "hub"] = knob("auto")

    store_name: ClassVar[str] = "mapgen.llms.inference_endpoints.InferenceEndpointsLLM"
    """Its module path before backends had store names: kept, so that stores written before serve on."""
    url_fields: ClassVar[tuple[str, ...]] = ("model_or_endpoint", "base_url")
    """A URL given as the model is the model column's value and in reprs and cards: no credentials."""
    credentials_hint: ClassVar[str] = "pass token=... or set HF_TOKEN instead."
    schema_styles: ClassVar[tuple[str, ...]] = ("json_schema", "json", "json_object")
    supports_continue_final_message: ClassVar[bool] = False
    """TGI's Messages API always opens a new assistant turn."""

    unsupported_sampling: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("top_k", "min_p", "repetition_penalty"),
        "TGI's chat API (and Hugging Face's chat_completion) has no such parameter and would ignore it; "
        "for a vLLM or llama.cpp server use mapgen.OpenAILLM(model, base_url=...), which sends it.",
    )
    """TGI's ``/v1/chat/completions`` reads ``stop``, ``presence_penalty`` (as its repetition penalty,
    plus 2) and ``frequency_penalty``, not ``top_k``, ``min_p`` nor ``repetition_penalty``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model_or_endpoint, str) or not self.model_or_endpoint:
            raise ValueError(
                "model_or_endpoint must be a model id, an Inference Endpoint name or a URL, "
                f"got {self.model_or_endpoint!r}."
            )
        check_http_options(self.base_url, self.transport, ("auto", "aiohttp", "hub"), self.extra_body)
        check_extra_body(self, self.extra_body)

    @property
    def kind(self) -> Literal["url", "model", "endpoint"]:
        if self.base_url is not None or self.model_or_endpoint.startswith(("http://", "https://")):
            return "url"
        return "model" if "/" in self.model_or_endpoint else "endpoint"

    @property
    def model_name(self) -> str:
        return self.model_or_endpoint

    def resolved_token(self) -> str | None:
        return self.token if self.token is not None else os.environ.get("HF_TOKEN")

    def secrets(self) -> Sequence[str | None]:
        return (self.resolved_token(),)

    def rate_limit_key(self) -> str:
        return f"hf {self.base_url or ''} {self.model_or_endpoint} {self.namespace or ''}"

    def chat_url(self) -> str:
        """The chat completions URL, for URLs and dedicated endpoints (looked up on the Hub)."""
        if self.kind == "endpoint":
            import huggingface_hub

            endpoint = huggingface_hub.get_inference_endpoint(
                self.model_or_endpoint, namespace=self.namespace, token=self.resolved_token()
            )
            if endpoint.url is None:
                raise RuntimeError(
                    f"Inference Endpoint {self.model_or_endpoint!r} has no URL (status {endpoint.status!r}); "
                    "resume it and wait until it is running."
                )
            root = endpoint.url
        else:
            root = self.base_url or self.model_or_endpoint
        root = root.rstrip("/")
        if root.endswith("/chat/completions"):
            return root
        return f"{root}/chat/completions" if root.endswith("/v1") else f"{root}/v1/chat/completions"

    def body_model(self) -> str:
        return "tgi" if self.kind == "url" and self.base_url is None else self.model_or_endpoint

    def open_client(self) -> Post:
        transport = self.transport
        if transport == "auto":
            transport = "hub" if self.kind == "model" else "aiohttp"
        token = self.resolved_token()
        secrets = self.secrets()
        if transport == "aiohttp":
            if self.kind == "model":
                raise ValueError("transport='aiohttp' needs a URL or an endpoint; use 'hub' for model ids.")
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = JSONClient(
                self.chat_url(), headers=headers, timeout=self.timeout, max_connections=self.max_concurrency
            )
            return client.poster(secrets)
        return self._hub_poster(token, secrets)

    def _hub_poster(self, token: str | None, secrets: Sequence[str | None]) -> Post:
        from huggingface_hub import AsyncInferenceClient

        if self.kind == "model":
            # (huggingface_hub types provider as the Literal of the names it knows; it checks the name itself)
            client = AsyncInferenceClient(
                provider=self.provider,  # type: ignore[arg-type]
                token=token,
                timeout=self.timeout,
            )
        else:
            client = AsyncInferenceClient(model=self.chat_url(), token=token, timeout=self.timeout)

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            body = dict(body)
            messages = body.pop("messages")
            model = body.pop("model")
            known: tuple[str, ...] = ("max_tokens", "temperature", "top_p", "seed", "n", "response_format")
            known += ("stop", "presence_penalty", "frequency_penalty")
            arguments = {name: body.pop(name) for name in known if name in body}
            # huggingface_hub's errors propagate: the sending layer maps them (to_api_error).
            output = await client.chat_completion(
                messages,
                model=model if self.kind == "model" else None,
                extra_body=body or None,
                **arguments,
            )
            return chat_output_as_dict(output)

        return closable(post, getattr(client, "close", None))


def chat_output_as_dict(output: Any) -> dict[str, Any]:
    """``huggingface_hub``'s ``ChatCompletionOutput`` in OpenAI's JSON shape."""
    choices = [
        {
            "index": choice.index,
            "message": {
                "content": choice.message.content,
                "reasoning": getattr(choice.message, "reasoning", None),
            },
            "finish_reason": choice.finish_reason,
        }
        for choice in output.choices
    ]
    usage = output.usage
    return {
        "choices": choices,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
        if usage is not None
        else {},
    }
