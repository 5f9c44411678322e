"""mapgen's own CPU per request, without the network: where it goes, layer by layer.

The HTTP client is replaced by a stand-in that JSON-encodes the body, yields to the loop once and decodes a
canned chat completion (so no server shares the cores, and the figures are steadier than
``bench_openai.py``'s); everything else is mapgen's code. Rows are sent in batches of 1,000, in one
process, the layers interleaved and repeated; the medians of CPU microseconds per request are printed:

- ``bare loop``: a semaphore and ``asyncio.gather`` over the stand-in (the shape of the bare aiohttp loop);
- ``llm.complete``: the API backend (workers, retries, rate limits, answer checks), on mapgen's loop thread;
- ``fn, cache=False``: the whole map function called on a batch (prompts, columns, parsing), no store;
- ``fn, store``: the same with the response store (keys, look-up, claims, a commit per answer);
- ``fn, store without put``: the same with ``ResponseStore.put`` doing nothing: the rest is what ``put``
  costs.

    .venv/bin/python benchmarks/bench_overhead.py --rows 4000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["MAPGEN_CACHE_DIR"] = tempfile.mkdtemp()

import datasets

import mapgen
import mapgen.store
from mapgen.core.request import Request

ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "echo"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }
)


async def stand_in_post(body: dict) -> dict:
    """What the HTTP client does with mapgen's data, minus the socket: encode, yield, decode."""
    json.dumps(body).encode()
    await asyncio.sleep(0)
    return json.loads(ANSWER)


class StandInLLM(mapgen.OpenAILLM):
    """``OpenAILLM`` posting to :func:`stand_in_post` instead of a server (a stand-in for the transport)."""

    def open_client(self):  # type: ignore[no-untyped-def]
        return stand_in_post


def per_request(rows: int, run: Callable[[int], None]) -> float:
    """CPU microseconds per request of ``run(start)`` over every batch of 1,000."""
    cpu = time.process_time()
    for start in range(0, rows, 1000):
        run(start)
    return (time.process_time() - cpu) * 1e6 / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    llm = StandInLLM("m", base_url="http://127.0.0.1:9/v1", max_concurrency=64, max_new_tokens=8)
    with_store = mapgen.generate(llm, mapgen.TextGenerationTask())
    no_store = mapgen.generate(llm, mapgen.TextGenerationTask(), cache=False)
    real_put = mapgen.store.ResponseStore.put

    def bare(tag: str) -> Callable[[int], None]:
        async def batch(start: int) -> None:
            semaphore = asyncio.Semaphore(64)

            async def one(i: int) -> str:
                body = {"model": "m", "messages": [{"role": "user", "content": f"row {i} {tag}"}]}
                async with semaphore:
                    answer = await stand_in_post(body)
                return answer["choices"][0]["message"]["content"]

            await asyncio.gather(*(one(i) for i in range(start, start + 1000)))

        return lambda start: asyncio.run(batch(start))

    def complete(tag: str) -> Callable[[int], None]:
        return lambda start: llm.complete(
            [Request(mapgen.Prompt(f"row {i} {tag}")) for i in range(start, start + 1000)]
        )

    def call(fn: mapgen.mapping.map_function.MapFunction, tag: str) -> Callable[[int], None]:
        return lambda start: fn({"input": [f"row {i} {tag}" for i in range(start, start + 1000)]})

    def without_put(tag: str) -> Callable[[int], None]:
        def run(start: int) -> None:
            mapgen.store.ResponseStore.put = lambda self, key, completion: None  # type: ignore[method-assign]
            try:
                call(with_store, tag)(start)
            finally:
                mapgen.store.ResponseStore.put = real_put  # type: ignore[method-assign]

        return run

    layers = {
        "bare loop": bare,
        "llm.complete": complete,
        "fn, cache=False": lambda tag: call(no_store, tag),
        "fn, store": lambda tag: call(with_store, tag),
        "fn, store without put": without_put,
    }
    for name, layer in layers.items():  # warm up: imports, engines, the store's file
        per_request(1000, layer(f"warm {name}"))
    figures: dict[str, list[float]] = {name: [] for name in layers}
    for repetition in range(args.repeat):
        for name, layer in layers.items():  # fresh prompts each time: nothing comes from the store
            figures[name].append(per_request(args.rows, layer(f"{repetition} {name}")))
    print(f"rows={args.rows} repeat={args.repeat} load average={os.getloadavg()[0]:.1f}")
    for name, values in figures.items():
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:24} {statistics.median(values):7.1f} us/request  (range {spread})")


if __name__ == "__main__":
    main()
