"""The typed sampling parameters (top_k, min_p, stop, presence/frequency/repetition penalties): checked
at construction, refused where a backend cannot honour them, and taking effect where it can: on the
embedded model (llama.cpp), in the bodies the fault server receives, and in the SamplingParams the vLLM
TEST DOUBLE is given."""

from __future__ import annotations

import dataclasses

import pytest

import mapgen
from mapgen.llms import base
from tests.doubles import fake_vllm

PROMPTS = [mapgen.Prompt("What is a prime number?"), mapgen.Prompt("Give one tip for sleeping well.")]


def answers(llm: mapgen.LLM, prompts=PROMPTS) -> list[mapgen.Completion]:
    return llm.complete([mapgen.Request(p) for p in prompts])


# Construction: types and ranges


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("top_k", -1, ValueError),
        ("top_k", 2.5, ValueError),
        ("top_k", True, ValueError),
        ("min_p", 1.5, ValueError),
        ("min_p", "0.1", TypeError),
        ("presence_penalty", 2.5, ValueError),
        ("frequency_penalty", -3, ValueError),
        ("repetition_penalty", 0.0, ValueError),
        ("stop", [""], ValueError),
        ("stop", 5, TypeError),
        ("stop", [".", 3], TypeError),
    ],
)
def test_out_of_range_or_mistyped_parameters_raise_at_construction(name, value, error):
    with pytest.raises(error, match=name if name != "stop" else "stop"):
        mapgen.LlamaCppLLM(**{name: value})


def test_stop_is_kept_as_a_tuple_and_unset_parameters_are_not_sent():
    llm = mapgen.LlamaCppLLM(stop=".", top_k=0, min_p=0.05)
    assert llm.stop == (".",)
    assert mapgen.LlamaCppLLM(stop=[".", "\n"]).stop == (".", "\n")
    assert mapgen.LlamaCppLLM(stop=[]).stop is None
    assert llm.sampling_options() == {"top_k": 0, "min_p": 0.05, "stop": ["."]}
    assert mapgen.LlamaCppLLM().sampling_options() == {}


# Construction: what a backend cannot honour


@pytest.mark.parametrize("name", ["top_k", "min_p", "repetition_penalty"])
def test_openais_own_api_refuses_server_only_parameters_naming_the_way_out(name, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    value = 5 if name == "top_k" else 0.5
    with pytest.raises(ValueError, match=rf"{name}=.*base_url"):
        mapgen.OpenAILLM("gpt-4o-mini", **{name: value})
    # the same parameter is fine for an OpenAI-compatible server
    assert getattr(mapgen.OpenAILLM("m", base_url="http://127.0.0.1:1/v1", **{name: value}), name) == value


def test_openais_own_api_takes_at_most_four_stop_sequences(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    five = ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="at most 4 stop"):
        mapgen.OpenAILLM("gpt-4o-mini", stop=five)
    mapgen.OpenAILLM("gpt-4o-mini", stop=five[:4], presence_penalty=0.5, frequency_penalty=-0.5)
    mapgen.OpenAILLM("m", base_url="http://127.0.0.1:1/v1", stop=five)


@pytest.mark.parametrize("name", ["top_k", "min_p", "repetition_penalty"])
def test_tgi_refuses_what_its_chat_api_lacks(name):
    value = 5 if name == "top_k" else 0.5
    with pytest.raises(ValueError, match=rf"{name}=.*OpenAILLM"):
        mapgen.InferenceEndpointsLLM("http://127.0.0.1:1", **{name: value})


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
def test_transformers_refuses_openai_style_penalties(name):
    with pytest.raises(ValueError, match=rf"TransformersLLM cannot honour {name}=.*repetition_penalty"):
        mapgen.TransformersLLM("some/model", **{name: 0.5})


def test_a_pool_takes_no_sampling_parameters_of_its_own():
    members = [mapgen.LlamaCppLLM(seed=0), mapgen.LlamaCppLLM(seed=1)]
    with pytest.raises(ValueError, match="set them on its members"):
        mapgen.LLMPool(members, top_k=5)
    # nor the parameters every backend has: on the pool they would be shown, yet never sent
    for name, value in (("temperature", 1.3), ("top_p", 0.5), ("max_new_tokens", 5)):
        with pytest.raises(ValueError, match=rf"\['{name}'\].*set them on its members"):
            mapgen.LLMPool(members, **{name: value})


def test_extra_body_cannot_override_what_mapgen_sends():
    for body in ({"model": "other"}, {"seed": 2}, {"response_format": {"type": "text"}}, {"messages": []}):
        with pytest.raises(ValueError, match=rf"extra_body sets \['{next(iter(body))}'\]"):
            mapgen.OpenAILLM("m", base_url="http://127.0.0.1:1/v1", extra_body=body)


def test_a_parameter_set_twice_or_a_reserved_engine_option_is_an_error():
    with pytest.raises(ValueError, match="extra_body"):
        mapgen.OpenAILLM("m", base_url="http://127.0.0.1:1/v1", stop=".", extra_body={"stop": ["!"]})
    with pytest.raises(ValueError, match="own field"):
        mapgen.LlamaCppLLM(generation_kwargs={"repeat_penalty": 1.2})
    with pytest.raises(ValueError, match="sets them from its config"):
        mapgen.LlamaCppLLM(generation_kwargs={"seed": 1})
    with pytest.raises(ValueError, match=r"\['bogus'\] are not options of llama_cpp"):
        mapgen.LlamaCppLLM(generation_kwargs={"bogus": 1})


# The embedded model: each parameter takes effect


@pytest.fixture(scope="module")
def greedy():
    return mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=24, seed=0)


@pytest.fixture(scope="module")
def greedy_answer(greedy):
    return answers(greedy, PROMPTS[:1])[0].text


@pytest.mark.llamacpp
def test_stop_ends_each_answer_before_the_stop_string(greedy):
    [full] = [c.text for c in answers(greedy, PROMPTS[1:])]
    [stopped] = answers(dataclasses.replace(greedy, stop=["."]), PROMPTS[1:])
    assert "." in full  # else the test would prove nothing
    assert (stopped.text, stopped.finish_reason) == (full.split(".")[0], "stop")


@pytest.mark.llamacpp
def test_top_k_1_and_min_p_1_are_greedy_whatever_the_temperature(greedy, greedy_answer):
    hot = dataclasses.replace(greedy, temperature=2.0, seed=1)
    assert answers(dataclasses.replace(hot, top_k=1), PROMPTS[:1])[0].text == greedy_answer
    assert answers(dataclasses.replace(hot, min_p=1.0), PROMPTS[:1])[0].text == greedy_answer
    assert answers(hot, PROMPTS[:1])[0].text != greedy_answer  # else the test would prove nothing


@pytest.mark.llamacpp
@pytest.mark.parametrize("name", ["repetition_penalty", "presence_penalty", "frequency_penalty"])
def test_penalties_change_greedy_answers(greedy, greedy_answer, name):
    assert answers(dataclasses.replace(greedy, **{name: 2.0}), PROMPTS[:1])[0].text != greedy_answer


@pytest.mark.llamacpp
def test_generation_kwargs_reach_the_engine(greedy):
    token = greedy.engine().tokenize(b" Yes", add_bos=False, special=False)[0]
    biased = dataclasses.replace(greedy, max_new_tokens=4, generation_kwargs={"logit_bias": {token: 100.0}})
    assert answers(biased, PROMPTS[:1])[0].text.split() == ["Yes"] * 4


@pytest.mark.llamacpp
def test_a_sweep_over_sampling_parameters_shares_one_engine(greedy):
    assert dataclasses.replace(greedy, top_k=3, stop=".").engine() is greedy.engine()


# API backends: the parameters travel in the body, by the server's names


def test_openai_compatible_servers_get_every_parameter_in_the_body(fault_server):
    llm = mapgen.OpenAILLM(
        "fault",
        base_url=fault_server.base_url,
        api_key=fault_server.api_key,
        top_k=20,
        min_p=0.05,
        stop=[".", "\n"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.1,
    )
    [completion] = answers(llm, PROMPTS[:1])
    assert completion.error is None
    [body] = fault_server.requests()
    sent = {k: body[k] for k in body if k not in ("model", "messages", "temperature", "top_p", "max_tokens")}
    assert sent == {
        "top_k": 20,
        "min_p": 0.05,
        "stop": [".", "\n"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "repetition_penalty": 1.1,
        "repeat_penalty": 1.1,  # llama.cpp's servers' name for it
    }


def test_unset_parameters_are_not_sent(fault_server):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    answers(llm, PROMPTS[:1])
    [body] = fault_server.requests()
    assert set(body) == {"model", "messages", "temperature", "top_p", "max_tokens"}


def test_tgi_gets_stop_and_penalties(fault_server):
    llm = mapgen.InferenceEndpointsLLM(
        fault_server.base_url,
        token=fault_server.api_key,
        stop="END",
        presence_penalty=0.3,
        frequency_penalty=0.2,
    )
    [completion] = answers(llm, PROMPTS[:1])
    assert completion.error is None
    [body] = fault_server.requests()
    assert (body["stop"], body["presence_penalty"], body["frequency_penalty"]) == (["END"], 0.3, 0.2)


def test_the_test_server_validates_parameters_as_openais_reference_says(fault_server):
    # Past mapgen's own checks (extra_body is the server's business): the server refuses, the row fails.
    llm = mapgen.OpenAILLM(
        "fault",
        base_url=fault_server.base_url,
        api_key=fault_server.api_key,
        max_retries=0,
        extra_body={"stop": ["a", "b", "c", "d", "e"]},
    )
    [completion] = answers(llm, PROMPTS[:1])
    assert completion.error_kind == "http_400" and "stop" in completion.error


# vLLM (its TEST DOUBLE: no GPU here): SamplingParams get every parameter under vLLM's own names


@pytest.fixture
def fake_vllm_installed(monkeypatch, tmp_path):
    fake_vllm.install(monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "vllm.log"))
    base._ENGINES.clear()
    yield tmp_path / "vllm.log"
    base._ENGINES.clear()


def test_vllm_sampling_params_carry_every_parameter(fake_vllm_installed):
    llm = mapgen.vLLM(
        "some/model",
        seed=0,
        top_k=20,
        min_p=0.05,
        stop=["."],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.1,
        generation_kwargs={"bad_words": ["never"]},
    )
    [completion] = answers(llm, PROMPTS[:1])
    assert completion.error is None
    [call] = [r for r in fake_vllm.read_log(fake_vllm_installed) if r["event"] == "chat"]
    params = call["params"][0]
    assert {k: params[k] for k in ("top_k", "min_p", "stop", "bad_words")} == {
        "top_k": 20,
        "min_p": 0.05,
        "stop": ["."],
        "bad_words": ["never"],
    }
    assert (params["presence_penalty"], params["frequency_penalty"], params["repetition_penalty"]) == (
        0.5,
        -0.5,
        1.1,
    )


def test_vllm_refuses_an_unknown_engine_option_before_generating(fake_vllm_installed):
    llm = mapgen.vLLM("some/model", generation_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match="bogus"):
        answers(llm, PROMPTS[:1])
