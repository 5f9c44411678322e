"""Store keys do not depend on where a backend's code lives (issue 19, item 3a).

A store key names its backend by the backend's ``store_name``, not its module path, so moving or renaming
a backend's file keeps every stored answer. The literal keys below were computed by the release before the
layers (``d1cc6f7~1``): today's code must give the very same, or every existing store would stop serving.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import ClassVar

import datasets
import huggingface_hub
import pytest

import mapgen
from tests.golden.make_store_before_layers import REPLIES, ROWS, golden_llm, lookup

GOLDEN = Path(__file__).parent / "golden"


def keys(llm: mapgen.LLM) -> list[str]:
    """The store keys of a map's two generations for one row, computed as the map computes them."""
    fn = mapgen.generate(llm, num_generations=2)
    requests, _ = fn.requests_for(fn.read_rows({"input": ["Name a fruit."]}))
    return fn.store_keys(requests)


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """Backends whose keys do not depend on the machine: no base URL from the environment, weights by
    their bytes (a stand-in file: its digest is what counts, not a model)."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    weights = tmp_path / "w" / "tiny.gguf"
    weights.parent.mkdir()
    weights.write_bytes(b"GGUF: not a model, only bytes to hash\n")
    local = mapgen.OpenAILLM("qwen3-8b", base_url="http://localhost:8000/v1", price_per_million=(0.1, 0.2))
    llamacpp = mapgen.LlamaCppLLM(model_path=str(weights), temperature=0.0, seed=0)
    return {
        "openai": mapgen.OpenAILLM(
            "gpt-4o-mini", base_url="https://api.openai.com/v1", temperature=0.2, seed=0
        ),
        "anthropic": mapgen.AnthropicLLM("claude-3-5-haiku-latest", max_new_tokens=64),
        "local_priced": local,
        "local": dataclasses.replace(local, price_per_million=None),
        "llamacpp": llamacpp,
        "pool": mapgen.LLMPool([local, llamacpp]),
    }


# Computed with the release before the layers (tests/golden/make_store_before_layers.py says how to
# check one out); "local" and "local_priced" share theirs: a price is no part of a key.
GOLDEN_KEYS = {
    "openai": [
        "57ba254b609d78fd1d81c635485a5d1d7b988db6057a8a7beafc7c11133ab73a",
        "4cdc957e4cbd3a425ba1306b0b7611881ab9d7dcc2615d72599223686d44ca0a",
    ],
    "anthropic": [
        "1e393cefa983bc52929c58104ed1ff820139530b9e37901ad8331b3c35320036",
        "620cbc674d1c68d26ed0529c794a2aa619ebfeb1ca7ef6fe89ce530c0e326ca0",
    ],
    "local_priced": [
        "7f4431ce4d6b40aea37d6cb9d3f6c7c31b9f63eb531edaba32c95cd890c41cee",
        "d3102693499786699051718baf4c9a3cca0e0638af8336563e43f4d665190f2c",
    ],
    "local": [
        "7f4431ce4d6b40aea37d6cb9d3f6c7c31b9f63eb531edaba32c95cd890c41cee",
        "d3102693499786699051718baf4c9a3cca0e0638af8336563e43f4d665190f2c",
    ],
    "llamacpp": [
        "612654e02066df36a7b0e7db342ca08c25c7fb3afa15d69503ebc34a0ca2d0ae",
        "6b793a328049d7483ae09cc35b827dd4f03d60429aa9bb22a6169062376f6af5",
    ],
    "pool": [
        "d68153edb036de4823c7df80d2d4623b0e78258c85b4f2a772650ed986bd61f5",
        "5bcd4d18575029274af6604c859a94f335e2ce35d4d46686f1b267d276da127c",
    ],
}


@pytest.mark.parametrize("name", GOLDEN_KEYS)
def test_store_keys_are_those_the_release_before_wrote(configs, name):
    assert keys(configs[name]) == GOLDEN_KEYS[name]


def test_the_store_names_of_the_backends_are_the_paths_they_had():
    # Changing one orphans every answer stored by that backend: never do.
    assert {
        cls.__name__: cls.store_name
        for cls in (
            mapgen.OpenAILLM,
            mapgen.AnthropicLLM,
            mapgen.InferenceEndpointsLLM,
            mapgen.LlamaCppLLM,
            mapgen.TransformersLLM,
            mapgen.vLLM,
            mapgen.LLMPool,
        )
    } == {
        "OpenAILLM": "mapgen.llms.openai.OpenAILLM",
        "AnthropicLLM": "mapgen.llms.anthropic.AnthropicLLM",
        "InferenceEndpointsLLM": "mapgen.llms.inference_endpoints.InferenceEndpointsLLM",
        "LlamaCppLLM": "mapgen.llms.llamacpp.LlamaCppLLM",
        "TransformersLLM": "mapgen.llms.transformers.TransformersLLM",
        "vLLM": "mapgen.llms.vllm.vLLM",
        "LLMPool": "mapgen.LLMPool",
    }


BACKEND = """
from dataclasses import dataclass
from typing import ClassVar

from mapgen.llms.base import LLM


@dataclass(frozen=True)
class EchoLLM(LLM):
    model: str = "echo"
    {declaration}

    @property
    def model_name(self) -> str:
        return self.model
"""


def backend_in(module: str, tmp_path: Path, monkeypatch, declaration: str = "") -> type[mapgen.LLM]:
    """The same backend, defined in a module named ``module``, with ``declaration`` in its body."""
    path = tmp_path / f"{module.replace('.', '_')}.py"
    path.write_text(BACKEND.format(declaration=declaration))
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module, loaded)
    spec.loader.exec_module(loaded)
    return loaded.EchoLLM


def test_a_backend_whose_module_is_renamed_keeps_its_store_keys(tmp_path, monkeypatch):
    declared = 'store_name: ClassVar[str] = "echo"'
    before = backend_in("acme.backends", tmp_path, monkeypatch, declared)
    after = backend_in("acme.llms.echo", tmp_path, monkeypatch, declared)
    assert keys(before()) == keys(after())
    # As a pool's member too.
    assert keys(mapgen.LLMPool([before()])) == keys(mapgen.LLMPool([after()]))
    # datasets' cache still names the module (a fingerprint, not a store key): a move costs that cache only.
    assert before().fingerprint()["type"] == "acme.backends.EchoLLM"
    assert before().store_fingerprint()["type"] == "echo"
    # Its own name, not another backend's.
    assert keys(before(model="other")) != keys(before())


def test_a_backend_that_declares_no_store_name_is_named_by_its_module(tmp_path, monkeypatch):
    before = backend_in("acme.backends", tmp_path, monkeypatch)
    after = backend_in("acme.llms.echo", tmp_path, monkeypatch)
    assert (before.store_name, after.store_name) == ("acme.backends.EchoLLM", "acme.llms.echo.EchoLLM")
    assert keys(before()) != keys(after())


def test_an_undeclared_subclass_does_not_share_its_parents_answers():
    # A subclass may send other bodies or read answers otherwise: its keys are its own unless it says
    # its answers are its parent's (by declaring the parent's name).
    @dataclasses.dataclass(frozen=True)
    class Tweaked(mapgen.OpenAILLM):
        pass

    @dataclasses.dataclass(frozen=True)
    class Faster(mapgen.OpenAILLM):
        store_name: ClassVar[str] = mapgen.OpenAILLM.store_name

    config = {"model": "m", "base_url": "http://localhost:8000/v1"}
    assert Tweaked.store_name == f"{__name__}.{Tweaked.__qualname__}"
    assert keys(Tweaked(**config)) != keys(mapgen.OpenAILLM(**config))
    assert keys(Faster(**config)) == keys(mapgen.OpenAILLM(**config))


def test_a_store_name_is_a_non_empty_string():
    with pytest.raises(TypeError, match="store_name"):

        class Nameless(mapgen.OpenAILLM):
            store_name = ""


def test_a_store_written_before_the_layers_serves_a_rerun_without_requests(
    tmp_path, monkeypatch, fault_server
):
    store = tmp_path / "store.sqlite3"
    shutil.copyfile(GOLDEN / "store_before_layers.sqlite3", store)
    monkeypatch.setattr(huggingface_hub, "get_inference_endpoint", lookup(fault_server.root))
    fn = mapgen.generate(golden_llm(fault_server.api_key), store=f"sqlite:///{store}")

    out = datasets.Dataset.from_dict({"input": ROWS}).map(fn, batched=True)
    assert fault_server.stats()["total"] == 0
    assert out["generations"] == [[REPLIES[row]] for row in ROWS]  # the server never writes these
    assert all(m["from_store"] for row in out["generation_metadata"] for m in row)

    # The endpoint leads to the server: a row the file lacks is sent there.
    more = datasets.Dataset.from_dict({"input": ["Name a river."]}).map(fn, batched=True)
    assert fault_server.stats()["total"] == 1
    assert more["generations"][0][0].startswith("echo:")
