"""The seed rule of the local backends (llama.cpp, Transformers, vLLM): one seed per request.

With a config ``seed``, generation ``i`` of a prompt samples with ``seed + i``, whatever the engine
answered before, in whatever batch or worker: each answer is reproducible on its own. Without one, every
request draws a fresh seed from the operating system's randomness (``secrets``), never from a generator
that a forked ``num_proc`` worker inherits from its parent or that restarts equal in every run: samples
are independent across rows, workers and runs.

Example:
    >>> request_seed(10, 2)
    12
    >>> request_seed(None, 0) != request_seed(None, 0)  # two draws of 31 random bits
    True
"""

from __future__ import annotations

import secrets

SEED_BITS = 31
"""Drawn seeds fit every engine's seed type (llama.cpp's ``uint32``, torch, vLLM) and stay positive."""


def request_seed(seed: int | None, index: int) -> int:
    """The sampling seed of generation ``index`` of a prompt: ``seed + index``, or a fresh random draw."""
    if seed is None:
        return secrets.randbits(SEED_BITS)
    return seed + index
