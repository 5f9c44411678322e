"""What every layer speaks: a :class:`Request` for one generation, and the :class:`Completion` a backend
returned for it.

Example:
    >>> from mapgen.core.prompt import Prompt
    >>> Request(Prompt("Hi"), index=1, attempt=1).seed_index
    1000001
    >>> Completion.failed("timed out", "timeout").error_kind
    'timeout'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mapgen.core.prompt import Prompt
from mapgen.errors import ENGINE


@dataclass(frozen=True)
class Request:
    """One generation to produce: a prompt, the generation's index among a row's ``num_generations``
    (it derives the seed, so generation 2 of a row is reproducible on its own), and an optional JSON
    schema that constrains the answer where the backend can. ``top_logprobs=k`` asks backends that
    :attr:`~LLM.supports_logprobs` for the ``k`` most likely tokens at each generated position.
    ``attempt > 0`` asks again after an answer that failed the task's answer model (a re-ask): another
    request for the response store, sampled with another seed (:attr:`seed_index`)."""

    prompt: Prompt
    index: int = 0
    schema: dict[str, Any] | None = None
    top_logprobs: int = 0
    attempt: int = 0

    @property
    def seed_index(self) -> int:
        """What a backend adds to its ``seed``: the generation index, and for a re-ask
        ``attempt * RESEED_STRIDE`` more, so that it samples anew, apart from every other generation."""
        return self.index + self.attempt * RESEED_STRIDE


RESEED_STRIDE = 1_000_000
"""How far a re-ask's seed moves per attempt: beyond any row's ``num_generations``."""


@dataclass
class Completion:
    """What a backend returned for one :class:`Request`; ``text`` is ``None`` when ``error`` says why."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    tokens: list[str] | None = None
    """The generated tokens' texts, when the request asked for ``top_logprobs``."""
    top_logprobs: list[dict[str, float]] | None = None
    """Per generated token (aligned with :attr:`tokens`): the most likely tokens and their natural-log
    probabilities under the model, before any sampling or schema constraint."""
    from_store: bool = False
    """Whether this answer was read from the response store instead of being requested."""
    schema_style: str | None = None
    """How the request's answer schema went to the backend, where it had one and an API backend answered
    (``None`` otherwise): the ``response_format`` the server took (``json_schema``, OpenAI's strict
    structured outputs; ``json_schema_nonstrict``, a schema with no strict form, which OpenAI reads as a
    guide only; ``json_object``; ``json``), ``tool_use`` (a forced tool, Anthropic's; ``tool_use_auto``,
    only offered), or ``none``: the server took no style and the answer was not constrained."""
    model: str | None = None
    """Which model wrote it, where the config answering is several (:class:`~mapgen.LLMPool`)."""
    error_kind: str | None = None
    """The kind of failure, a short code from :mod:`mapgen.errors` (``http_429``, ``invalid_answer``...)."""
    reasoning: str | None = None
    """The model's reasoning trace, apart from its answer in :attr:`text`, when it returned one."""
    cost: float | None = None
    """What the request cost in USD when its price is known (:mod:`mapgen.core.prices`); for a stored answer,
    what it cost when it was paid for."""
    cached_tokens: int | None = None
    """How many of :attr:`prompt_tokens` the provider read from its prompt cache (billed at less)."""
    cache_write_tokens: int | None = None
    """How many of :attr:`prompt_tokens` the provider wrote to its prompt cache (Anthropic bills them at
    more: :class:`mapgen.Price`'s ``cache_write``)."""
    opened_reasoning: bool | None = None
    """``True`` where the prompt ended inside a ``<think>`` block that its chat template opened (a local
    engine, which renders the prompt, says so): the text starts with reasoning, up to its first
    ``</think>``. Read once, where the reasoning is split off (then cleared: never stored)."""
    repaired: bool = False
    """Whether the task read this answer only after repairing its JSON (a trailing comma, single quotes, a
    missing brace: :func:`mapgen.tasks.parsing.parse_model`); set where the answer is parsed
    (:meth:`mapgen.mapping.map_function.MapFunction.read_answer`), never stored."""
    retries: int = 0
    """How many times the request was sent again before this answer came or its error ended it (429s, 5xx,
    timeouts: :meth:`mapgen.llms._api.APILLM.retry_policy`); 0 for a stored answer (none this run). One
    request that asked ``n`` answers counts its retries on the first of them only, so that the answers'
    retries add up to the requests'."""

    @property
    def cut(self) -> bool:
        """Whether the answer stopped at a token limit (its ``finish_reason`` is one of :data:`CUT_AT_LIMIT`):
        one that the task cannot read is no invalid answer, and is not asked again at the same limit."""
        return self.finish_reason in CUT_AT_LIMIT

    @classmethod
    def failed(cls, error: BaseException | str, kind: str | None = None) -> Completion:
        """A failed answer: ``error`` (a message or an exception) and its kind (:mod:`mapgen.errors`);
        an exception's own ``kind`` attribute is used when ``kind`` is not given, else ``engine``."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        kind = kind or getattr(error, "kind", None) or ENGINE
        return cls(text=None, error=reason, error_kind=kind)


THINK_START, THINK_END = "<think>", "</think>"
"""How a reasoning block opens and closes in a model's text (DeepSeek-R1's, Qwen3's convention)."""

CUT_AT_LIMIT = frozenset({"length", "max_tokens", "model_length"})
"""The ``finish_reason`` s of an answer cut at a token limit: OpenAI's ``length``, which every backend sets
(llama.cpp, vLLM, transformers, TGI, Ollama's OpenAI endpoint; Anthropic's ``max_tokens`` is mapped to
it), and the spellings some OpenAI-compatible servers pass on: Anthropic's own ``max_tokens`` behind a
gateway, Mistral's ``model_length`` (the context filled up)."""


OnComplete = Callable[[int, "Completion"], None]
"""Called with a request's position and its completion as soon as it is answered."""
