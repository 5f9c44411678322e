"""``num_proc=2, with_rank=True`` on the real engine, with no memory settings, through the response store.

Run by tests/test_vllm_engine.py in vLLM's virtual environment, with this checkout on PYTHONPATH::

    python tests/real_vllm/workers.py MODEL_FOLDER OUT.json STORE_URL ROWS [MAX_NEW_TOKENS]

The config is the one a new user writes, ``mapgen.vLLM(model, max_new_tokens=16, seed=3)``; each row
is its own prompt, asked in batches of 2 rows. The generations and the map's counters go to OUT.json.
It prints ``started`` as the map begins, for the tests that interrupt it.
"""

from __future__ import annotations

import json
import sys

import datasets

import mapgen


def prompts(rows: int) -> list[str]:
    return [f"Write a sentence about the number {i}." for i in range(rows)]


def main(model: str, out: str, store: str, rows: str, max_new_tokens: str = "16") -> None:
    ds = datasets.Dataset.from_dict(
        {"input": [f"Write a sentence about the number {i}." for i in range(int(rows))]}
    )
    llm = mapgen.vLLM(model, max_new_tokens=int(max_new_tokens), seed=3)
    print("started", flush=True)
    done = ds.map(mapgen.generate(llm, store=store), batched=True, batch_size=2, num_proc=2, with_rank=True)
    with open(out, "w") as file:
        json.dump({"generations": list(done["generations"]), "counters": mapgen.counters.snapshot()}, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
