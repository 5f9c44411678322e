"""rpm / tpm limits hold across num_proc workers together, measured at a real server."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import datasets

import mapgen
from mapgen.ratelimit import RateLimiter


def test_rpm_holds_across_num_proc_workers(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.01)
    rpm = 1200  # 20 requests a second, for both workers together
    llm = mapgen.OpenAILLM("rpm-test", base_url=fault_server.base_url, api_key=fault_server.api_key, rpm=rpm)
    ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(40)]})
    out = ds.map(mapgen.generate(llm), batched=True, batch_size=10, num_proc=2)
    assert [g[0] for g in out["generations"]] == [f"echo: row {i}" for i in range(40)]
    times = sorted(fault_server.stats(times=True)["times"])
    assert len(times) == 40
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 0.9 * rpm / 60 <= rate <= 1.1 * rpm / 60, rate


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
