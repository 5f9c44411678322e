"""Sampling parameters shared by the backends: the seed rule and the typed parameters' checks.

The seed rule of the local backends (llama.cpp, Transformers, vLLM): one seed per request. With a config
``seed``, generation ``i`` of a prompt samples with ``seed + i``, whatever the engine answered before, in
whatever batch or worker: each answer is reproducible on its own. Without one, every request draws a
fresh seed from the operating system's randomness (``secrets``), never from a generator that a forked
``num_proc`` worker inherits from its parent or that restarts equal in every run: samples are
independent across rows, workers and runs.

The typed parameters (``top_k``, ``min_p``, ``stop``, ``presence_penalty``, ``frequency_penalty``,
``repetition_penalty``) are ``None`` by default: the engine's own default, and nothing sent. Each is
checked here once, whatever the backend; a backend that cannot honour one says so at construction.

Example:
    >>> request_seed(10, 2)
    12
    >>> request_seed(None, 0) != request_seed(None, 0)  # two draws of 31 random bits
    True
    >>> stop_sequences(".")
    ('.',)
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

SEED_BITS = 31
"""Drawn seeds fit every engine's seed type (llama.cpp's ``uint32``, torch, vLLM) and stay positive."""

SAMPLING_PARAMETERS = (
    "top_k",
    "min_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)
"""The typed sampling parameters every backend knows, in the order configs list them."""


def request_seed(seed: int | None, index: int) -> int:
    """The sampling seed of generation ``index`` of a prompt: ``seed + index``, or a fresh random draw."""
    if seed is None:
        return secrets.randbits(SEED_BITS)
    return seed + index


def stop_sequences(stop: Any) -> tuple[str, ...] | None:
    """``stop`` as a tuple of non-empty strings (a string is one stop sequence; an empty list is none).

    Raises ``TypeError`` for anything but a string or a sequence of strings, ``ValueError`` for an empty
    string.
    """
    if stop is None:
        return None
    values = (stop,) if isinstance(stop, str) else stop
    if not isinstance(values, Sequence) or not all(isinstance(value, str) for value in values):
        raise TypeError(f"stop must be a string or a list of strings, got {stop!r}.")
    if any(not value for value in values):
        raise ValueError(f"stop sequences must not be empty strings, got {stop!r}.")
    return tuple(values) or None


def check_sampling(values: Mapping[str, Any]) -> None:
    """Check the typed sampling parameters' types and ranges (``None`` always passes).

    ``top_k`` is an int >= 0 (0: no top-k cut); ``min_p`` in [0, 1]; ``presence_penalty`` and
    ``frequency_penalty`` in [-2, 2] (OpenAI's range); ``repetition_penalty`` > 0 (1 is none).
    """
    top_k = values.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be an int >= 1, or 0 for no top-k cut, got {top_k!r}.")
    bounds = {
        "min_p": (0.0, 1.0, "between 0 and 1"),
        "presence_penalty": (-2.0, 2.0, "between -2 and 2"),
        "frequency_penalty": (-2.0, 2.0, "between -2 and 2"),
    }
    for name, (low, high, words) in bounds.items():
        value = values.get(name)
        if value is None:
            continue
        _check_type(name, value)
        if not low <= value <= high:
            raise ValueError(f"{name} must be {words}, got {value!r}.")
    penalty = values.get("repetition_penalty")
    if penalty is not None:
        _check_type("repetition_penalty", penalty)
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 is no penalty), got {penalty!r}.")


def _check_type(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")


def check_generation_kwargs(kwargs: Any, reserved: Sequence[str]) -> None:
    """Check a local backend's ``generation_kwargs``: a mapping of names to values, none of them a
    typed parameter or one the backend sets itself (``reserved``), which would be silently overridden."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise TypeError(f"generation_kwargs must be a mapping of parameter names to values, got {kwargs!r}.")
    typed = sorted(set(kwargs) & {*SAMPLING_PARAMETERS, "repeat_penalty", "stop_strings"})
    if typed:
        raise ValueError(f"pass {typed} as the config's own field(s), not in generation_kwargs.")
    taken = sorted(set(kwargs) & set(reserved))
    if taken:
        raise ValueError(f"generation_kwargs cannot set {taken}: the backend sets them from its config.")
