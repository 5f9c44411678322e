"""Which GPUs a worker uses: rank ``r`` of ``ds.map(fn, num_proc=N, with_rank=True)`` gets the ``r``-th
group of GPUs, set in ``CUDA_VISIBLE_DEVICES`` before the worker's engine initialises CUDA.

Every local backend (``vLLM``, ``TransformersLLM``, ``LlamaCppLLM`` with GPU offload) places itself
through this module, from its ``engine()`` call, inside the worker: the parent process never
initialises CUDA, so ``datasets``' forked workers can.

- The GPUs to share out are, in order: the backend's ``devices=`` list, else the parent's
  ``CUDA_VISIBLE_DEVICES``, else ``0, 1, 2, ...``.
- Rank ``r`` takes the ``r``-th group of ``per_worker`` of them (a model's ``tensor_parallel_size``).
  A device may be listed twice (``devices=[0, 0, 1, 1]``) to put two small workers on one GPU.
- Once a process has initialised CUDA its visible devices cannot change: a second rank handled by the
  same process (``datasets`` may hand a worker two shards) keeps the GPUs it has, with a warning.

Example:
    >>> device_group(1, per_worker=2, available=["0", "1", "2", "3"])
    ('2', '3')
    >>> device_group(0, per_worker=1, available=["4", "6"])
    ('4',)
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import TypedDict

from mapgen.errors import DeviceError

VISIBLE = "CUDA_VISIBLE_DEVICES"


class _State(TypedDict):
    read: bool
    original: tuple[str, ...] | None
    """``CUDA_VISIBLE_DEVICES`` as this process tree found it."""
    bound: tuple[str, ...] | None
    """The GPUs :func:`bind` gave this process."""


_lock = threading.Lock()
_state: _State = {"read": False, "original": None, "bound": None}


def parse_devices(devices: Sequence[int | str] | str | None) -> tuple[str, ...] | None:
    """A device list as strings: ``"0,1"``, ``[0, 1]`` and ``("0", "1")`` are the same; ``None`` stays.

    Example:
        >>> parse_devices("0, 2"), parse_devices([1, 3]), parse_devices(None)
        (('0', '2'), ('1', '3'), None)
    """
    if devices is None:
        return None
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    parsed = tuple(str(item).strip() for item in items)
    if not parsed or any(not item or isinstance(raw, bool) for item, raw in zip(parsed, items, strict=True)):
        raise ValueError(f"devices must list GPU indices or UUIDs, like [0, 1] or '0,1'; got {devices!r}.")
    return parsed


def device_group(
    rank: int,
    *,
    per_worker: int = 1,
    available: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The GPUs of ``rank``: the ``rank``-th group of ``per_worker`` among ``available`` (``0, 1, ...``
    when ``None``, which is when nothing says how many GPUs there are)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be an int >= 0, got {rank!r}.")
    if isinstance(per_worker, bool) or not isinstance(per_worker, int) or per_worker < 1:
        raise ValueError(f"the GPUs per worker must be an int >= 1, got {per_worker!r}.")
    start = rank * per_worker
    if available is None:
        return tuple(str(i) for i in range(start, start + per_worker))
    available = tuple(available)
    if start + per_worker > len(available):
        groups = len(available) // per_worker
        raise DeviceError(
            f"rank {rank} needs GPUs {start} to {start + per_worker - 1} of {list(available)}, but there are "
            f"only {groups} group(s) of {per_worker}: use num_proc={max(groups, 1)} or fewer, or list "
            f"devices= with repeats to share a GPU between workers (devices=[0, 0, 1, 1])."
        )
    return available[start : start + per_worker]


def original_visible() -> tuple[str, ...] | None:
    """``CUDA_VISIBLE_DEVICES`` as this process found it, before :func:`bind` changed it."""
    _refresh()
    return _state["original"]


def bind(
    rank: int | None,
    *,
    per_worker: int = 1,
    devices: Sequence[int | str] | str | None = None,
) -> tuple[str, ...] | None:
    """Give this process the GPUs of ``rank`` (see the module's doc) and return them.

    Sets ``CUDA_VISIBLE_DEVICES`` when CUDA is not yet initialised here. With ``rank=None`` (a map without
    ``with_rank=True``) nothing is set and ``None`` is returned: the engine uses whatever is visible.
    Raises :class:`DeviceError` in a worker forked from a parent that had initialised CUDA.
    """
    check_fork_safe()
    if rank is None:
        return None
    with _lock:
        _refresh()
        listed = parse_devices(devices)
        available = listed if listed is not None else _state["original"]
        group = device_group(rank, per_worker=per_worker, available=available)
        bound = _state["bound"]
        if bound == group:
            return group
        if cuda_initialized():
            current = bound or parse_devices(os.environ.get(VISIBLE))
            warnings.warn(
                f"rank {rank} would use GPU(s) {list(group)}, but this process already initialised CUDA "
                f"on {list(current) if current else 'all visible GPUs'}, which it keeps (CUDA cannot "
                "change devices once started). This happens when datasets hands one worker two shards.",
                RuntimeWarning,
                stacklevel=3,
            )
            return current
        os.environ[VISIBLE] = ",".join(group)
        _state["bound"] = group
        return group


def cuda_initialized() -> bool:
    """Whether this process has initialised CUDA through torch (without importing torch to find out)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "cuda"):
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:
        return False


def check_fork_safe() -> None:
    """Raise :class:`DeviceError` in a process forked after its parent initialised CUDA (such a child
    cannot use CUDA at all)."""
    torch = sys.modules.get("torch")
    bad_fork = getattr(getattr(torch, "cuda", None), "_is_in_bad_fork", None)
    if bad_fork is not None and bad_fork():
        raise DeviceError(
            "This worker was forked from a process that had already initialised CUDA, so it cannot use the "
            "GPU. datasets' num_proc forks its workers: keep the parent process off the GPU (build no GPU "
            "model and move no tensor to 'cuda' before ds.map(..., num_proc=N)); mapgen's backends only "
            "start their engines inside the workers. Or run the map with num_proc=None in this process."
        )


def _refresh() -> None:
    # Read once per process tree: a forked child keeps what its parent found (see _after_fork).
    if not _state["read"]:
        value = os.environ.get(VISIBLE)
        listed = None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())
        _state["original"] = listed
        _state["read"] = True


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _state["bound"] = None  # the child has not initialised CUDA: it may take its own rank's GPUs


os.register_at_fork(after_in_child=_after_fork)


def _reset_for_tests() -> None:
    with _lock:
        _state.update({"read": False, "original": None, "bound": None})
