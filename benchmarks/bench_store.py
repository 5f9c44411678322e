"""Re-running a fully stored generation: time, and requests sent (must be none).

Starts ``tests.servers.fault_server`` (no latency), generates for ``--rows`` rows of an in-memory dataset
(which ``datasets`` never caches, so only the response store can spare the requests), then re-runs the
same script in a fresh process against the same store and reports both times and the server's count.

    .venv/bin/python benchmarks/bench_store.py --rows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys, time, json
import datasets, mapgen
datasets.disable_progress_bars()
url, rows = sys.argv[1], int(sys.argv[2])
ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(rows)]})
fn = mapgen.generate(mapgen.OpenAILLM("m", base_url=url, api_key="none", max_new_tokens=8))
start = time.perf_counter()
out = ds.map(fn, batched=True)
seconds = time.perf_counter() - start
assert out["generations"][-1] == [f"echo: row {rows - 1}"]
print(json.dumps({"seconds": seconds, **mapgen.counters.snapshot()}))
"""


def stats(root: str) -> dict:
    with urllib.request.urlopen(f"{root}/stats") as response:
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    port = 19000 + os.getpid() % 1000
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    env = {**os.environ, "MAPGEN_CACHE_DIR": tempfile.mkdtemp(), "HF_DATASETS_CACHE": tempfile.mkdtemp()}
    try:
        time.sleep(1.5)
        for label in ("cold run", "re-run"):
            before = stats(root)["total"]
            done = subprocess.run(
                [sys.executable, "-c", RUN, f"{root}/v1", str(args.rows)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            sent = stats(root)["total"] - before
            print(
                f"{label:8}  rows={args.rows}  map seconds={result['seconds']:.2f}  "
                f"requests received by the server={sent}  reused from store={result['reused']}"
            )
        store = Path(env["MAPGEN_CACHE_DIR"]) / "responses.sqlite3"
        print(f"store size: {store.stat().st_size / 1e6:.1f} MB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
