"""Requests-per-minute and tokens-per-minute limits shared by every process on the machine.

A provider's rate limit is per account, not per ``num_proc`` worker, so the limiter's state lives in a small
file that all workers lock (``fcntl.flock``) for the few microseconds it takes to reserve a slot. The state
is the next free time for a request and for a token (the "generic cell rate algorithm"): a request is sent
at ``max(now, next_free)``, which then moves ``60 / rpm`` seconds on (and ``tokens * 60 / tpm`` for the
token limit). Requests are thus spaced evenly, whatever the number of workers; an answer's actual token
count corrects the estimate reserved before it was sent.

On Ray the workers of one job run on several machines, so :func:`rate_limiter` (what the API backends call)
hands out :class:`mapgen.llms.cluster_limits.ClusterRateLimiter` there instead: the same clocks, held by
one actor per key for the whole job. It is chosen when ``$MAPGEN_RATE_LIMIT_SCOPE`` is ``ray`` (set by
:func:`mapgen.ray.map_batches` for its actors), or, with the variable unset, in any process that Ray
started (a task or actor of a connected job); ``machine`` forces this module's file-based limiter.

Example:
    >>> import asyncio, tempfile, time
    >>> limiter = RateLimiter("doctest", rpm=600, directory=tempfile.mkdtemp())
    >>> async def five():
    ...     for _ in range(5):
    ...         await limiter.acquire()
    >>> start = time.time(); asyncio.run(five()); 0.35 < time.time() - start < 0.6  # 10 per second
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from mapgen.llms.cluster_limits import ClusterRateLimiter
from mapgen.runtime.event_loop import pause

_STATE = struct.Struct("<dd")  # next free time for a request, and for a token (Unix seconds)


SCOPE_ENV = "MAPGEN_RATE_LIMIT_SCOPE"
"""``machine`` (one limit per machine, shared by its processes) or ``ray`` (one per Ray job); unset: auto."""


class Limiter(Protocol):
    """What the API backends use of a limiter: this machine's :class:`RateLimiter` or a Ray job's."""

    rpm: float | None
    tpm: float | None

    async def acquire(self, tokens: int = 0) -> float: ...

    def correct(self, tokens: int) -> None: ...


def rate_limiter(key: str, *, rpm: float | None = None, tpm: float | None = None) -> Limiter:
    """The limiter for ``key`` in this process: one Ray job's, under Ray, else this machine's (see the
    module docs for the choice). Raises ``ValueError`` for a bad ``$MAPGEN_RATE_LIMIT_SCOPE``.

    Example:
        >>> type(rate_limiter("doctest", rpm=60)).__name__  # not a Ray worker
        'RateLimiter'
    """
    scope = os.environ.get(SCOPE_ENV, "").strip().lower()
    if scope not in ("", "machine", "ray"):
        raise ValueError(f"${SCOPE_ENV} must be 'machine' or 'ray', got {scope!r}.")
    if scope == "ray" or (not scope and in_ray_worker()):
        return ClusterRateLimiter(key, rpm=rpm, tpm=tpm)
    return RateLimiter(key, rpm=rpm, tpm=tpm)


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (a task or actor) of a connected job; Ray is never imported."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"mapgen-ratelimit-{os.getuid()}"


class RateLimiter:
    """Spaces requests (``rpm``) and tokens (``tpm``) evenly across all processes that share ``key``.

    ``key`` names what the provider limits (base URL and model); it is hashed into a file name under
    ``directory`` (a per-user temporary folder by default). Either limit may be ``None``.
    """

    def __init__(
        self,
        key: str,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}.")
        self.rpm = rpm
        self.tpm = tpm
        self.request_interval = 60.0 / rpm if rpm else 0.0
        self.token_interval = 60.0 / tpm if tpm else 0.0
        folder = Path(directory) if directory is not None else default_directory()
        self.path = folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".state")
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        # A descriptor opened before a fork shares its flock with the child: open one per process.
        if self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        assert self._fd is not None
        return self._fd

    @contextlib.contextmanager
    def _state(self) -> Iterator[list[float]]:
        """The shared state as ``[next_request, next_token]``, locked; written back on exit."""
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, _STATE.size, 0)
            state = list(_STATE.unpack(raw)) if len(raw) == _STATE.size else [0.0, 0.0]
            yield state
            os.pwrite(fd, _STATE.pack(*state), 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def reserve(self, tokens: int = 0) -> float:
        """Reserve the next slot for one request of about ``tokens`` tokens; return when it starts."""
        with self._state() as state:
            next_request, next_token = state
            now = time.time()
            start = max(now, next_request if self.rpm else now, next_token if self.tpm else now)
            if self.rpm:
                state[0] = start + self.request_interval
            if self.tpm:
                state[1] = max(next_token, start) + tokens * self.token_interval
        return start

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for this request's slot; return when it began (Unix seconds)."""

        start = self.reserve(tokens)
        await pause(start - time.time())
        return start

    def correct(self, tokens: int) -> None:
        """Add ``tokens`` (negative to give back) to the token budget already reserved, once an answer's
        actual usage is known."""
        if not self.tpm or not tokens:
            return
        with self._state() as state:
            state[1] += tokens * self.token_interval
