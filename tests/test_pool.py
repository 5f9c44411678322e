"""LLMPool: reproducible per-row assignment, aligned columns, GPU shares, and end-to-end pools of CPU
members (the embedded llama.cpp model and the OpenAI-compatible fault server) under num_proc=2."""

from __future__ import annotations

import collections

import datasets
import pytest

import mapgen
from mapgen.llms import base, devices


def member(name: str, server=None, **knobs) -> mapgen.OpenAILLM:
    """A pool member: the fault server under model name ``name`` (one request per generation)."""
    url, key = (server.base_url, server.api_key) if server else ("http://127.0.0.1:1/v1", None)
    return mapgen.OpenAILLM(name, base_url=url, api_key=key, use_n=False, **knobs)


A, B, C = member("a"), member("b"), member("c")


def prompts(n):
    return [mapgen.Prompt(f"question {i}") for i in range(n)]


def test_each_row_spreads_its_generations_evenly_and_reproducibly():
    pool = mapgen.LLMPool([A, B, C], seed=7)
    orders = set()
    for prompt in prompts(30):
        chosen = [pool.member_for(mapgen.Request(prompt, i)) for i in range(5)]
        counts = collections.Counter(chosen)
        assert sorted(counts.values()) == [1, 2, 2]  # 5 over 3: evenly, the remainder by chance
        assert chosen == [
            mapgen.LLMPool([A, B, C], seed=7).member_for(mapgen.Request(prompt, i)) for i in range(5)
        ]
        orders.add(tuple(chosen[:3]))
    assert len(orders) > 1  # the order is per row, not one for all
    other = mapgen.LLMPool([A, B, C], seed=8)
    assert any(
        pool.member_for(mapgen.Request(p, 0)) != other.member_for(mapgen.Request(p, 0)) for p in prompts(30)
    )


def test_generation_model_names_the_writer_and_lists_stay_aligned(fault_server):
    # Member "a" is down for question 3; "b" answers everything.
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"model": "a", "contains": "question 3", "status": 500}]
    )
    pool = mapgen.LLMPool([member("a", fault_server, max_retries=0), member("b", fault_server)])
    ds = datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(6)]})
    out = ds.map(mapgen.generate(pool, num_generations=3, cache=False), batched=True, batch_size=4)
    for i, row in enumerate(out):
        assert len(row["generations"]) == len(row["generation_model"]) == len(row["generation_errors"]) == 3
        for k, (text, error) in enumerate(zip(row["generations"], row["generation_errors"], strict=True)):
            writer = pool.member_for(mapgen.Request(mapgen.Prompt(f"question {i}"), k))
            assert row["generation_model"][k] == "ab"[writer]
            if writer == 0 and i == 3:
                assert text is None and error.startswith("http_500: HTTP 500")
            else:
                assert text == f"echo: question {i}" and error is None
        assert sorted(
            collections.Counter(
                pool.member_for(mapgen.Request(mapgen.Prompt(f"question {i}"), k)) for k in range(3)
            ).values()
        ) == [1, 2]


def test_fingerprint_is_members_and_seed():
    fp = mapgen.fingerprint
    base_fp = fp(mapgen.generate(mapgen.LLMPool([mapgen.LlamaCppLLM(), mapgen.OpenAILLM("gpt-4o-mini")])))
    knobs = mapgen.LLMPool(
        [mapgen.LlamaCppLLM(n_threads=4), mapgen.OpenAILLM("gpt-4o-mini", max_concurrency=3)], processes=True
    )
    assert fp(mapgen.generate(knobs)) == base_fp
    reseeded = mapgen.LLMPool([mapgen.LlamaCppLLM(), mapgen.OpenAILLM("gpt-4o-mini")], seed=1)
    assert fp(mapgen.generate(reseeded)) != base_fp
    changed = mapgen.LLMPool([mapgen.LlamaCppLLM(temperature=0.1), mapgen.OpenAILLM("gpt-4o-mini")])
    assert fp(mapgen.generate(changed)) != base_fp


def test_bad_pools_raise():
    with pytest.raises(ValueError, match="at least one"):
        mapgen.LLMPool([])
    with pytest.raises(ValueError, match="differ"):
        mapgen.LLMPool([A, A])
    with pytest.raises(TypeError, match="not pools"):
        mapgen.LLMPool([mapgen.LLMPool([A])])


def test_a_jury_is_no_pool_member():
    """A jury rates: refused when the pool is made, with generate(jury)'s words, not on the first batch."""
    jury = mapgen.Jury([A, B])
    with pytest.raises(TypeError) as by_generate:
        mapgen.generate(jury, mapgen.TextGenerationTask())
    with pytest.raises(TypeError, match=r"a Jury rates: pass it to mapgen\.label\(jury, task\)") as by_pool:
        mapgen.LLMPool([jury, C])
    assert str(by_pool.value) == str(by_generate.value)


@pytest.fixture
def parent_gpus(monkeypatch):
    def set_parent(value):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        devices._reset_for_tests()

    yield set_parent
    devices._reset_for_tests()


def test_gpu_members_get_their_own_share_of_each_ranks_gpus(parent_gpus):
    parent_gpus("0,1,2,3,4,5,6,7")
    api = mapgen.OpenAILLM("gpt-4o-mini")
    pool = mapgen.LLMPool([mapgen.vLLM("big", tensor_parallel_size=2), mapgen.TransformersLLM("small"), api])
    assert [pool.in_process(k) for k in range(3)] == [False, False, True]
    assert pool.member_devices(0) == [("0", "1"), ("2",), None]
    assert pool.member_devices(1) == [("3", "4"), ("5",), None]
    with pytest.raises(devices.DeviceError, match="num_proc=2 or fewer"):
        pool.member_devices(2)
    listed = mapgen.LLMPool([mapgen.vLLM("x", devices=[6]), mapgen.vLLM("y")])
    assert listed.member_devices(0) == [("6",), ("0",)]
    # one GPU member, or processes=False: it runs in the map's process and takes the rank's GPU itself
    assert mapgen.LLMPool([mapgen.vLLM("x"), api]).member_devices(0) == [None, None]
    assert mapgen.LLMPool([mapgen.vLLM("x"), mapgen.vLLM("y")], processes=False).member_devices(0) == [
        None,
        None,
    ]


def tiny(**kwargs):
    return mapgen.LlamaCppLLM(**{"temperature": 0.0, "max_new_tokens": 8, "seed": 0, **kwargs})


@pytest.mark.llamacpp
def test_pool_of_llamacpp_and_api_member_under_num_proc_2(fault_server):
    api = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    pool = mapgen.LLMPool([tiny(), api], seed=3)
    ds = datasets.Dataset.from_dict({"input": [f"Name a colour ({i})." for i in range(6)]})
    fn = mapgen.generate(pool, num_generations=2, cache=False)
    parallel = ds.map(fn, batched=True, batch_size=2, num_proc=2, with_rank=True)
    for row in parallel:
        assert sorted(row["generation_model"]) == sorted(["SmolLM2-135M-Instruct.Q4_1", "fault"])
        for model, text in zip(row["generation_model"], row["generations"], strict=True):
            assert (text == f"echo: {row['input']}") == (model == "fault")
            assert text  # every answer arrived
    single = ds.map(fn, batched=True, batch_size=3)
    assert single["generation_model"] == parallel["generation_model"]
    assert single["generations"] == parallel["generations"]  # greedy, same members per row: same text


@pytest.mark.llamacpp
def test_store_keeps_who_wrote_each_answer(fault_server):
    api = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    pool = mapgen.LLMPool([tiny(), api])
    ds = datasets.Dataset.from_dict({"input": ["Say yes.", "Say no."]})
    first = ds.map(mapgen.generate(pool, num_generations=2), batched=True)
    mapgen.counters.reset()
    again = datasets.Dataset.from_dict(ds.to_dict()).map(
        mapgen.generate(pool, num_generations=2), batched=True
    )
    assert mapgen.counters.snapshot()["requests"] == 0
    assert again["generation_model"] == first["generation_model"]
    assert again["generations"] == first["generations"]


@pytest.mark.llamacpp
def test_local_members_in_processes_of_their_own(parent_gpus):
    parent_gpus("0,1")
    greedy, offload = tiny(), tiny(n_gpu_layers=-1, max_new_tokens=6)  # a CPU build ignores the offload
    pool = mapgen.LLMPool([greedy, offload], processes=True)
    base._ENGINES.clear()
    members = pool.engine(0)
    try:
        info = {k: process.info() for k, process in members.items()}
        assert info[0]["visible"] == "0,1"  # no GPU use: the parent's devices, untouched
        assert info[1]["visible"] == "0"  # the only GPU member takes the rank's first GPU
        assert len({i["pid"] for i in info.values()}) == 2
        requests = [mapgen.Request(p, i) for p in prompts(2) for i in range(2)]
        answers = pool.complete(requests, rank=0)
        for request, answer in zip(requests, answers, strict=True):
            member = pool.members[pool.member_for(request)]
            assert answer.text == member.complete([request])[0].text
    finally:
        for process in members.values():
            process.close()
        base._ENGINES.clear()
