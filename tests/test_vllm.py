"""mapgen.vLLM without an engine: what only GPUs show, against a TEST DOUBLE, and its config checks.

vLLM itself runs for real in tests/test_vllm_engine.py (its CPU build) and tests/test_vllm_server.py. What
the CPU build cannot show is tested here against a TEST DOUBLE of the ``vllm`` package
(tests/doubles/fake_vllm.py, a CUDA platform): rank-to-GPU assignment in real ``num_proc`` workers, tensor
parallel groups, the parent never building an engine, and the ``GuidedDecodingParams`` of vLLM before 0.11.
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


@pytest.mark.parametrize("old_api", [False, True])
def test_schema_becomes_guided_decoding_in_either_api(fake, monkeypatch, old_api):
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


def test_cpu_kv_cache_is_sized_by_the_model_and_capped_by_free_memory():
    from mapgen.llms._vllm_memory import GiB, MiB, cpu_kv_cache_bytes, kv_bytes_per_token

    # Llama-2-7B: 32 layers, 32 KV heads of 128, fp16: 512 KiB a token
    llama = {
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "hidden_size": 4096,
        "torch_dtype": "float16",
    }
    assert kv_bytes_per_token(llama) == 512 * 1024
    assert kv_bytes_per_token(llama, dtype="float32") == 1024 * 1024
    assert kv_bytes_per_token({"text_config": llama}) == 512 * 1024  # a multimodal model's text part
    # 8 sequences of 4,096 tokens = 16 GiB, capped at 8 GiB; with 10 GiB free, at a quarter of that
    assert cpu_kv_cache_bytes(512 * 1024, max_model_len=4096, available=64 * GiB) == 8 * GiB
    assert cpu_kv_cache_bytes(512 * 1024, max_model_len=4096, available=10 * GiB) == 2560 * MiB
    with pytest.raises(ValueError, match=r"max_model_len=3072 or less"):
        cpu_kv_cache_bytes(512 * 1024, max_model_len=4096, available=6 * GiB)
    with pytest.raises(ValueError, match="layers and heads"):
        kv_bytes_per_token({"hidden_size": 8})


def test_a_cpu_memory_share_that_cannot_fit_is_refused_with_one_that_would():
    from mapgen.llms._vllm_memory import GiB, MiB, check_cpu_utilization

    check_cpu_utilization(0.1, total=24 * GiB, available=20 * GiB, weights=270 * MiB)  # fits
    with pytest.raises(ValueError, match=r"0\.9 is 21\.60 GiB, but 20\.00 GiB are free.*=0\.1 would fit"):
        check_cpu_utilization(0.9, total=24 * GiB, available=20 * GiB, weights=270 * MiB)
    with pytest.raises(ValueError, match=r"needs about 1\.51 GiB.*=0\.1 would fit"):
        check_cpu_utilization(0.05, total=24 * GiB, available=20 * GiB, weights=270 * MiB)
    with pytest.raises(ValueError, match="no value fits"):
        check_cpu_utilization(0.5, total=24 * GiB, available=1 * GiB, weights=270 * MiB)


def test_memory_share_left_unset_by_default():
    assert mapgen.vLLM("m").gpu_memory_utilization is None
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="gpu_memory_utilization"):
            mapgen.vLLM("m", gpu_memory_utilization=bad)
