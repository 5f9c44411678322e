"""Throughput of OpenAILLM in ``datasets.map`` against a local OpenAI-compatible server with fixed latency.

Starts ``tests.servers.fault_server`` (answers after ``--latency`` seconds; optionally 10% 429s with
``Retry-After: 0``), then runs each case in its own subprocess (so peak memory is its own) and prints
requests/s, the ratio to the physical limit (``max_concurrency / latency``) and to a bare aiohttp loop
with a semaphore measured in the same run, and peak RSS.

    .venv/bin/python benchmarks/bench_openai.py                       # 100 ms, 2,000 rows, 64 in flight
    .venv/bin/python benchmarks/bench_openai.py --latency 1 --concurrency 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def mapgen_map(url: str, rows: int, concurrency: int, transport: str, mode: str) -> float:
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
        out = ds.map(fn.acall, batched=True, load_from_cache_file=False)
    else:
        out = ds.map(fn, batched=True, load_from_cache_file=False)
    elapsed = time.perf_counter() - start
    texts = [g[0] for g in out["generations"]]
    wrong = sum(t != f"echo: row {i}" for i, t in enumerate(texts))
    if wrong:
        raise SystemExit(f"{wrong} rows wrong: {out['generation_errors'][:3]}")
    return elapsed


def run_case(case: str, url: str, rows: int, concurrency: int, retry: bool) -> dict:
    if case == "aiohttp":
        elapsed = bare_aiohttp(url, rows, concurrency, retry)
    elif case == "openai-sdk":
        elapsed = bare_openai(url, rows, concurrency, retry)
    else:
        _, transport, mode = case.split(":")
        elapsed = mapgen_map(url, rows, concurrency, transport, mode)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": elapsed, "rps": rows / elapsed, "peak_mib": peak_mib}


CASES = [
    "aiohttp",
    "openai-sdk",
    "mapgen:aiohttp:sync",
    "mapgen:aiohttp:sync-nostore",
    "mapgen:aiohttp:async",
    "mapgen:sdk:sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child: one case, JSON on stdout
        result = run_case(args.case, args.url, args.rows, args.concurrency, args.error_rate > 0)
        print(json.dumps(result))
        return

    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        time.sleep(1.5)
        settings = {"latency": args.latency, "error_rate": args.error_rate, "retry_after": "0"}
        limit = args.concurrency / args.latency
        print(
            f"rows={args.rows} latency={args.latency}s max_concurrency={args.concurrency} "
            f"error_rate={args.error_rate} physical limit={limit:.0f} req/s, cores={os.cpu_count()}"
        )
        results: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for case in args.cases.split(","):
                subprocess.run(
                    ["curl", "-s", "-X", "POST", f"{root}/reset", "-d", json.dumps(settings)],
                    check=True,
                    capture_output=True,
                )
                # A fresh datasets cache and response store: every case starts cold.
                env = {
                    **os.environ,
                    "HF_DATASETS_CACHE": tempfile.mkdtemp(),
                    "MAPGEN_CACHE_DIR": tempfile.mkdtemp(),
                }
                command = [sys.executable, __file__, "--case", case, "--url", f"{root}/v1"]
                command += ["--rows", str(args.rows), "--concurrency", str(args.concurrency)]
                command += ["--error-rate", str(args.error_rate)]
                done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
                if done.returncode:
                    print(case, "FAILED", done.stderr[-2000:])
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                stats = json.loads(
                    subprocess.run(["curl", "-s", f"{root}/stats"], capture_output=True).stdout
                )
                result["server_requests"] = stats["total"]
                result["max_in_flight"] = stats["max_in_flight"]
                results.setdefault(case, []).append(result)
        base = max(r["rps"] for r in results.get("aiohttp", [{"rps": float("nan")}]))
        print(
            f"{'case':24} {'req/s':>8} {'of limit':>9} {'of aiohttp':>11} {'peak MiB':>9} "
            f"{'requests':>9} {'max in flight':>14}"
        )
        for case, runs in results.items():
            best = max(runs, key=lambda r: r["rps"])
            print(
                f"{case:24} {best['rps']:8.0f} {best['rps'] / limit:9.1%} {best['rps'] / base:11.1%} "
                f"{best['peak_mib']:9.0f} {best['server_requests']:9d} {best['max_in_flight']:14d}"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
