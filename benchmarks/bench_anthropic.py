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

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
    """One case in this process: wall seconds, rows/s, CPU ms per row (all threads), peak RSS."""
    cpu = time.process_time()
    if case == "aiohttp":
        elapsed = bare_aiohttp(url, rows, concurrency)
    elif case == "anthropic-sdk":
        elapsed = bare_sdk(url, rows, concurrency)
    else:
        _, transport, mode = case.split(":")
        import datasets  # noqa: F401  (imports are not the map's CPU)

        import mapgen  # noqa: F401

        cpu = time.process_time()
        elapsed = mapgen_map(url, rows, concurrency, transport, mode, batch_size)
    cpu_ms = (time.process_time() - cpu) * 1000 / rows
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": elapsed, "rps": rows / elapsed, "cpu_ms": cpu_ms, "peak_mib": peak_mib}


CASES = ["aiohttp", "mapgen:aiohttp:sync", "mapgen:sdk:sync"]
"""The default cases; ``anthropic-sdk``, ``mapgen:aiohttp:async`` and ``...:sync-nostore`` can be added."""

SCENARIOS = ("throughput", "cpu")


def scenario_settings(name: str, latency: float) -> dict:
    """The Anthropic test server's settings for a scenario."""
    return {"latency": 0.0 if name == "cpu" else latency}


def wait_until_up(root: str, seconds: float = 60.0) -> None:
    """Poll the server's ``/stats`` until it answers (it may start slowly on a busy machine)."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["curl", "-sf", f"{root}/stats"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench server at {root} did not start within {seconds:g}s")
        time.sleep(0.2)


def run_child(root: str, case: str, args: argparse.Namespace, settings: dict) -> dict | None:
    reset = ["curl", "-s", "-X", "POST", f"{root}/reset", "-d", json.dumps(settings)]
    subprocess.run(reset, check=True, capture_output=True)
    # A fresh datasets cache and response store: every case starts cold.
    env = {**os.environ, "HF_DATASETS_CACHE": tempfile.mkdtemp(), "MAPGEN_CACHE_DIR": tempfile.mkdtemp()}
    env.pop("MAPGEN_STORE", None)
    command = [sys.executable, __file__, "--case", case, "--url", root, "--rows", str(args.rows)]
    command += ["--concurrency", str(args.concurrency), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        print(case, "FAILED", done.stderr[-2000:])
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stats = json.loads(subprocess.run(["curl", "-s", f"{root}/stats"], capture_output=True).stdout)
    result["server_requests"] = stats["total"]
    result["max_in_flight"] = stats["max_in_flight"]
    return result


def summarize(name: str, rounds: list[dict[str, dict]], limit: float | None) -> None:
    """Medians over repetitions; each ratio against the bare loop of its own repetition."""
    key, unit, digits = ("cpu_ms", "CPU ms/row", 3) if name == "cpu" else ("rps", "rows/s", 0)
    print(f"\n{name}: median of {len(rounds)} (min-max); ratio to the bare loop of the same repetition")
    print(
        f"{'case':28} {unit:>10} {'range':>15} {'of aiohttp':>11} {'range':>15} {'peak MiB':>9} "
        f"{'requests':>9}"
    )
    cases = list(dict.fromkeys(case for r in rounds for case in r))
    for case in cases:
        runs = [r for r in rounds if case in r and "aiohttp" in r]
        if not runs:
            continue
        values = [r[case][key] for r in runs]
        ratios = [r[case][key] / r["aiohttp"][key] for r in runs]
        median = statistics.median
        print(
            f"{case:28} {median(values):10.{digits}f} {min(values):7.{digits}f}-{max(values):<7.{digits}f} "
            f"{median(ratios):11.3f} "
            f"{min(ratios):7.3f}-{max(ratios):<7.3f} {median(r[case]['peak_mib'] for r in runs):9.0f} "
            f"{int(median(r[case]['server_requests'] for r in runs)):9d}"
        )
    if limit:
        best = statistics.median(r["aiohttp"]["rps"] for r in rounds if "aiohttp" in r)
        print(f"(physical limit {limit:.0f} rows/s; the bare loop reached {best / limit:.1%} of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds, for throughput and 429")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000, help="ds.map's (datasets' default: 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child: one case, JSON on stdout
        result = run_case(args.case, args.url, args.rows, args.concurrency, args.batch_size)
        print(json.dumps(result))
        return

    cases = args.cases.split(",")
    if cases[0] != "aiohttp":
        cases = ["aiohttp", *[c for c in cases if c != "aiohttp"]]  # every ratio needs its bare loop
    port = 19000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.anthropic_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    load = os.getloadavg()
    print(
        f"rows={args.rows} batch_size={args.batch_size} latency={args.latency}s "
        f"max_concurrency={args.concurrency} repeat={args.repeat} "
        f"cores={os.cpu_count()} load average at start={load[0]:.1f}"
    )
    everything: dict[str, list[dict[str, dict]]] = {}
    try:
        wait_until_up(root)
        for name in args.scenarios.split(","):
            settings = scenario_settings(name, args.latency)
            rounds = everything.setdefault(name, [])
            for _ in range(args.repeat):
                results = (run_child(root, case, args, settings) for case in cases)
                rounds.append({r["case"]: r for r in results if r is not None})
            summarize(name, rounds, None if name == "cpu" else args.concurrency / args.latency)
    finally:
        server.terminate()
        server.wait()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": everything}, indent=1))


if __name__ == "__main__":
    main()
