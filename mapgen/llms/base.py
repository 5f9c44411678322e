"""The backend contract: a frozen config that turns :class:`Request` s into :class:`Completion` s.

An LLM instance is data (model, sampling parameters, knobs); the live engine or client is built on first
use, once per process, by :meth:`LLM.load_engine`, and kept in a process-wide registry, so it is never
pickled into ``num_proc`` workers or fingerprints and two map steps on the same config share it.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import inspect
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.config import added, dataclass_fingerprint, knob, qualified_name
from mapgen.core.keywords import CheckedKeywords
from mapgen.core.prices import as_price
from mapgen.core.prompt import Prompt
from mapgen.core.request import THINK_END, THINK_START, Completion, OnComplete, Request
from mapgen.core.urls import check_no_credentials
from mapgen.llms._sampling import SAMPLING_PARAMETERS, check_generation_kwargs, check_sampling, stop_sequences
from mapgen.llms.devices import bind, parse_devices

SampleGroup = list[tuple[int, Request]]
"""Requests that one sampling call answers (``n`` of them), each as ``(position, request)``."""


def sample_groups(requests: Sequence[Request]) -> list[SampleGroup]:
    """Requests that one sampling call with ``n`` can answer: the same prompt, schema and log-probability
    ask, at consecutive generation indices; each as ``(position, request)``.

    Example:
        >>> from mapgen.core.prompt import Prompt
        >>> a, b = Prompt("a"), Prompt("b")
        >>> [[i for i, _ in g] for g in sample_groups([Request(a, 0), Request(a, 1), Request(b, 0)])]
        [[0, 1], [2]]
    """
    groups: list[SampleGroup] = []
    for position, request in enumerate(requests):
        if groups:
            last = groups[-1][-1][1]
            if (
                request.index == last.index + 1
                and request.prompt == last.prompt
                and request.schema == last.schema
                and request.top_logprobs == last.top_logprobs
                and request.attempt == last.attempt
            ):
                groups[-1].append((position, request))
                continue
        groups.append([(position, request)])
    return groups


@dataclass(frozen=True)
class SendLimits:
    """What bounds how fast a backend that answers requests concurrently (an API) can go: the dry run
    (:func:`mapgen.estimate`) takes the map's time from the tightest of them."""

    max_concurrency: int
    """Requests in flight at once."""
    rpm: float | None = None
    """Requests per minute, where limited."""
    tpm: float | None = None
    """Tokens per minute, where limited."""


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()
_ENGINE_CALLS: dict[int, threading.Lock] = {}
"""One lock per local engine (by ``id``): configs that share an engine (:attr:`LLM.call_fields`) may be
called from several threads at once (an :class:`~mapgen.llms.pool.LLMPool`'s members), and no local engine
takes two calls at a time."""


_INHERITED_ENGINES: list[Any] = []


def _forget_engines_after_fork() -> None:
    # A forked num_proc worker inherits the parent's engines without their threads (llama.cpp's
    # thread pool, an HTTP client's loop): using them hangs, so the child builds its own on first use.
    # The inherited ones are kept referenced, never closed: closing an inherited socket unregisters it
    # from the epoll instance that the child shares with the parent, and the parent would then never
    # hear the answer on that connection.
    global _ENGINES_LOCK
    _INHERITED_ENGINES.extend(_ENGINES.values())
    _ENGINES.clear()
    _ENGINE_CALLS.clear()
    _ENGINES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


@atexit.register
def _close_engines() -> None:
    # Close engines while the interpreter is whole: llama.cpp's finaliser fails noisily at shutdown.
    for engine in _ENGINES.values():
        close = getattr(engine, "close", None)
        if callable(close) and not inspect.iscoroutinefunction(close):
            with contextlib.suppress(Exception):
                close()
    _ENGINES.clear()


@dataclass(frozen=True, kw_only=True)
class LLM(CheckedKeywords):
    """Base of every backend: sampling parameters shared by all, and the lazy engine.

    Subclasses add their own fields (see :mod:`mapgen.core.config` for which ones enter the fingerprint) and
    implement :meth:`load_engine` and :meth:`complete`.

    Example:
        >>> import mapgen
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=16)
        >>> llm.model_name
        'SmolLM2-135M-Instruct.Q4_1'
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None
    # The typed sampling parameters: None is the engine's own default, and nothing is sent.
    top_k: int | None = None
    """Sample from the ``k`` most likely tokens only; ``0`` turns the cut off."""
    min_p: float | None = None
    """Drop tokens less likely than ``min_p`` times the most likely one, in [0, 1]."""
    stop: str | Sequence[str] | None = None
    """Stop sequences (kept as a tuple): the answer ends before the first one the model writes."""
    presence_penalty: float | None = None
    """OpenAI's penalty, in [-2, 2], on tokens already present in the answer."""
    frequency_penalty: float | None = None
    """OpenAI's penalty, in [-2, 2], on tokens by how often they occur in the answer."""
    repetition_penalty: float | None = None
    """The multiplicative penalty of the CTRL paper (> 0; 1 is none) on tokens of the prompt and answer
    (llama.cpp calls it ``repeat_penalty``)."""
    price_per_million: tuple[float, ...] | None = added(None)
    """``(input, output)`` or ``(input, output, cached_input)`` in USD per million tokens: the price of this
    config's answers, over the ``genai-prices`` table's (:mod:`mapgen.core.prices`); for self-hosted and
    unknown models. It changes the ``cost`` in the answers' metadata, never the answers: not their store
    keys."""

    store_name: ClassVar[str]
    """The backend's name in its response-store keys (:meth:`store_fingerprint`), so that moving or
    renaming its module keeps every stored answer. A subclass that declares none is named by its module
    and class (:func:`~mapgen.core.config.qualified_name`): it may answer differently from its parent, so
    it must not share its parent's answers; one that changes only speed or placement may declare its
    parent's name to share them."""

    unsupported_sampling: ClassVar[Mapping[str, str]] = {}
    """Typed sampling parameters this backend cannot honour, each with the way out: setting one raises
    at construction rather than being dropped (see :meth:`sampling_gaps`)."""

    # The supports_* facts are read-only properties here so that a backend may set each as a class
    # attribute (`supports_schema: ClassVar[bool] = True`, the usual way) or compute it from its config
    # (a pool from its members, OpenAILLM from where it sends).
    @property
    def supports_schema(self) -> bool:
        """Whether :meth:`complete` constrains answers to ``Request.schema``."""
        return False

    @property
    def supports_logprobs(self) -> bool:
        """Whether :meth:`complete` fills ``Completion.top_logprobs`` when ``Request.top_logprobs > 0``."""
        return False

    @property
    def supports_images(self) -> bool:
        """Whether :meth:`complete` sends a prompt's images; map functions refuse image tasks otherwise."""
        return False

    @property
    def supports_continue_final_message(self) -> bool:
        """Whether a prompt can end inside its last message for the model to write on (an assistant
        prefill, Magpie's open user turn): local engines render that text themselves."""
        return True

    billed_per_token: ClassVar[bool] = False
    """Whether answers are paid for by their tokens (an API): a dry run says so when it knows no price."""

    url_fields: ClassVar[tuple[str, ...]] = ()
    """The fields that may hold a URL (a server's root, a model given as a URL): one holding credentials
    (``user:password@``, a token as user name, ``?api_key=``...) is refused at construction by
    :func:`mapgen.core.urls.check_no_credentials`, the message masking them, so that no key reaches a repr,
    a fingerprint, a provenance record, a dataset card or the model column."""
    credentials_hint: ClassVar[str] = ""
    """Where the key goes instead, for that message
    (``"pass api_key=... or set OPENAI_API_KEY instead."``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "store_name" not in cls.__dict__:  # not inherited: see store_name
            cls.store_name = qualified_name(cls)
        if not isinstance(cls.store_name, str) or not cls.store_name:
            raise TypeError(f"{cls.__qualname__}.store_name must be a non-empty string: {cls.store_name!r}.")

    def __post_init__(self) -> None:
        for name in self.url_fields:  # first: no later message may show a secret
            check_no_credentials(getattr(self, name, None), name, self.credentials_hint)
        _check_number("temperature", self.temperature, low=0.0)
        _check_number("top_p", self.top_p, low=0.0, high=1.0)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}.")
        if self.seed is not None and not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int or None, got {type(self.seed).__name__}.")
        object.__setattr__(self, "stop", stop_sequences(self.stop))
        if self.price_per_million is not None:
            object.__setattr__(self, "price_per_million", as_price(self.price_per_million).rates)
        check_sampling({name: getattr(self, name) for name in SAMPLING_PARAMETERS})
        for name, way_out in self.sampling_gaps().items():
            if getattr(self, name) is not None:
                value = getattr(self, name)
                raise ValueError(f"{type(self).__name__} cannot honour {name}={value!r}: {way_out}")

    def sampling_gaps(self) -> Mapping[str, str]:
        """The typed sampling parameters this config cannot honour, each with the way out
        (:attr:`unsupported_sampling`, unless it depends on the config: OpenAI's own API or a server)."""
        return self.unsupported_sampling

    def sampling_options(self) -> dict[str, Any]:
        """The typed sampling parameters that are set, by name (``stop`` as a list): what to send.

        Example:
            >>> import mapgen
            >>> mapgen.LlamaCppLLM(top_k=1, stop=".").sampling_options()
            {'top_k': 1, 'stop': ['.']}
        """
        options = {name: getattr(self, name) for name in SAMPLING_PARAMETERS}
        if options["stop"] is not None:
            options["stop"] = list(options["stop"])
        return {name: value for name, value in options.items() if value is not None}

    @property
    def model_name(self) -> str:
        """The name written to ``generation_model`` / ``labelling_model``."""
        raise NotImplementedError

    def complete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        """Answer every request, in order.

        A failed request is a failed :class:`Completion`, not an exception: exceptions are for
        misconfiguration that would fail every request. ``on_complete(i, completion)`` is called as
        soon as request ``i`` is answered, so that callers can store paid answers before the batch ends.
        """
        raise NotImplementedError

    def load_engine(self, rank: int | None) -> Any:
        """Build the live engine or client for this process (and GPU rank, where it matters)."""
        raise NotImplementedError

    def call_groups(self, requests: Sequence[Request]) -> list[SampleGroup]:
        """The calls that answer ``requests``, each as its ``(position, request)`` list, as the dry run
        (:func:`mapgen.estimate`) counts them: one call each, unless the backend asks several in one.

        Example:
            >>> import mapgen
            >>> len(mapgen.LlamaCppLLM().call_groups([Request(Prompt("a"), i) for i in range(2)]))
            2
        """
        return [[(position, request)] for position, request in enumerate(requests)]

    def send_limits(self) -> SendLimits | None:
        """The limits on a backend that answers requests concurrently; ``None`` for one that answers
        them one after another in each process (a local engine: its tokens per second set its pace).

        Example:
            >>> import mapgen
            >>> mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-...", rpm=500).send_limits()
            SendLimits(max_concurrency=64, rpm=500, tpm=None)
            >>> mapgen.LlamaCppLLM().send_limits() is None
            True
        """
        return None

    def token_counter(self) -> Callable[[Prompt], int] | None:
        """A function that counts a prompt's input tokens offline with the model's own tokenizer, as the
        engine renders and tokenizes it; ``None`` where there is none (an API, a model not on disk).

        Example:
            >>> import mapgen
            >>> mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-...").token_counter() is None
            True
        """
        return None

    def describe_prompt_format(self) -> str:
        """How this backend turns a prompt's messages into what the model reads (for dataset cards).

        Example:
            >>> import mapgen
            >>> mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-...").describe_prompt_format()
            "chat messages: the server applies the model's chat template"
        """
        return "chat messages: the server applies the model's chat template"

    def preflight(self) -> None:
        """Raise now, before anything is sent, for what would fail every request (a missing key or
        client library). Map functions call it at the start of every batch, so it must be cheap."""

    call_fields: ClassVar[tuple[str, ...]] = ()
    """Fields the backend reads on each call, never when it builds its engine (a prompt format): configs
    that differ only in them, or in sampling parameters, share one engine."""

    def engine(self, rank: int | None = None) -> Any:
        """The engine for this config in this process, built on first use."""
        key = self._engine_key(rank)
        engine = _ENGINES.get(key)
        if engine is None:
            with _ENGINES_LOCK:
                engine = _ENGINES.get(key)
                if engine is None:
                    engine = _ENGINES[key] = self.load_engine(rank)
        return engine

    def _engine_key(self, rank: int | None) -> str:
        # Every field counts here, knobs and secrets included: two configs that differ only in their API
        # key must not share a client. The key stays in this process's memory.
        # The typed sampling parameters are given per call: a sweep over them shares one engine
        # (generation_kwargs do count: engines check them when they are built), as do call_fields.
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in SAMPLING_PARAMETERS and f.name not in self.call_fields
        }
        # A key read from the environment counts too: setting a new one (a notebook) gets a new client.
        secrets = list(getattr(self, "secrets", tuple)())
        return json.dumps(
            [type(self).__qualname__, values, secrets, self.engine_placement(rank)], default=repr
        )

    def engine_placement(self, rank: int | None) -> Any:
        """What part of the rank changes the engine (a GPU index); CPU and API backends ignore it."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Plain data identifying what this config generates: type and output-affecting fields.

        Sampling parameters left at ``None`` (the engine's default) and empty ``generation_kwargs`` are
        left out, so configs written before those fields existed keep their caches and stored answers."""
        state = dataclass_fingerprint(self)
        for name in (*SAMPLING_PARAMETERS, "generation_kwargs"):
            if name in state and state[name] in (None, {}):
                del state[name]
        return state

    def store_fingerprint(self) -> dict[str, Any]:
        """What this config's response-store keys derive from (price aside: see
        :func:`mapgen.store.store_identity`): its :meth:`fingerprint`, with its :attr:`store_name` as
        ``type`` in place of the module path, which ``datasets``' cache keeps.

        Example:
            >>> import mapgen
            >>> mapgen.OpenAILLM("gpt-4o-mini").store_fingerprint()["type"]  # the path it had: kept
            'mapgen.llms.openai.OpenAILLM'
        """
        return {**self.fingerprint(), "type": self.store_name}  # same place in the dict: same hash


@dataclass(frozen=True, kw_only=True)
class LocalLLM(LLM):
    """Base of the backends that run the model inside the worker process, on its GPUs where it has some.

    Rank ``r`` of ``ds.map(fn, num_proc=N, with_rank=True)`` gets the ``r``-th group of
    :attr:`gpus_per_worker` GPUs (from ``devices``, else the parent's ``CUDA_VISIBLE_DEVICES``, else
    ``0, 1, ...``), set in ``CUDA_VISIBLE_DEVICES`` before the engine is built; see
    :mod:`mapgen.llms.devices`.
    """

    devices: tuple[str, ...] | None = knob(None)
    """The GPUs to share out between ranks (indices or UUIDs, ``[0, 1]`` or ``"0,1"``); a knob."""
    generation_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """More sampling options, by the engine's own names, beyond the typed ones (llama.cpp's
    ``mirostat_mode``, vLLM's ``bad_words``, ``transformers``' ``no_repeat_ngram_size``...); they affect
    output. A name the engine does not know is an error before anything is generated."""

    reserved_generation_kwargs: ClassVar[tuple[str, ...]] = ()
    """Engine options the backend sets from its config (seed, length...): not for ``generation_kwargs``."""

    chat_template_source: ClassVar[str] = "the tokenizer"
    """Where the model's own chat template comes from, as :meth:`describe_prompt_format` says it."""

    def __post_init__(self) -> None:
        super().__post_init__()

        object.__setattr__(self, "devices", parse_devices(self.devices))
        check_generation_kwargs(self.generation_kwargs, self.reserved_generation_kwargs)

    @property
    def uses_gpu(self) -> bool:
        """Whether this config runs on GPUs (and so takes its rank's devices)."""
        return True

    @property
    def gpus_per_worker(self) -> int:
        """How many GPUs one engine uses (a model's tensor-parallel size)."""
        return 1

    def engine_placement(self, rank: int | None) -> Any:
        if not self.uses_gpu:
            return None

        return bind(rank, per_worker=self.gpus_per_worker, devices=self.devices)

    def describe_prompt_format(self) -> str:
        """The ``prompt_format`` (a named format, a function), else the model's own chat template.

        Example:
            >>> import mapgen
            >>> mapgen.LlamaCppLLM(prompt_format="chatml").describe_prompt_format()
            "named format 'chatml' (mapgen.llms.formats)"
            >>> mapgen.LlamaCppLLM().describe_prompt_format()
            "the model's own chat template (from the GGUF file)"
        """
        chosen = getattr(self, "prompt_format", None)  # every local engine has the field
        if chosen is None:
            return f"the model's own chat template (from {self.chat_template_source})"
        if chosen == "openai":
            return "llama-cpp-python's OpenAI-style chat handler"
        if isinstance(chosen, str):
            return f"named format {chosen!r} (mapgen.llms.formats)"
        name = getattr(chosen, "__qualname__", repr(chosen))
        return f"function {getattr(chosen, '__module__', '?')}.{name}"

    def complete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        """Answer every request, in order, engine call by engine call (:meth:`_calls`): each call's
        answers go to ``on_complete`` as soon as it returns, and a call that raises fails only its own
        requests (:meth:`_answer`)."""
        if not requests:
            return []
        engine = self.engine(rank)
        with _ENGINES_LOCK:
            one_call_at_a_time = _ENGINE_CALLS.setdefault(id(engine), threading.Lock())
        with one_call_at_a_time:
            return self._complete(engine, requests, on_complete)

    def _complete(
        self, engine: Any, requests: Sequence[Request], on_complete: OnComplete | None
    ) -> list[Completion]:
        opened = self._template_opens_reasoning(engine)
        results: list[Completion | None] = [None] * len(requests)
        for groups, prepared in self._calls(engine, requests):
            for group, completions in zip(groups, self._answer(engine, groups, prepared), strict=True):
                for (position, request), completion in zip(group, completions, strict=True):
                    if opened and not request.prompt.continue_final_message:
                        completion = dataclasses.replace(completion, opened_reasoning=True)
                    results[position] = completion
                    if on_complete is not None:
                        on_complete(position, completion)
        answered = [completion for completion in results if completion is not None]
        assert len(answered) == len(requests)  # every request is in one group of one call
        return answered

    def generation_prompt(self, engine: Any) -> str | None:
        """What this engine's chat template writes for a one-message chat with an open assistant turn, or
        ``None`` where the prompt is not rendered from a chat template (a raw ``prompt_format``)."""
        return None

    def _template_opens_reasoning(self, engine: Any) -> bool:
        """Whether the chat template opens a ``<think>`` block for the model to close (DeepSeek-R1's does,
        Qwen3's with ``enable_thinking``): then its answers start with reasoning. Asked once per call of
        :meth:`complete` (configs that share an engine may pass the template other options)."""
        rendered = self.generation_prompt(engine) or ""
        return rendered.rfind(THINK_START) > rendered.rfind(THINK_END)

    def _calls(self, engine: Any, requests: Sequence[Request]) -> Iterator[tuple[list[SampleGroup], Any]]:
        """The engine calls that answer ``requests``, in the order they run: each as the groups it answers
        and what the engine step needs beyond them. That is prepared here, outside :meth:`_answer`, so its
        errors (misconfiguration, which would fail every request) raise. By default, one request a call."""
        for position, request in enumerate(requests):
            yield [[(position, request)]], None

    def _answer(self, engine: Any, groups: list[SampleGroup], prepared: Any) -> list[list[Completion]]:
        """One call's answers, one list per group; a call that raises fails its requests, not the run."""
        try:
            return self._generate(engine, groups, prepared)
        except Exception as error:  # one bad prompt (too long for the context, say) must not stop the run
            return [[Completion.failed(error)] * len(group) for group in groups]

    def _generate(self, engine: Any, groups: list[SampleGroup], prepared: Any) -> list[list[Completion]]:
        """The engine step: answer one call's groups, ``len(group)`` completions for each."""
        raise NotImplementedError


def _check_number(name: str, value: Any, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
