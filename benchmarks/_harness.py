"""What the API benchmarks share: a test server started beside them, each case in its own subprocess (so
its CPU time and peak memory are its own), the cases interleaved and repeated, and medians of ratios to
the bare loop of the same repetition (the machine is shared: a ratio measured side by side is what counts).

A benchmark script gives its server module, its scenarios' server settings and a ``run_case`` for one case
in the child; :func:`main` does the rest (``bench_openai.py``, ``bench_anthropic.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(case: str, rows: int, run: Callable[[], float], *, imports: bool = False) -> dict:
    """Run one case in this process: wall seconds (what ``run`` returns), rows/s, CPU ms per row (all
    threads), peak RSS. With ``imports``, ``datasets`` and ``mapgen`` are imported before the CPU clock
    starts (imports are not the map's CPU)."""
    if imports:
        import datasets  # noqa: F401

        import mapgen  # noqa: F401
    cpu = time.process_time()
    elapsed = run()
    cpu_ms = (time.process_time() - cpu) * 1000 / rows
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "seconds": elapsed, "rps": rows / elapsed, "cpu_ms": cpu_ms, "peak_mib": peak_mib}


def parser(doc: str, scenarios: Sequence[str], cases: Sequence[str]) -> argparse.ArgumentParser:
    """The options every API benchmark takes (a script adds its own)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds, for the scenarios with latency")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000, help="ds.map's (datasets' default: 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(scenarios))
    parser.add_argument("--cases", default=",".join(cases))
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser


def wait_until_up(root: str, seconds: float = 60.0) -> None:
    """Poll the server's ``/stats`` until it answers (it may start slowly on a busy machine)."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["curl", "-sf", f"{root}/stats"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench server at {root} did not start within {seconds:g}s")
        time.sleep(0.2)


def run_child(script: str, url: str, root: str, case: str, args: argparse.Namespace, settings: dict,
              extra: Sequence[str] = ()) -> dict | None:  # fmt: skip
    """One case in a fresh process (cold datasets cache and response store), and what the server saw."""
    reset = ["curl", "-s", "-X", "POST", f"{root}/reset", "-d", json.dumps(settings)]
    subprocess.run(reset, check=True, capture_output=True)
    env = {**os.environ, "HF_DATASETS_CACHE": tempfile.mkdtemp(), "MAPGEN_CACHE_DIR": tempfile.mkdtemp()}
    env.pop("MAPGEN_STORE", None)
    command = [sys.executable, script, "--case", case, "--url", url, "--rows", str(args.rows)]
    command += ["--concurrency", str(args.concurrency), "--batch-size", str(args.batch_size), *extra]
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
    for case in dict.fromkeys(case for r in rounds for case in r):
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


def main(
    script: str,
    args: argparse.Namespace,
    *,
    server: str,
    url_path: str,
    settings: Callable[[str], dict],
    child_args: Callable[[str], Sequence[str]] = lambda _: (),
    described: str = "",
) -> None:
    """Start ``server`` (a module of ``tests.servers``), run every scenario's cases ``--repeat`` times,
    interleaved, and print the summaries. ``settings(scenario)`` is the server's settings for a scenario,
    ``child_args(scenario)`` extra arguments for its children; the children post to ``root + url_path``."""
    cases = args.cases.split(",")
    if cases[0] != "aiohttp":
        cases = ["aiohttp", *[c for c in cases if c != "aiohttp"]]  # every ratio needs its bare loop
    port = 18000 + os.getpid() % 2000
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.servers.{server}", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    print(
        f"rows={args.rows} batch_size={args.batch_size} latency={args.latency}s "
        f"max_concurrency={args.concurrency}{described} repeat={args.repeat} "
        f"cores={os.cpu_count()} load average at start={os.getloadavg()[0]:.1f}"
    )
    everything: dict[str, list[dict[str, dict]]] = {}
    try:
        wait_until_up(root)
        for name in args.scenarios.split(","):
            rounds = everything.setdefault(name, [])
            for _ in range(args.repeat):
                results = (
                    run_child(script, root + url_path, root, case, args, settings(name), child_args(name))
                    for case in cases
                )
                rounds.append({r["case"]: r for r in results if r is not None})
            summarize(name, rounds, None if name == "cpu" else args.concurrency / args.latency)
    finally:
        process.terminate()
        process.wait()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": everything}, indent=1))
