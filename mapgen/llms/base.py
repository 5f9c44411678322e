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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.config import added, dataclass_fingerprint, knob
from mapgen.core.prices import as_price
from mapgen.core.request import Completion, OnComplete, Request
from mapgen.llms._sampling import SAMPLING_PARAMETERS, check_generation_kwargs, check_sampling, stop_sequences
from mapgen.llms.devices import bind, parse_devices


def sample_groups(requests: Sequence[Request]) -> list[list[tuple[int, Request]]]:
    """Requests that one sampling call with ``n`` can answer: the same prompt, schema and log-probability
    ask, at consecutive generation indices; each as ``(position, request)``.

    Example:
        >>> a, b = Prompt("a"), Prompt("b")
        >>> [[i for i, _ in g] for g in sample_groups([Request(a, 0), Request(a, 1), Request(b, 0)])]
        [[0, 1], [2]]
    """
    groups: list[list[tuple[int, Request]]] = []
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


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


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
class LLM:
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

    unsupported_sampling: ClassVar[Mapping[str, str]] = {}
    """Typed sampling parameters this backend cannot honour, each with the way out: setting one raises
    at construction rather than being dropped (see :meth:`sampling_gaps`)."""

    supports_schema: ClassVar[bool] = False
    """Whether :meth:`complete` constrains answers to ``Request.schema``."""

    supports_logprobs: ClassVar[bool] = False
    """Whether :meth:`complete` fills ``Completion.top_logprobs`` when ``Request.top_logprobs > 0``."""

    supports_images: ClassVar[bool] = False
    """Whether :meth:`complete` sends a prompt's images; map functions refuse image tasks otherwise."""

    supports_continue_final_message: ClassVar[bool] = True
    """Whether a prompt can end inside its last message for the model to write on (an assistant prefill,
    Magpie's open user turn): local engines render that text themselves."""

    def __post_init__(self) -> None:
        _check_number("temperature", self.temperature, low=0.0)
        _check_number("top_p", self.top_p, low=0.0, high=1.0)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}.")
        if self.seed is not None and not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int or None, got {type(self.seed).__name__}.")
        object.__setattr__(self, "stop", stop_sequences(self.stop))
        if self.price_per_million is not None:
            price = as_price(self.price_per_million)
            rates = tuple(rate for rate in dataclasses.astuple(price) if rate is not None)
            object.__setattr__(self, "price_per_million", rates)
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

    def preflight(self) -> None:
        """Raise now, before anything is sent, for what would fail every request (a missing key or
        client library). Map functions call it at the start of every batch, so it must be cheap."""

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
        # (generation_kwargs do count: engines check them when they are built).
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in SAMPLING_PARAMETERS
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


def _check_number(name: str, value: Any, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
