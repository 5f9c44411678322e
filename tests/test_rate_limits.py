"""rpm / tpm limits hold across num_proc workers together, measured at a real server; the leasing that holds
them for a Ray job (tests/test_ray.py runs it on a cluster) keeps every worker's stretch apart."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time

import datasets
import pytest

import mapgen
from mapgen.llms.cluster_limits import Budget, ClusterRateLimiter, LeasedClock
from mapgen.llms.ratelimit import SCOPE_ENV, RateLimiter, rate_limiter


def test_rpm_holds_across_num_proc_workers(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.01)
    rpm = 1200  # 20 requests a second, for both workers together
    llm = mapgen.OpenAILLM("rpm-test", base_url=fault_server.base_url, api_key=fault_server.api_key, rpm=rpm)
    ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(40)]})
    out = ds.map(mapgen.generate(llm), batched=True, batch_size=10, num_proc=2)
    assert [g[0] for g in out["generations"]] == [f"echo: row {i}" for i in range(40)]
    times = sorted(fault_server.stats(times=True)["times"])
    assert len(times) == 40
    # Server-side arrival times, bounded generously: on a busy machine a request may reach the server late
    # (never early: the first ones wait for the client to start, then land together), which shortens the
    # span a little. Without a shared limit, both workers would send everything within a fraction of a
    # second (each worker limited alone: in half the span).
    span = times[-1] - times[0]
    assert span >= 0.6 * (len(times) - 1) / (rpm / 60), span


def _acquire_tokens(directory: str, starts) -> None:
    limiter = RateLimiter("tpm-test", tpm=6000, directory=directory)

    async def run() -> None:
        for _ in range(10):
            await limiter.acquire(10)
            starts.append(time.time())

    asyncio.run(run())


def test_tpm_holds_across_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        starts = manager.list()
        workers = [context.Process(target=_acquire_tokens, args=(str(tmp_path), starts)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        times = sorted(starts)
    assert len(times) == 20
    # 6000 tokens a minute = 100 a second: each 10-token request takes a tenth of a second of budget
    tokens_per_second = 10 * (len(times) - 1) / (times[-1] - times[0])
    assert 90 <= tokens_per_second <= 110, tokens_per_second


def test_actual_usage_corrects_the_estimate(tmp_path):
    limiter = RateLimiter("correct", tpm=60, directory=tmp_path)  # one token a second
    first = limiter.reserve(5)
    limiter.correct(-4)  # it used one token, not five
    assert limiter.reserve(1) - first < 1.5


def test_leased_chunks_never_overlap_across_workers():
    """Three workers spend one budget at 600 rpm, leasing 5 slots at a time, with requests arriving at
    uneven times: every slot handed out is a tenth of a second from every other, and chunks left unspent
    expire rather than bunch up."""
    budget, interval = Budget(), 0.1
    clocks = [LeasedClock(interval, chunk=0.5) for _ in range(3)]
    slots, now = [], 1000.0
    for step in range(300):
        now += 0.013 * (step % 7)  # requests come unevenly; some workers fall behind their lease
        clock = clocks[step % 3]
        start = clock.take(1, now)
        if start is None:
            (begins, _) = budget.lease([clock.lease_seconds(1), 0.0], now=now)
            clock.grant(begins, clock.lease_seconds(1))
            start = clock.take(1, now)
        assert start is not None and start >= now
        slots.append(start)
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= interval - 1e-9
    assert len(slots) / (slots[-1] - slots[0]) <= 1 / interval  # never above 10 a second


def test_a_late_lease_expires_and_the_next_is_longer():
    clock = LeasedClock(interval=0.01, chunk=0.25)  # 100 tokens a second
    assert clock.lease_seconds(10) == 0.25  # a chunk holds it
    assert clock.lease_seconds(100) == 1.0 + 0.25  # larger than a chunk: room for it and a late arrival
    clock.grant(start=10.0, seconds=clock.lease_seconds(100))
    assert clock.take(100, now=10.2) == 10.2  # arrived a little late: still fits
    clock.grant(start=20.0, seconds=0.25)
    assert clock.take(10, now=25.0) is None  # arrived after its stretch: it expires unspent...
    assert clock.lease_seconds(10) == 0.5  # ...and the next lease is twice as long
    clock.grant(start=30.0, seconds=0.5)
    assert clock.take(10, now=30.3) == 30.3
    assert clock.lease_seconds(10) == 0.25  # in time again: back to a chunk


def test_token_usage_corrects_the_shared_clock():
    budget = Budget()
    assert budget.lease([0.0, 1.0], now=100.0) == [100.0, 100.0]
    assert budget.lease([0.0, 1.0], debt=2.0, now=100.0) == [100.0, 103.0]  # 2 s of tokens over the estimate
    assert budget.lease([0.0, 1.0], debt=-3.5, now=100.0) == [100.0, 100.5]  # given back
    assert budget.lease([0.0, 1.0], debt=-10.0, now=100.0) == [100.0, 100.0]  # never before now
    limiter = ClusterRateLimiter("k", tpm=60)  # one token a second
    limiter.correct(-4)
    limiter.correct(1)
    assert limiter._debt == -3.0  # sent with the next lease
    assert ClusterRateLimiter("k", rpm=60)._debt == 0.0


def test_the_limiter_follows_the_scope(monkeypatch):
    assert isinstance(rate_limiter("scope", rpm=60), RateLimiter)  # not a Ray worker: this machine's
    monkeypatch.setenv(SCOPE_ENV, "ray")
    limiter = rate_limiter("scope", rpm=60, tpm=600)
    assert isinstance(limiter, ClusterRateLimiter) and (limiter.rpm, limiter.tpm) == (60, 600)
    monkeypatch.setenv(SCOPE_ENV, "machine")
    assert isinstance(rate_limiter("scope", rpm=60), RateLimiter)
    monkeypatch.setenv(SCOPE_ENV, "cluster")
    with pytest.raises(ValueError, match="'machine' or 'ray'"):
        rate_limiter("scope", rpm=60)
