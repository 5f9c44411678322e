"""Growth: 1,000,000 rows from a dataset on disk, on the bench server at 0 ms latency, ``batch_size=1000``.

Starts ``tests.servers.fault_server`` (answering at once), writes ``--rows`` rows to disk
(``save_to_disk``), then runs each pass in a fresh process, so that its peak memory is its own:

- ``small``: the first ``--small`` rows (10,000), cold: the time per row to compare with;
- ``cold``: every row, a fresh response store and datasets cache: time, CPU, peak RSS and RSS sampled
  along the way (flat or growing?), store bytes per row;
- ``rerun``: every row again, same store, with ``load_from_cache_file=False`` (so that ``datasets`` does not
  serve the map from its own cache): time, and requests the server saw (none expected);
- ``stream``: every row through ``IterableDataset.map`` (``to_iterable_dataset()``), a fresh store: time,
  peak RSS, and whether its outputs equal the cold pass's (a digest of every row's generation).

Each pass prints one JSON line as it ends (also appended to ``--out``), so a long run's figures survive an
interruption; a summary follows.

    .venv/bin/python benchmarks/bench_growth.py --rows 100000          # a few minutes
    .venv/bin/python benchmarks/bench_growth.py                        # 1M rows: an hour on 2 shared cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSES = ("small", "cold", "rerun", "stream")


def rss_mib() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RSSSampler(threading.Thread):
    """Samples RSS every ``interval`` seconds: ``samples`` is ``[(seconds since start, MiB), ...]``."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval, self.samples, self.start_time = interval, [], time.perf_counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append((time.perf_counter() - self.start_time, rss_mib()))


def digest(rows: object) -> str:
    """SHA-256 over every row's first generation, in order: equal digests, equal outputs."""
    sha = hashlib.sha256()
    for generations in rows:
        sha.update(json.dumps(generations).encode())
    return sha.hexdigest()


def run_pass(name: str, url: str, data: str, rows: int, batch_size: int, concurrency: int) -> dict:
    """One pass in this process (a child); returns its figures."""
    import datasets

    import mapgen

    datasets.disable_progress_bars()
    llm = mapgen.OpenAILLM("m", base_url=url, max_concurrency=concurrency, max_new_tokens=8, max_retries=50)
    fn = mapgen.generate(llm, mapgen.TextGenerationTask())
    ds = datasets.load_from_disk(data)
    if rows < len(ds):
        ds = ds.select(range(rows))
    sampler = RSSSampler()
    rss_before = rss_mib()
    sampler.start()
    cpu, start = time.process_time(), time.perf_counter()
    if name == "stream":  # consuming the stream is the map: the digest is taken as rows come
        stream = ds.to_iterable_dataset().map(fn, batched=True, batch_size=batch_size)
        out_digest = digest(row["generations"] for row in stream)
    else:
        # A dataset on disk keeps its map's cache beside it: not reading it makes the re-run use the store.
        out = ds.map(fn, batched=True, batch_size=batch_size, load_from_cache_file=False)
    seconds = time.perf_counter() - start
    cpu_ms = (time.process_time() - cpu) * 1000 / rows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sampler.stopped.set()
    if name != "stream":  # read back from disk batch by batch, after the peak is taken
        batches = out.select_columns(["generations"]).iter(batch_size=10_000)
        out_digest = digest(g for batch in batches for g in batch["generations"])
    samples = sampler.samples or [(seconds, rss_mib())]
    tenth = next((mib for at, mib in samples if at >= seconds / 10), samples[0][1])
    return {
        "pass": name,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "us_per_row": round(seconds * 1e6 / rows, 1),
        "cpu_ms_per_row": round(cpu_ms, 3),
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_at_10pct": round(tenth, 1),
        "rss_mib_at_end": round(samples[-1][1], 1),
        "peak_rss_mib": round(peak, 1),
        "counters": mapgen.counters.snapshot(),
        "digest": out_digest,
    }


def server_total(root: str) -> int:
    with urllib.request.urlopen(f"{root}/stats") as response:
        return json.load(response)["total"]


def wait_until_up(root: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            server_total(root)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the bench server at {root} did not start within {seconds:g}s") from None
            time.sleep(0.2)


def store_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("responses.sqlite3*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000, help="rows of the pass to compare with")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--passes", default=",".join(PASSES))
    parser.add_argument("--out", help="append each pass's JSON line to this file")
    parser.add_argument(
        "--work", help="a folder for the dataset, stores and caches (default: a temporary one)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_pass(args.child, args.url, args.data, args.rows, args.batch_size, args.concurrency)
        print(json.dumps(result))
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="mapgen-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    port = 20000 + os.getpid() % 1000
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"rows={args.rows} small={args.small} batch_size={args.batch_size} cores={os.cpu_count()} "
        f"load average at start={os.getloadavg()[0]:.1f} work={work}",
        flush=True,
    )
    results: dict[str, dict] = {}
    try:
        data = work / "data"
        if not data.exists():
            import datasets

            datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(args.rows)]}).save_to_disk(data)
        wait_until_up(root)
        for name in args.passes.split(","):
            store = work / (
                "store-stream" if name == "stream" else f"store-{'small' if name == 'small' else 'main'}"
            )
            if name in ("small", "cold", "stream"):
                shutil.rmtree(store, ignore_errors=True)
            hf_cache = Path(tempfile.mkdtemp(dir=work, prefix="hf-"))  # fresh: datasets serves nothing
            env = {**os.environ, "MAPGEN_CACHE_DIR": str(store), "HF_DATASETS_CACHE": str(hf_cache)}
            env.pop("MAPGEN_STORE", None)
            rows = args.small if name == "small" else args.rows
            before = server_total(root)
            command = [sys.executable, __file__, "--child", name, "--url", f"{root}/v1", "--data", str(data)]
            command += ["--rows", str(rows), "--batch-size", str(args.batch_size)]
            command += ["--concurrency", str(args.concurrency)]
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                print(name, "FAILED", done.stderr[-3000:], flush=True)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["server_requests"] = server_total(root) - before
            result["store_bytes_per_row"] = round(store_bytes(store) / rows, 1)
            result["load_average"] = round(os.getloadavg()[0], 1)
            results[name] = result
            shutil.rmtree(hf_cache, ignore_errors=True)
            for cache_file in data.glob("cache-*.arrow"):  # the map's output, written beside the data
                cache_file.unlink()
            line = json.dumps(result)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as out:
                    out.write(line + "\n")
    finally:
        server.terminate()
        server.wait()
    summarize(results)


def summarize(results: dict[str, dict]) -> None:
    small, cold = results.get("small"), results.get("cold")
    if small and cold:
        growth = cold["us_per_row"] / small["us_per_row"]
        print(
            f"time per row: {small['us_per_row']} us at {small['rows']:,} rows, {cold['us_per_row']} us at "
            f"{cold['rows']:,} rows ({growth:.2f}x); peak RSS {small['peak_rss_mib']} vs "
            f"{cold['peak_rss_mib']} MiB; store {cold['store_bytes_per_row']} bytes per row"
        )
    if cold and "rerun" in results:
        rerun = results["rerun"]
        print(
            f"re-run from the store: {rerun['seconds']} s ({rerun['rows_per_s']} rows/s), "
            f"{rerun['server_requests']} requests sent"
        )
    if cold and "stream" in results:
        stream = results["stream"]
        same = "the same outputs" if stream["digest"] == cold["digest"] else "DIFFERENT outputs"
        print(
            f"streaming: {stream['seconds']} s ({stream['rows_per_s']} rows/s), peak RSS "
            f"{stream['peak_rss_mib']} MiB, {same}"
        )


if __name__ == "__main__":
    main()
