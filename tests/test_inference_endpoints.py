"""InferenceEndpointsLLM against real servers on 127.0.0.1, through huggingface_hub and through aiohttp."""

from __future__ import annotations

import datasets
import pytest

import mapgen
from mapgen.core.prompt import Prompt
from mapgen.core.request import Request


@pytest.mark.llamacpp
@pytest.mark.parametrize("transport", ["hub", "aiohttp"])
def test_generate_through_an_openai_compatible_url(llamacpp_server, transport):
    root = llamacpp_server.removesuffix("/v1")  # /v1/chat/completions is appended, as for TGI
    llm = mapgen.InferenceEndpointsLLM(root, temperature=0.0, max_new_tokens=8, seed=0, transport=transport)
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
    out = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generation_errors"] == [[None, None], [None, None]]
    assert all(isinstance(t, str) and t for g in out["generations"] for t in g)
    assert out["generation_model"][0] == [root, root]


@pytest.mark.llamacpp
def test_structured_output_through_the_hub_client(llamacpp_server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    llm = mapgen.InferenceEndpointsLLM(
        "smollm2", base_url=llamacpp_server, temperature=0.0, max_new_tokens=24, seed=0, transport="hub"
    )
    [answer] = llm.complete([Request(Prompt("Give a name, as JSON."), 0, schema)])
    assert answer.error is None, answer.error
    assert answer.text.lstrip().startswith("{") and '"name"' in answer.text


def test_retries_and_n_through_the_hub_client(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.005, error_rate=0.2, retry_after="0")
    llm = mapgen.InferenceEndpointsLLM(
        "fault", base_url=fault_server.base_url, token=fault_server.api_key, transport="hub"
    )
    ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(30)]})
    out = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generations"][5] == ["echo: row 5 #0", "echo: row 5 #1"]
    assert all(e == [None, None] for e in out["generation_errors"])
    assert mapgen.counters.snapshot()["retries"] == fault_server.stats()["errors"] > 0


def test_the_token_never_reaches_an_error_message(fault_server):
    wrong = "hf_wrongTokenDoNotPrint123456"
    llm = mapgen.InferenceEndpointsLLM("fault", base_url=fault_server.base_url, token=wrong, transport="hub")
    with pytest.raises(mapgen.errors.FatalAPIError) as raised:  # a rejected token stops the map
        llm.complete([Request(Prompt("x"))])
    assert "401" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in repr(llm)


def test_what_model_or_endpoint_names():
    assert mapgen.InferenceEndpointsLLM("meta-llama/Llama-3.1-8B-Instruct").kind == "model"
    assert mapgen.InferenceEndpointsLLM("my-endpoint").kind == "endpoint"
    url = mapgen.InferenceEndpointsLLM("http://localhost:8080")
    assert url.kind == "url" and url.chat_url() == "http://localhost:8080/v1/chat/completions"
    assert (
        mapgen.InferenceEndpointsLLM("m", base_url="http://h/v1").chat_url() == "http://h/v1/chat/completions"
    )
    with pytest.raises(ValueError, match="model_or_endpoint"):
        mapgen.InferenceEndpointsLLM("")
