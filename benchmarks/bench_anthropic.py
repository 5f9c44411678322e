"""Throughput and CPU per request of AnthropicLLM in ``datasets.map``, against a bare aiohttp loop posting
to the same Anthropic test server in the same run.

Starts ``tests.servers.anthropic_server`` and runs two scenarios, each case in its own subprocess, the
cases interleaved and the whole repeated ``--repeat`` times (3):

- ``throughput``: the server answers after ``--latency`` (100 ms); rows per second, and the ratio to the
  bare loop's (the target: at least 0.9, as for the OpenAI backend);
- ``cpu``: the server answers at once; the client process's CPU time per row, and its ratio.

Cases: ``aiohttp`` (the bare loop: a semaphore and ``asyncio.gather`` posting JSON), ``anthropic-sdk`` (the
same loop through ``anthropic.AsyncAnthropic().messages.create``), and ``mapgen:<transport>:<mode>``:
``generate(AnthropicLLM(..., transport=...))`` in ``ds.map`` (``sync``: ``fn``; ``async``: ``fn.acall``;
``-nostore``: ``cache=False``). Each ratio is taken against the bare loop of the same repetition; the
median over repetitions is printed with the range seen.

    .venv/bin/python benchmarks/bench_anthropic.py                     # 2,000 rows, 100 ms, 64 in flight
    .venv/bin/python benchmarks/bench_anthropic.py --scenarios cpu --cases aiohttp,mapgen:sdk:sync
"""

from __future__ import annotations

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

VERSION = "2023-06-01"


def bare_aiohttp(url: str, rows: int, concurrency: int) -> float:
    import aiohttp

    async def main() -> None:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        headers = {"anthropic-version": VERSION, "x-api-key": "none"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def one(i: int) -> str:
                body = {"model": "m", "messages": [{"role": "user", "content": f"row {i}"}], "max_tokens": 8}
                async with semaphore, session.post(f"{url}/v1/messages", json=body) as response:
                    answer = await response.json()
                    if response.status != 200:
                        raise RuntimeError(response.status)
                    return answer["content"][0]["text"]

            await asyncio.gather(*(one(i) for i in range(rows)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def bare_sdk(url: str, rows: int, concurrency: int) -> float:
    import anthropic

    async def main() -> None:
        client = anthropic.AsyncAnthropic(
            base_url=url,
            api_key="none",
            max_retries=0,
            default_headers={"anthropic-version": VERSION},
            http_client=anthropic.DefaultAioHttpClient(),
        )
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with semaphore:
                answer = await client.messages.create(
                    model="m", messages=[{"role": "user", "content": f"row {i}"}], max_tokens=8
                )
            return answer.content[0].text

        await asyncio.gather(*(one(i) for i in range(rows)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def mapgen_map(url: str, rows: int, concurrency: int, transport: str, mode: str, batch_size: int) -> float:
    import aiohttp  # noqa: F401  (imported before the clock starts, as in the bare loops)
    import datasets

    import mapgen

    datasets.disable_progress_bars()
    llm = mapgen.AnthropicLLM(
        "m", base_url=url, api_key="none", max_concurrency=concurrency, max_new_tokens=8, transport=transport
    )
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


def run_case(case: str, url: str, rows: int, concurrency: int, batch_size: int) -> dict:
    """One case in this process (see :func:`_harness.measure`)."""
    if case == "aiohttp":
        return measure(case, rows, lambda: bare_aiohttp(url, rows, concurrency))
    if case == "anthropic-sdk":
        return measure(case, rows, lambda: bare_sdk(url, rows, concurrency))
    _, transport, mode = case.split(":")
    return measure(
        case, rows, lambda: mapgen_map(url, rows, concurrency, transport, mode, batch_size), imports=True
    )


CASES = ["aiohttp", "mapgen:aiohttp:sync", "mapgen:sdk:sync"]
"""The default cases; ``anthropic-sdk``, ``mapgen:aiohttp:async`` and ``...:sync-nostore`` can be added."""

SCENARIOS = ("throughput", "cpu")


def main() -> None:
    args = _harness.parser(__doc__, SCENARIOS, CASES).parse_args()
    if args.case:  # a child: one case, JSON on stdout
        print(json.dumps(run_case(args.case, args.url, args.rows, args.concurrency, args.batch_size)))
        return
    _harness.main(
        __file__,
        args,
        server="anthropic_server",
        url_path="",
        settings=lambda name: {"latency": 0.0 if name == "cpu" else args.latency},
    )


if __name__ == "__main__":
    main()
