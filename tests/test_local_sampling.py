"""The seed rule of the local backends, on the embedded llama.cpp model in real ``num_proc`` maps.

Without a seed, samples are independent across rows, workers and runs; with one, generation ``i`` of a
prompt is the same whatever batch, order or worker it came in (issue 10, item 9). Transformers and vLLM
follow the same rule: tests/test_transformers_llm.py and tests/test_vllm.py.
"""

from __future__ import annotations

import datasets
import pytest

import mapgen
from mapgen.llms._sampling import request_seed

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llamacpp

PROMPT = "Invent a name for a new colour and describe it."


def sampled(**options):
    return mapgen.LlamaCppLLM(temperature=1.0, max_new_tokens=16, **options)


def four_copies_in_two_workers(llm, **options):
    ds = datasets.Dataset.from_dict({"input": [PROMPT] * 4})
    fn = mapgen.generate(llm, cache=False, **options)
    out = ds.map(fn, batched=True, batch_size=1, num_proc=2)
    return list(out["generations"])


def test_without_a_seed_rows_workers_and_runs_sample_independently():
    first = [g for [g] in four_copies_in_two_workers(sampled())]
    second = [g for [g] in four_copies_in_two_workers(sampled())]
    assert first[2:] != first[:2]  # worker 1 is not a replay of worker 0
    assert first != second  # nor is the next run a replay of this one
    assert len(set(first + second)) == 8


def test_with_a_seed_each_generation_is_reproducible_on_its_own():
    llm = sampled(seed=7)
    in_workers = four_copies_in_two_workers(llm, num_generations=2)
    # Another batch size and order, the prompt between others, in this process.
    mixed = datasets.Dataset.from_dict({"input": ["Say hi.", PROMPT, "Name a city.", PROMPT]})
    in_one_batch = mixed.map(mapgen.generate(llm, num_generations=2, cache=False), batched=True)
    [alone] = llm.complete([mapgen.Request(mapgen.Prompt(PROMPT), index=1)])

    expected = in_workers[0]
    assert all(row == expected for row in in_workers)
    assert in_one_batch["generations"][1] == in_one_batch["generations"][3] == expected
    assert alone.text == expected[1]
    assert expected[0] != expected[1]  # seed + 0 and seed + 1 are two samples


def test_request_seeds():
    assert [request_seed(3, i) for i in range(3)] == [3, 4, 5]
    drawn = {request_seed(None, 0) for _ in range(100)}
    assert len(drawn) == 100 and all(0 <= seed < 2**31 for seed in drawn)
