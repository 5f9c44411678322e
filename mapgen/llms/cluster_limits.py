"""One ``rpm``/``tpm`` budget for a whole Ray job: a named actor leases stretches of time in chunks.

On one machine, :class:`mapgen.llms.ratelimit.RateLimiter` spaces requests through a file every ``num_proc``
worker locks. A cluster has no such file, so under Ray the same state (when the next request, and the next
token, is free) lives in one small actor per rate-limit key, :class:`Budget`, named after the key. A
worker does not ask it for every request: it leases a chunk, the next :data:`CHUNK_SECONDS` of the
request clock (``rpm / 60 * CHUNK_SECONDS`` requests) or of the token clock, and spends it locally, one
request at a time, spaced ``60 / rpm`` seconds apart as on one machine. So a request waits for a round
trip once per chunk, and since the actor never leases the same stretch twice, the cluster as a whole
sends at most what the limit allows (plus one request) in any window. A chunk not spent in time expires:
its slots pass unused, at most one chunk per worker. An answer's actual token count corrects the token
clock with the worker's next lease.

Leases are stretches of Unix time (``time.time()``), the clock every process on a machine shares, as
the file of the one-machine limiter does; on several machines their clocks should agree (NTP keeps them
within milliseconds), as they must for any job-wide schedule. So a lease that arrives late loses its
start, it never runs into the next worker's. The actor is detached (a worker that created it may end, or
its node be lost, before the job does), takes no CPU, runs on the driver's node when
:func:`mapgen.ray.map_batches` names it (soft: anywhere else if that fails), is restarted by Ray if its
node is lost, and exits after :data:`IDLE_SECONDS` without a lease. A worker whose lease fails looks the
actor up again (re-creating it if needed); the new actor starts from a blank clock, so chunks leased
before may overlap new ones once, by at most one chunk per worker.

Example (the leasing logic, without Ray; ``now`` in seconds):
    >>> budget = Budget()
    >>> clock = LeasedClock(interval=0.1, chunk=0.5)  # 600 rpm: 5 requests per lease
    >>> clock.take(1, now=0.0) is None  # nothing leased yet: ask the budget for a chunk
    True
    >>> clock.grant(start=0.0, seconds=0.5)
    >>> [round(clock.take(1, now=0.0), 3) for _ in range(5)], clock.take(1, now=0.0)
    ([0.0, 0.1, 0.2, 0.3, 0.4], None)
    >>> budget.lease([0.5, 0.0], now=10.0), budget.lease([0.5, 0.0], now=10.0)  # a second worker waits
    ([10.0, 10.0], [10.5, 10.0])
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from mapgen.runtime.event_loop import pause

CHUNK_SECONDS = 0.25
"""How much of a clock a worker leases at once: fewer round trips against a finer split between workers."""

IDLE_SECONDS = 600.0
"""A budget actor that leased nothing for this long exits (a later lease re-creates it)."""

LEASE_ATTEMPTS = 5
"""How many times a worker looks the actor up again after a failed lease before it raises."""

NODE_ENV = "MAPGEN_RAY_LIMITER_NODE"
"""The Ray node id the budget actors should run on (set by :func:`mapgen.ray.map_batches`: the driver's)."""


class Budget:
    """The shared clocks of one rate-limit key: when the next request and the next token are free.

    Plain Python, run as a Ray actor by :class:`ClusterRateLimiter`; times are Unix seconds.
    """

    def __init__(self) -> None:
        self.free = [0.0, 0.0]  # requests, tokens
        self.last_lease = time.time()

    def lease(self, seconds: Sequence[float], debt: float = 0.0, now: float | None = None) -> list[float]:
        """Reserve ``seconds[i]`` of clock ``i`` (0: requests, 1: tokens) from when it is next free, after
        adding ``debt`` seconds to the token clock (tokens used beyond the estimates, negative when fewer
        were used; a give-back never frees time already past). Return, per clock, when the reserved stretch
        starts (``now`` for a clock not asked for)."""
        now = time.time() if now is None else now
        self.last_lease = now
        if debt > 0:
            self.free[1] = max(self.free[1], now) + debt
        elif debt < 0:
            self.free[1] = max(self.free[1] + debt, now)
        starts = []
        for i, length in enumerate(seconds):
            start = max(now, self.free[i])
            if length > 0:
                self.free[i] = start + length
            starts.append(start)
        return starts

    def idle(self) -> float:
        """Seconds since the last lease."""
        return time.time() - self.last_lease


class LeasedClock:
    """A worker's leased stretch of one clock, spent ``interval`` seconds per unit (request or token).

    ``chunk`` is how many seconds of clock to lease at once (at least one unit's worth).
    """

    def __init__(self, interval: float, chunk: float) -> None:
        self.interval = interval
        self.chunk = max(chunk, interval)
        self.next = 0.0
        self.end = 0.0  # nothing leased
        self.fresh = False  # a stretch granted and not yet spent from
        self.misses = 0  # stretches in a row that arrived too late to hold a request

    def take(self, units: float, now: float) -> float | None:
        """When ``units`` may go (at or after ``now``), spending them; ``None`` when the lease has too little
        left (what is left then expires with the next :meth:`grant`)."""
        start = max(now, self.next)
        finish = start + units * self.interval
        if finish > self.end + 1e-9:
            if self.fresh:  # it came too late: ask for longer stretches until one arrives in time
                self.misses, self.fresh = self.misses + 1, False
            return None
        if self.fresh:
            self.misses, self.fresh = 0, False
        self.next = finish
        return start

    def lease_seconds(self, units: float) -> float:
        """How much clock to lease for a request of ``units``: a chunk, or more for a larger request (with a
        chunk of room for a late answer), doubled for each stretch in a row that arrived too late."""
        needed = units * self.interval
        length = self.chunk if needed <= self.chunk else needed + self.chunk
        return length * 2 ** min(self.misses, 6)

    def grant(self, start: float, seconds: float) -> None:
        """A new stretch from the budget, replacing what was left."""
        self.next, self.end, self.fresh = start, start + seconds, True


def actor_name(key: str) -> str:
    """The budget actor's name for a rate-limit key (hashed: keys hold URLs).

    Example:
        >>> actor_name("openai https://api.openai.com/v1 gpt-4o-mini")[:17]
        'mapgen-ratelimit-'
    """
    return "mapgen-ratelimit-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def job_namespace() -> str:
    """The Ray namespace of this job's budget actors: one per job, whatever namespace the job runs in."""
    import ray

    return f"mapgen-ratelimit-{ray.get_runtime_context().get_job_id()}"


_actor_class: list[Any] = []


def _budget_actor(key: str) -> Any:
    """A handle on the key's budget actor for this job, created if no worker has yet."""
    import ray

    if not _actor_class:

        class BudgetActor(Budget):
            def __init__(self) -> None:
                super().__init__()
                threading.Thread(target=self._expire, name="mapgen-budget-expiry", daemon=True).start()

            def _expire(self) -> None:
                while self.idle() < IDLE_SECONDS:
                    time.sleep(IDLE_SECONDS / 20)
                ray.get_runtime_context().current_actor.exit.remote()

            def exit(self) -> None:
                ray.actor.exit_actor()  # intentional: Ray does not restart it

        _actor_class.append(ray.remote(BudgetActor))
    options: dict[str, Any] = {
        "name": actor_name(key),
        "namespace": job_namespace(),
        "get_if_exists": True,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
    }
    node = os.environ.get(NODE_ENV)
    if node:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
    return _actor_class[0].options(**options).remote()


class ClusterRateLimiter:
    """``rpm``/``tpm`` for every worker of a Ray job together, leased in chunks from one :class:`Budget`
    actor per ``key``; the interface of :class:`mapgen.llms.ratelimit.RateLimiter` (``acquire``, ``correct``).

    Safe for several event loops and threads in one process (leases are applied under a lock, and one
    lease at a time is asked for).
    """

    def __init__(self, key: str, *, rpm: float | None = None, tpm: float | None = None) -> None:
        self.key = key
        self.rpm = rpm
        self.tpm = tpm
        self.requests = LeasedClock(60.0 / rpm, CHUNK_SECONDS) if rpm else None
        self.tokens = LeasedClock(60.0 / tpm, CHUNK_SECONDS) if tpm else None
        self._lock = threading.RLock()  # a lease that is already done calls back on this thread
        self._debt = 0.0  # token seconds used beyond the estimates, sent with the next lease
        self._pending: Any = None  # the lease in flight (a concurrent.futures.Future)
        self._actor: Any = None
        self._failures = 0

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for this request's slot (and ``tokens`` tokens' worth of the token clock); return when the
        slot began (Unix seconds)."""

        while True:
            with self._lock:
                start, pending = self._take(tokens, time.time())
            if start is not None:
                await pause(start - time.time())
                return start
            try:
                await asyncio.wrap_future(pending)
            except Exception as error:  # the actor was lost: look it up again, a few times
                with self._lock:
                    self._failures += 1
                    if self._failures >= LEASE_ATTEMPTS:
                        raise RuntimeError(
                            f"the Ray rate-limit actor for {self.key!r} failed: {error}"
                        ) from None

    def _take(self, tokens: int, now: float) -> tuple[float | None, Any]:
        """Under the lock: the slot's start if both clocks have room (spent), else the lease to wait for."""
        clocks = [(self.requests, 1), (self.tokens, tokens)]
        saved = [(c.next, c.end, c.fresh, c.misses) if c else None for c, _ in clocks]
        starts = [c.take(units, now) if c else now for c, units in clocks]
        if None not in starts:
            return max(s for s in starts if s is not None), None
        # Spend nothing unless both clocks have room: undo the one that did (the short one keeps its misses).
        for (clock, _), state, start in zip(clocks, saved, starts, strict=True):
            if clock is not None and state is not None and start is not None:
                clock.next, clock.end, clock.fresh, clock.misses = state
        if self._pending is None or self._pending.done():
            pairs = zip(clocks, starts, strict=True)
            self._lease([c.lease_seconds(u) if c and s is None else 0.0 for (c, u), s in pairs])
        return None, self._pending

    def _lease(self, seconds: list[float]) -> None:
        """Under the lock: ask the actor for ``seconds`` of each clock; the answer is applied as it lands."""
        if self._actor is None:
            self._actor = _budget_actor(self.key)
        debt, self._debt = self._debt, 0.0
        future = self._pending = self._actor.lease.remote(seconds, debt).future()

        def apply(done: Any) -> None:
            with self._lock:
                if done.exception() is not None:
                    self._actor = None
                    self._debt += debt
                    return
                self._failures = 0
                for clock, length, start in zip(
                    (self.requests, self.tokens), seconds, done.result(), strict=True
                ):
                    if clock is not None and length > 0:
                        clock.grant(start, length)

        future.add_done_callback(apply)

    def correct(self, tokens: int) -> None:
        """Add ``tokens`` (negative to give back) to the token clock, with the next lease."""
        if self.tokens is None or not tokens:
            return
        with self._lock:
            self._debt += tokens * self.tokens.interval
