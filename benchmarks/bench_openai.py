"""CPU per request and throughput of OpenAILLM in ``datasets.map``, against a bare aiohttp loop run beside it.

Starts ``tests.servers.fault_server`` and runs three scenarios, each case in its own subprocess (so peak
memory and CPU time are its own), the cases interleaved and the whole repeated ``--repeat`` times (3):

- ``cpu``: the server answers at once (0 ms); the figure is the client process's CPU time (every thread,
  ``time.process_time``) per row, and its ratio to the bare loop's;
- ``throughput``: the server answers after ``--latency`` (100 ms); rows per second, and the ratio to the
  bare loop's;
- ``429``: the same, with ``--error-rate`` (10%) of requests answered 429 ``Retry-After: 0``.

Each ratio is taken against the bare loop of the same repetition, then the median over repetitions is
printed (the machine is shared: a ratio measured side by side is what counts), with the range seen.

    .venv/bin/python benchmarks/bench_openai.py                       # 2,000 rows, 100 ms, 64 in flight
    .venv/bin/python benchmarks/bench_openai.py --scenarios throughput --latency 1 --concurrency 256
    .venv/bin/python benchmarks/bench_openai.py --batch-size 2000     # one batch: no window drain
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness  # noqa: E402
from _harness import measure  # noqa: E402


def bare_aiohttp(url: str, rows: int, concurrency: int, retry: bool) -> float:
    import aiohttp

    async def main() -> None:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> str:
                body = {"model": "m", "messages": [{"role": "user", "content": f"row {i}"}], "max_tokens": 8}
                while True:
                    async with semaphore, session.post(f"{url}/chat/completions", json=body) as response:
                        answer = await response.json()
                        if response.status == 200:
                            return answer["choices"][0]["message"]["content"]
                    if not retry:
                        raise RuntimeError(response.status)

            await asyncio.gather(*(one(i) for i in range(rows)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def bare_openai(url: str, rows: int, concurrency: int, retry: bool) -> float:
    import openai

    async def main() -> None:
        client = openai.AsyncOpenAI(
            base_url=url, api_key="none", max_retries=0, http_client=openai.DefaultAioHttpClient()
        )
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            while True:
                try:
                    async with semaphore:
                        answer = await client.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": f"row {i}"}], max_tokens=8
                        )
                    return answer.choices[0].message.content
                except openai.RateLimitError:
                    if not retry:
                        raise

        await asyncio.gather(*(one(i) for i in range(rows)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def mapgen_map(url: str, rows: int, concurrency: int, transport: str, mode: str, batch_size: int) -> float:
    import aiohttp  # noqa: F401  (imported before the clock starts, as in the bare loops)
    import datasets

    import mapgen

    datasets.disable_progress_bars()
    llm = mapgen.OpenAILLM(
        "m", base_url=url, max_concurrency=concurrency, max_new_tokens=8, transport=transport, max_retries=50
    )
    # The response store is on by default; `:nostore` measures what it costs.
    fn = mapgen.generate(llm, mapgen.TextGenerationTask(), cache=not mode.endswith("nostore"))
    ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(rows)]})
    start = time.perf_counter()
    if mode.startswith("async"):
        out = ds.map(fn.acall, batched=True, batch_size=batch_size, load_from_cache_file=False)
    else:
        out = ds.map(fn, batched=True, batch_size=batch_size, load_from_cache_file=False)
    elapsed = time.perf_counter() - start
    texts = [g[0] for g in out["generations"]]
    wrong = sum(t != f"echo: row {i}" for i, t in enumerate(texts))
    if wrong:
        raise SystemExit(f"{wrong} rows wrong: {out['generation_errors'][:3]}")
    return elapsed


def run_case(case: str, url: str, rows: int, concurrency: int, retry: bool, batch_size: int) -> dict:
    """One case in this process (see :func:`_harness.measure`)."""
    if case == "aiohttp":
        return measure(case, rows, lambda: bare_aiohttp(url, rows, concurrency, retry))
    if case == "openai-sdk":
        return measure(case, rows, lambda: bare_openai(url, rows, concurrency, retry))
    _, transport, mode = case.split(":")
    return measure(
        case, rows, lambda: mapgen_map(url, rows, concurrency, transport, mode, batch_size), imports=True
    )


CASES = ["aiohttp", "mapgen:aiohttp:sync", "mapgen:aiohttp:sync-nostore", "mapgen:aiohttp:async"]
"""The default cases; ``openai-sdk`` (the SDK's typed loop) and ``mapgen:sdk:sync`` can be added."""

SCENARIOS = ("cpu", "throughput", "429")


def scenario_settings(name: str, latency: float, error_rate: float) -> dict:
    """The fault server's settings for a scenario."""
    if name == "cpu":
        return {"latency": 0.0, "error_rate": 0.0, "retry_after": "0"}
    if name == "throughput":
        return {"latency": latency, "error_rate": 0.0, "retry_after": "0"}
    return {"latency": latency, "error_rate": error_rate, "retry_after": "0"}


def main() -> None:
    parser = _harness.parser(__doc__, SCENARIOS, CASES)
    parser.add_argument("--error-rate", type=float, default=0.1, help="429s in the 429 scenario")
    parser.add_argument("--retry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child: one case, JSON on stdout
        result = run_case(args.case, args.url, args.rows, args.concurrency, args.retry, args.batch_size)
        print(json.dumps(result))
        return
    _harness.main(
        __file__,
        args,
        server="fault_server",
        url_path="/v1",
        settings=lambda name: scenario_settings(name, args.latency, args.error_rate),
        child_args=lambda name: ["--retry"] if name == "429" else [],
        described=f" error_rate={args.error_rate}",
    )


if __name__ == "__main__":
    main()
