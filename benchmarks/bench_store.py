"""The response store's cost: ``put`` per answer on each backend, and a re-run served from the store.

1. ``put``: ``--puts`` answers (about 300 bytes of text each) stored one by one, as ``on_complete`` does;
   reported per answer: CPU on the caller's thread (what an event loop receiving answers pays), CPU of the
   whole process (the writer thread included), and wall time until the last answer is committed.
2. A map: starts ``tests.servers.fault_server`` (no latency), generates for ``--rows`` rows of an
   in-memory dataset (which ``datasets`` never caches, so only the response store can spare the
   requests), then re-runs the same script in a fresh process against the same store; reports both
   times, the server's count, and the store's size.

Each part runs on SQLite and on PostgreSQL (``--postgres URL``, else a throwaway server started like the
tests start theirs; skipped when PostgreSQL is not installed).

    .venv/bin/python benchmarks/bench_store.py --rows 10000 --puts 20000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def bench_put(url: str, n: int) -> str:
    from mapgen.core.request import Completion
    from mapgen.store import open_store

    store = open_store(url)
    len(store)  # connect and set up first
    answers = [
        Completion(text=f"answer {i}: " + "lorem ipsum " * 25, finish_reason="stop", prompt_tokens=31,
                   completion_tokens=64)
        for i in range(n)
    ]  # fmt: skip
    keys = [hashlib.sha256(f"bench {url} {i}".encode()).hexdigest() for i in range(n)]
    thread, process, wall = time.thread_time(), time.process_time(), time.perf_counter()
    for key, answer in zip(keys, answers, strict=True):
        store.put(key, answer)
    thread = time.thread_time() - thread
    store.flush()
    process, wall = time.process_time() - process, time.perf_counter() - wall
    assert len(store.get_many(keys[-10:])) == 10
    per = 1e3 / n
    return (
        f"put x{n}: caller's thread {thread * per:.4f} ms CPU/answer, process {process * per:.4f} ms "
        f"CPU/answer, all committed after {wall * per:.4f} ms/answer wall"
    )


def bench_map(url: str, rows: int) -> list[str]:
    port = 19000 + os.getpid() % 1000
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fault_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    env = {**os.environ, "MAPGEN_STORE": url, "HF_DATASETS_CACHE": tempfile.mkdtemp()}
    lines = []
    try:
        deadline = time.monotonic() + 60
        while True:  # until the server answers
            try:
                stats(root)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for label in ("cold run", "re-run"):
            before = stats(root)["total"]
            done = subprocess.run(
                [sys.executable, "-c", RUN, f"{root}/v1", str(rows)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            sent = stats(root)["total"] - before
            lines.append(
                f"{label:8}  rows={rows}  map seconds={result['seconds']:.2f}  "
                f"requests received by the server={sent}  reused from store={result['reused']}"
            )
    finally:
        server.terminate()
        server.wait()
    from mapgen.store import open_store

    store = open_store(url)
    lines.append(f"store size: {store.size_bytes() / 1e6:.1f} MB ({store.size_bytes() / rows:.0f} bytes/row)")
    return lines


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[Callable[[], str] | None]:
    """A maker of empty databases' URLs (``url`` itself, when given), or ``None`` without PostgreSQL."""
    if url:
        yield lambda: url
        return
    from tests.servers.postgres import postgres_binary, running_postgres

    if postgres_binary("initdb") is None:
        yield None
        return
    with running_postgres() as server:
        yield server.new_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--postgres", help="postgresql://... (default: a throwaway server)")
    args = parser.parse_args()
    with postgres(args.postgres) as new_database:
        backends = {
            "sqlite": lambda: f"sqlite:///{tempfile.mkdtemp()}/responses.sqlite3",
            "postgresql": new_database,
        }
        for name, new_url in backends.items():
            if new_url is None:
                print(f"{name}: skipped (PostgreSQL is not installed)")
                continue
            print(f"== {name}")
            if args.puts:
                print(bench_put(new_url(), args.puts))
            if args.rows:
                for line in bench_map(new_url(), args.rows):
                    print(line)


if __name__ == "__main__":
    main()
