"""mapgen.vLLM's glue, against a TEST DOUBLE of the vllm package (tests/doubles/fake_vllm.py): no GPU here.

What runs for real: mapgen's batching, grouping, seeds, formats, schema plumbing, rank-to-GPU assignment in
real ``num_proc`` workers, and the response store. What is doubled: ``vllm`` itself.
"""

from __future__ import annotations

import collections

import datasets
import pytest

import mapgen
from mapgen.llms import base, devices
from tests.doubles import fake_vllm


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The vllm double in sys.modules, a fresh engine registry, a log of engines and calls, and the
    parent's CUDA_VISIBLE_DEVICES restored afterwards."""
    fake_vllm.install(monkeypatch)
    log = tmp_path / "vllm.log"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices._reset_for_tests()
    base._ENGINES.clear()
    yield log
    base._ENGINES.clear()
    devices._reset_for_tests()


def events(log, kind=None):
    records = fake_vllm.read_log(log) if log.exists() else []
    return [r for r in records if kind is None or r["event"] == kind]


def rows(n):
    return datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(n)]})


def test_one_engine_per_worker_one_call_per_batch_and_gpu_set_before_engine(fake):
    llm = mapgen.vLLM("org/model-7b", max_new_tokens=8)
    fn = mapgen.generate(llm, num_generations=2, cache=False)
    ds = rows(8).map(fn, batched=True, batch_size=2, num_proc=2, with_rank=True)

    engines = events(fake, "engine")
    assert len(engines) == 2
    assert sorted(e["visible"] for e in engines) == ["0", "1"]
    # each worker built its engine once and sent each of its 2 batches in one call
    calls = collections.Counter(c["pid"] for c in events(fake, "chat"))
    assert sorted(calls) == sorted(e["pid"] for e in engines)
    assert list(calls.values()) == [2, 2]
    assert all(c["prompts"] == 2 for c in events(fake, "chat"))
    assert [len(g) for g in ds["generations"]] == [2] * 8
    assert ds[5]["generations"][1].endswith("sample=1")
    assert "question 5" in ds[5]["generations"][0]


def test_tensor_parallel_groups_and_device_lists(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    devices._reset_for_tests()
    tp = mapgen.generate(mapgen.vLLM("m", tensor_parallel_size=2), cache=False)
    rows(4).map(tp, batched=True, num_proc=2, with_rank=True)
    engines = events(fake, "engine")
    assert sorted(e["visible"] for e in engines) == ["4,5", "6,7"]
    assert all(e["options"]["tensor_parallel_size"] == 2 for e in engines)

    fake.unlink()
    listed = mapgen.generate(mapgen.vLLM("m", devices=[3, 3]), cache=False)
    rows(4).map(listed, batched=True, num_proc=2, with_rank=True)
    assert [e["visible"] for e in events(fake, "engine")] == ["3", "3"]


def test_parent_never_builds_an_engine(fake):
    import os

    rows(4).map(mapgen.generate(mapgen.vLLM("m"), cache=False), batched=True, num_proc=2, with_rank=True)
    assert os.getpid() not in {e["pid"] for e in events(fake)}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_n_without_seed_and_one_request_per_generation_with_seed(fake):
    unseeded = mapgen.vLLM("m", temperature=0.8)
    out = rows(3).map(mapgen.generate(unseeded, num_generations=3, cache=False), batched=True)
    [call] = events(fake, "chat")
    assert call["prompts"] == 3
    assert [p["n"] for p in call["params"]] == [3, 3, 3]
    assert [g.rsplit("sample=", 1)[1] for g in out[1]["generations"]] == ["0", "1", "2"]
    # each request draws its own seed: vLLM's default seed is the same in every run
    seeds = [p["seed"] for p in call["params"]]
    assert all(isinstance(seed, int) for seed in seeds) and len(set(seeds)) == 3

    fake.unlink()
    seeded = mapgen.vLLM("m", temperature=0.8, seed=10)
    out = rows(2).map(mapgen.generate(seeded, num_generations=3, cache=False), batched=True)
    [call] = events(fake, "chat")
    assert call["prompts"] == 6
    assert [p["seed"] for p in call["params"]] == [10, 11, 12, 10, 11, 12]
    assert all(p["n"] == 1 for p in call["params"])
    assert "seed=12" in out[1]["generations"][2] and "question 1" in out[1]["generations"][2]


def test_without_a_seed_workers_and_runs_sample_independently(fake):
    ds = datasets.Dataset.from_dict({"input": ["Tell me a joke."] * 4})
    fn = mapgen.generate(mapgen.vLLM("m", temperature=1.0), cache=False)
    first = list(ds.map(fn, batched=True, batch_size=1, num_proc=2, with_rank=True)["generations"])
    second = list(ds.map(fn, batched=True, batch_size=1, num_proc=2, with_rank=True)["generations"])
    assert len({g for [g] in first + second}) == 8
    seeds = [p["seed"] for call in events(fake, "chat") for p in call["params"]]
    assert len(seeds) == 8 and None not in seeds


def test_with_a_seed_a_generation_does_not_depend_on_its_batch(fake):
    llm = mapgen.vLLM("m", temperature=1.0, seed=3)
    prompt = mapgen.Prompt("Tell me a joke.")
    [alone] = llm.complete([mapgen.Request(prompt, 1)])
    batch = llm.complete(
        [mapgen.Request(mapgen.Prompt("Hi"), 0), mapgen.Request(prompt, 0), mapgen.Request(prompt, 1)]
    )
    assert batch[2].text == alone.text and "seed=4" in alone.text
    assert batch[1].text != alone.text


def test_chat_template_by_default_raw_format_on_request(fake):
    prompt = mapgen.Prompt("Hi", system="Be brief.")
    mapgen.vLLM("m").complete([mapgen.Request(prompt)])
    [chat] = events(fake, "chat")
    assert chat["chat_template"] is None

    fake.unlink()
    [completion] = mapgen.vLLM("m", prompt_format="chatml").complete([mapgen.Request(prompt)])
    [call] = events(fake, "generate")
    assert call["prompts"] == [mapgen.format_prompt(prompt, "chatml")]
    assert completion.text.endswith("sample=0")

    fake.unlink()
    mapgen.vLLM("m", chat_template="{{ custom }}").complete([mapgen.Request(prompt)])
    assert events(fake, "chat")[0]["chat_template"] == "{{ custom }}"


@pytest.mark.parametrize("old_api", [False, True])
def test_schema_becomes_guided_decoding(fake, monkeypatch, old_api):
    fake_vllm.install(monkeypatch, old_api=old_api)
    schema = {"type": "object", "properties": {"rating": {"type": "integer"}}}
    llm = mapgen.vLLM("m")
    [constrained, free] = llm.complete(
        [mapgen.Request(mapgen.Prompt("Rate."), 0, schema), mapgen.Request(mapgen.Prompt("Talk."))]
    )
    [call] = events(fake, "chat")
    key = "guided_decoding" if old_api else "structured_outputs"
    assert call["params"][0][key] == repr(
        (fake_vllm.GuidedDecodingParams if old_api else fake_vllm.StructuredOutputsParams)(json=schema)
    )
    assert call["params"][1][key] is None
    assert constrained.text.startswith('{"constrained": true')
    assert not free.text.startswith("{")


def test_label_sends_the_task_schema(fake):
    task = mapgen.UltraFeedbackTask.for_overall_quality()
    ds = datasets.Dataset.from_dict({"input": ["q"], "generations": [["a", "b"]]})
    ds.map(mapgen.label(mapgen.vLLM("judge"), task, cache=False), batched=True)
    [call] = events(fake, "chat")
    sent = call["params"][0]["structured_outputs"]
    # the task's schema, sized to this row's two generations
    assert sent.startswith("StructuredOutputsParams(json={") and "'ratings'" in sent
    assert "'minItems': 2, 'maxItems': 2" in sent


def test_a_refused_prompt_fails_only_its_row(fake):
    long = "x " * fake_vllm.MAX_MODEL_LEN
    ds = datasets.Dataset.from_dict({"input": ["short", long, "also short"]})
    out = ds.map(mapgen.generate(mapgen.vLLM("m"), num_generations=2, cache=False), batched=True)
    assert out["generations"][1] == [None, None]
    assert "max_model_len" in out["generation_errors"][1][0]
    assert all(g is not None for g in out["generations"][0] + out["generations"][2])
    assert len(events(fake, "chat")) == 1 + 3  # the batch, then group by group


def test_fingerprint_ignores_placement_and_memory_knobs():
    a = mapgen.vLLM("m", max_new_tokens=64)
    b = mapgen.vLLM(
        "m", max_new_tokens=64, tensor_parallel_size=4, devices="0,1,2,3", gpu_memory_utilization=0.5
    )
    assert mapgen.fingerprint(mapgen.generate(a)) == mapgen.fingerprint(mapgen.generate(b))
    assert mapgen.fingerprint(mapgen.generate(a)) != mapgen.fingerprint(
        mapgen.generate(mapgen.vLLM("m", max_new_tokens=65))
    )


def test_bad_config_raises_before_anything_runs():
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        mapgen.vLLM("m", tensor_parallel_size=0)
    with pytest.raises(ValueError, match="Unknown prompt format"):
        mapgen.vLLM("m", prompt_format="nope")
    with pytest.raises(ValueError, match="devices"):
        mapgen.vLLM("m", devices=[])


def test_a_structured_task_is_guided_and_validated_on_vllm(fake):
    # The double's guided answer ({"constrained": true, ...}) is JSON but not the task's model: the task
    # validates it, re-asks with a new seed, then writes None and the validation error.
    from pydantic import BaseModel

    class Color(BaseModel):
        color: str

    task = mapgen.StructuredTask(Color)
    ds = datasets.Dataset.from_dict({"input": ["Name a color."]})
    out = ds.map(mapgen.generate(mapgen.vLLM("m", seed=5), task, max_reasks=1, cache=False), batched=True)
    calls = events(fake, "chat")
    assert [p["seed"] for call in calls for p in call["params"]] == [5, 5 + 1_000_000]
    assert all("StructuredOutputsParams(json={" in call["params"][0]["structured_outputs"] for call in calls)
    assert out[0]["color"] == [None]
    assert out[0]["generation_errors"][0].startswith("invalid_output: color: Field required")
