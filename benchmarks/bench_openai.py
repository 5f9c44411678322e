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
    """One case in this process: wall seconds, rows/s, CPU ms per row (all threads), peak RSS."""
    cpu = time.process_time()
    if case == "aiohttp":
        elapsed = bare_aiohttp(url, rows, concurrency, retry)
    elif case == "openai-sdk":
        elapsed = bare_openai(url, rows, concurrency, retry)
    else:
        _, transport, mode = case.split(":")
        import datasets  # noqa: F401  (imports are not the map's CPU)

        import mapgen  # noqa: F401

        cpu = time.process_time()
        elapsed = mapgen_map(url, rows, concurrency, transport, mode, batch_size)
    cpu_ms = (time.process_time() - cpu) * 1000 / rows
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": elapsed, "rps": rows / elapsed, "cpu_ms": cpu_ms, "peak_mib": peak_mib}


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
    command = [sys.executable, __file__, "--case", case, "--url", f"{root}/v1", "--rows", str(args.rows)]
    command += ["--concurrency", str(args.concurrency), "--batch-size", str(args.batch_size)]
    command += ["--retry"] if settings["error_rate"] > 0 else []
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
    parser.add_argument("--error-rate", type=float, default=0.1, help="429s in the 429 scenario")
    parser.add_argument("--batch-size", type=int, default=1000, help="ds.map's (datasets' default: 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--retry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child: one case, JSON on stdout
        result = run_case(args.case, args.url, args.rows, args.concurrency, args.retry, args.batch_size)
        print(json.dumps(result))
        return

    cases = args.cases.split(",")
    if cases[0] != "aiohttp":
        cases = ["aiohttp", *[c for c in cases if c != "aiohttp"]]  # every ratio needs its bare loop
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    load = os.getloadavg()
    print(
        f"rows={args.rows} batch_size={args.batch_size} latency={args.latency}s "
        f"max_concurrency={args.concurrency} error_rate={args.error_rate} repeat={args.repeat} "
        f"cores={os.cpu_count()} load average at start={load[0]:.1f}"
    )
    everything: dict[str, list[dict[str, dict]]] = {}
    try:
        wait_until_up(root)
        for name in args.scenarios.split(","):
            settings = scenario_settings(name, args.latency, args.error_rate)
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
