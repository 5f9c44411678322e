"""Rank -> GPU assignment (mapgen.llms.devices): pure logic here; real CUDA in benchmarks/gpu_check.sh."""

from __future__ import annotations

import os

import pytest

import mapgen
from mapgen.llms import devices
from mapgen.llms.devices import DeviceError, bind, device_group, parse_devices


@pytest.fixture
def parent_env(monkeypatch):
    """Forget what this process read of CUDA_VISIBLE_DEVICES, and restore the variable afterwards."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices._reset_for_tests()

    def set_parent(value):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        devices._reset_for_tests()

    yield set_parent
    devices._reset_for_tests()


def test_groups_of_tensor_parallel_size():
    assert [device_group(r) for r in range(3)] == [("0",), ("1",), ("2",)]
    assert [device_group(r, per_worker=2) for r in range(2)] == [("0", "1"), ("2", "3")]
    assert device_group(1, per_worker=2, available=("a", "b", "c", "d")) == ("c", "d")


def test_too_few_gpus_says_what_to_do():
    with pytest.raises(DeviceError, match=r"num_proc=2 or fewer"):
        device_group(2, available=("0", "1"))
    with pytest.raises(DeviceError, match=r"only 1 group\(s\) of 2"):
        device_group(1, per_worker=2, available=("0", "1", "2"))
    with pytest.raises(ValueError, match="rank"):
        device_group(-1)


def test_parse_devices_forms():
    assert parse_devices("0,1") == parse_devices([0, 1]) == parse_devices(("0", "1")) == ("0", "1")
    assert parse_devices("GPU-abc, GPU-def") == ("GPU-abc", "GPU-def")
    for bad in ([], "", "0,,1", [True]):
        with pytest.raises(ValueError, match="devices"):
            parse_devices(bad)


def test_bind_shares_out_the_parents_visible_devices(parent_env):
    parent_env("2,5,7")
    assert bind(1) == ("5",)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    # once bound, the parent's list is still what is shared out (not the narrowed variable)
    assert devices.original_visible() == ("2", "5", "7")


def test_bind_without_rank_sets_nothing(parent_env):
    assert bind(None) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_bind_with_a_device_list_and_sharing(parent_env):
    parent_env("0,1,2,3")
    assert bind(1, devices=[6, 6, 7, 7]) == ("6",)
    assert bind(3, devices="6,6,7,7") == ("7",)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_bind_after_cuda_started_keeps_the_devices_with_a_warning(parent_env, monkeypatch):
    parent_env("0,1")
    assert bind(0) == ("0",)
    monkeypatch.setattr(devices, "cuda_initialized", lambda: True)  # as if the engine had started CUDA
    with pytest.warns(RuntimeWarning, match="keeps"):
        assert bind(1) == ("0",)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_placement_is_a_knob_and_cpu_backends_take_no_gpu(parent_env):
    cpu = mapgen.LlamaCppLLM(max_new_tokens=4)
    assert cpu.engine_placement(3) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    offload = mapgen.LlamaCppLLM(max_new_tokens=4, n_gpu_layers=-1, devices=[1, 2])
    assert offload.engine_placement(1) == ("2",)
    assert offload == mapgen.LlamaCppLLM(max_new_tokens=4)  # n_gpu_layers and devices are knobs
    plain = mapgen.LlamaCppLLM(max_new_tokens=4)
    assert mapgen.fingerprint(mapgen.generate(offload)) == mapgen.fingerprint(mapgen.generate(plain))
    transformers_cpu = mapgen.TransformersLLM("some/model", device="cpu")
    assert transformers_cpu.engine_placement(0) is None
    assert mapgen.TransformersLLM("some/model").engine_placement(0) == ("0",)


def test_torch_import_alone_is_not_cuda_initialisation():
    torch = pytest.importorskip("torch")
    assert devices.cuda_initialized() is bool(torch.cuda.is_initialized())
    devices.check_fork_safe()  # no CUDA here: never a bad fork
