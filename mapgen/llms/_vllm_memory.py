"""How much memory a vLLM engine takes on the CPU build, where ``gpu_memory_utilization`` means RAM.

On vLLM's CPU backend ``gpu_memory_utilization`` is the share of the machine's RAM one engine reserves
(vLLM's ``CPUWorker``: weights, runtime and KV cache together), and vLLM's default of 0.9 can never start
two ``num_proc`` workers, nor one beside anything else. So when the user sets no memory option, mapgen
gives the CPU engine an explicit KV cache (vLLM's ``kv_cache_memory_bytes``) sized by the model: room for
:data:`SEQUENCES` sequences of ``max_model_len`` tokens, capped at :data:`SHARE` of the memory free when
the engine starts (workers that start later find less free, and take their share of that) and at
:data:`MAX_KV_CACHE`. A ``gpu_memory_utilization`` the user sets is checked against the free memory and
the model's size before loading, and refused with a value that would fit.

Sizes are bytes. Sources: vLLM's ``vllm/v1/worker/cpu_worker.py`` (0.32), and the KV cache's size per
token, ``2 (keys and values) x layers x KV heads x head size x bytes per value``.

Example:
    >>> config = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    ...           "hidden_size": 576, "torch_dtype": "bfloat16"}
    >>> kv_bytes_per_token(config)  # SmolLM2-135M
    23040
    >>> cpu_kv_cache_bytes(23040, max_model_len=8192, available=20 * GiB) // MiB
    1440
"""

from __future__ import annotations

from typing import Any

MiB = 2**20
GiB = 2**30
SEQUENCES = 8
"""Full-length sequences the default KV cache holds at once (vLLM schedules more when they are shorter)."""
SHARE = 0.25
"""The most of the free memory one engine's default KV cache takes, leaving the rest to other workers."""
MAX_KV_CACHE = 8 * GiB
RUNTIME = 1.25 * GiB
"""What an engine process holds besides its weights and KV cache (torch, vLLM; measured: 1.2 GiB)."""

_DTYPE_BYTES = {"float32": 4, "float": 4, "float64": 8, "float16": 2, "half": 2, "bfloat16": 2}


def kv_bytes_per_token(config: dict[str, Any], dtype: str = "auto") -> int:
    """Bytes of KV cache one token takes, from a model's ``config.json`` (a text model's; a multimodal
    one's ``text_config``). ``dtype`` is the engine's (``"auto"``: the config's, else 2 bytes).

    Raises:
        ValueError: the config lacks the numbers of layers and heads.
    """
    config = config.get("text_config") or config
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the model's config does not give its layers and heads ({error})") from None
    chosen = dtype if dtype != "auto" else str(config.get("torch_dtype") or config.get("dtype") or "")
    return 2 * layers * kv_heads * head_dim * _DTYPE_BYTES.get(chosen.removeprefix("torch."), 2)


def cpu_kv_cache_bytes(per_token: int, *, max_model_len: int, available: int) -> int:
    """The default KV cache of a CPU engine: :data:`SEQUENCES` sequences of ``max_model_len`` tokens,
    capped at :data:`SHARE` of ``available`` and at :data:`MAX_KV_CACHE`, rounded down to a MiB.

    Raises:
        ValueError: not even one sequence of ``max_model_len`` tokens fits; the message gives the
            ``max_model_len`` that would.
    """
    cap = min(int(available * SHARE), MAX_KV_CACHE)
    one = per_token * max_model_len
    if one > cap:
        fits = cap // per_token
        raise ValueError(
            f"vLLM on the CPU: one sequence of max_model_len={max_model_len} tokens needs a KV cache of "
            f"{one / GiB:.2f} GiB, more than the {cap / GiB:.2f} GiB this engine can take "
            f"({SHARE:.0%} of the {available / GiB:.2f} GiB free); pass max_model_len={fits} or less, or "
            "engine_kwargs={'kv_cache_memory_bytes': ...}."
        )
    return min(one * SEQUENCES, cap) // MiB * MiB


def check_cpu_utilization(fraction: float, *, total: int, available: int, weights: int) -> None:
    """Refuse a ``gpu_memory_utilization`` that cannot start a CPU engine: more than the free memory, or
    too little for the weights and the runtime. The message gives a value that would fit.

    Raises:
        ValueError: ``fraction`` of ``total`` does not fit.

    Example:
        >>> try:
        ...     check_cpu_utilization(0.9, total=24 * GiB, available=20 * GiB, weights=270 * MiB)
        ... except ValueError as error:
        ...     print(str(error).split("; ")[1])
        gpu_memory_utilization=0.1 would fit (or leave it unset: mapgen then sizes the KV cache by the model).
    """
    requested = fraction * total
    needed = weights + RUNTIME
    if needed < requested <= available:
        return
    # The weights and runtime, plus a KV cache of half as much again, rounded up to a hundredth.
    suggestion = -(-needed * 1.5 * 100 // total) / 100
    fits = (
        f"gpu_memory_utilization={suggestion:g} would fit"
        if suggestion * total <= available
        else ("no value fits in the free memory")
    )
    raise ValueError(
        "vLLM on the CPU reads gpu_memory_utilization as the share of RAM one engine reserves: "
        f"{fraction:g} is {requested / GiB:.2f} GiB, but {available / GiB:.2f} GiB are free and this engine "
        f"needs about {needed / GiB:.2f} GiB for its weights and runtime plus its KV cache; {fits} (or "
        "leave it unset: mapgen then sizes the KV cache by the model)."
    )
