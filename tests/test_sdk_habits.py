"""Habits from the SDKs: a keyword the SDKs use (``max_tokens``, ``n``, ``model=`` for a GGUF path), or a
misspelt one, names mapgen's own in the ``TypeError``, on every config class and map function."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

import mapgen
from mapgen.core.keywords import suggestion
from mapgen.llms.base import LLM
from mapgen.tasks.base import Task


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: mapgen.OpenAILLM("gpt-4o-mini", max_tokens=5), "did you mean 'max_new_tokens'"),
        (lambda: mapgen.OpenAILLM("gpt-4o-mini", max_completion_tokens=5), "did you mean 'max_new_tokens'"),
        (lambda: mapgen.AnthropicLLM("claude-x", max_tokens=5), "did you mean 'max_new_tokens'"),
        (lambda: mapgen.OpenAILLM("gpt-4o-mini", n=4), "mapgen.generate(llm, task, num_generations=...)"),
        (lambda: mapgen.OpenAILLM("gpt-4o-mini", api_base="http://x/v1"), "did you mean 'base_url'"),
        (lambda: mapgen.LlamaCppLLM(model="model.gguf"), "did you mean 'model_path'"),
        (lambda: mapgen.LlamaCppLLM(temprature=0.1), "did you mean 'temperature'"),
        (lambda: mapgen.TextGenerationTask(tempalte="{{ input }}"), "did you mean 'template'"),
        (lambda: mapgen.generate(mapgen.LlamaCppLLM(), n=3), "did you mean 'num_generations'"),
        (lambda: mapgen.generate(mapgen.LlamaCppLLM(), max_tokens=3), "belong to the LLM config"),
        (
            lambda: mapgen.label(mapgen.LlamaCppLLM(), mapgen.UltraFeedbackTask(), weighted=True),
            "did you mean 'weighted_ratings'",
        ),
        (lambda: mapgen.to_preference(None, pair="all"), "did you mean 'pairs'"),
        (lambda: mapgen.flatten(None, column="generations"), "did you mean 'columns'"),
        (lambda: mapgen.to_sft(None, n=1), "mapgen.generate(llm, task, num_generations=...)"),
        (lambda: mapgen.estimate(None, None, pilots=4), "did you mean 'pilot'"),
        (
            lambda: mapgen.GenerateFunction(mapgen.LlamaCppLLM(), mapgen.TextGenerationTask(), n=2),
            "did you mean 'num_generations'",
        ),
    ],
)
def test_a_wrong_keyword_names_the_close_match(make, message):
    with pytest.raises(TypeError, match="unexpected keyword argument") as raised:
        make()
    assert message in str(raised.value)


MAP_FUNCTIONS = (
    "generate", "label", "to_preference", "flatten", "to_sft", "summary", "estimate", "dataset_card",
    "push_to_hub", "push_to_argilla", "to_argilla", "GenerateFunction", "LabelFunction", "PipelineFunction",
)  # fmt: skip
"""The public functions that take options by keyword, and the map function classes."""


def config_classes():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return [
        cls
        for base in (LLM, Task)
        for cls in (base, *subclasses(base))
        if cls.__module__.startswith("mapgen")
    ]


@pytest.mark.parametrize(
    "make", [*config_classes(), *(getattr(mapgen, name) for name in MAP_FUNCTIONS)], ids=lambda f: f.__name__
)
def test_every_config_class_and_map_function_names_the_close_match(make):
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'max_tokenz'; (did you mean|it takes) "
    ):
        make(max_tokenz=1)


def test_an_unknown_name_lists_what_is_taken():
    assert suggestion("zzz", ["b", "a"]) == "it takes 'a', 'b'."
    with pytest.raises(TypeError) as raised:
        mapgen.UltraFeedbackTask(zzz=1)
    assert str(raised.value).endswith("it takes 'aspect', 'per_generation', 'system_prompt', 'template'.")


def test_signatures_pickling_and_replace_are_kept():
    llm = mapgen.OpenAILLM("gpt-4o-mini", max_new_tokens=5, api_key="sk-1")
    assert "max_new_tokens" in inspect.signature(mapgen.OpenAILLM).parameters
    assert "num_generations" in inspect.signature(mapgen.generate).parameters
    assert pickle.loads(pickle.dumps(llm)) == llm
    assert dataclasses.replace(llm, temperature=0.1).temperature == 0.1
    task = mapgen.TextGenerationTask()
    assert pickle.loads(pickle.dumps(task)) == task


# Proxies from the environment, as the SDKs honour them

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clear_proxies(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_a_proxy_in_http_proxy_receives_the_aiohttp_requests(fault_server, monkeypatch):
    from mapgen.core.prompt import Prompt
    from mapgen.core.request import Request
    from tests.servers.forward_proxy import ForwardProxy

    fault_server.configure(api_key=fault_server.api_key)
    clear_proxies(monkeypatch)
    llm = mapgen.OpenAILLM(
        "fault", base_url=fault_server.base_url, api_key=fault_server.api_key, transport="aiohttp", seed=7301
    )
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        answers = llm.complete([Request(Prompt("via the proxy"))])
    assert [a.text for a in answers] == ["echo: via the proxy"]
    chats = [seen for seen in proxy.seen if seen[1] == f"{fault_server.base_url}/chat/completions"]
    assert len(chats) == 1 and chats[0][0] == "POST"


def test_no_proxy_bypasses_the_proxy(fault_server, monkeypatch):
    from mapgen.core.prompt import Prompt
    from mapgen.core.request import Request
    from tests.servers.forward_proxy import ForwardProxy

    fault_server.configure(api_key=fault_server.api_key)
    clear_proxies(monkeypatch)
    llm = mapgen.OpenAILLM(
        "fault", base_url=fault_server.base_url, api_key=fault_server.api_key, transport="aiohttp", seed=7302
    )
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        answers = llm.complete([Request(Prompt("direct"))])
    assert [a.text for a in answers] == ["echo: direct"]
    assert proxy.seen == []


# default_headers (and OpenAI's organization and project): sent on both transports, kept as credentials


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_default_headers_organization_and_project_are_sent(fault_server, monkeypatch, transport):
    from mapgen.core.prompt import Prompt
    from mapgen.core.request import Request
    from tests.servers.forward_proxy import ForwardProxy

    fault_server.configure(api_key=fault_server.api_key)
    clear_proxies(monkeypatch)
    llm = mapgen.OpenAILLM(
        "fault",
        base_url=fault_server.base_url,
        api_key=fault_server.api_key,
        transport=transport,
        organization="org-test-1",
        project="proj-test-1",
        default_headers={"X-Gateway-Key": "gw-secret-123"},
        seed=7303,
    )
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        answers = llm.complete([Request(Prompt("headers"))])
    assert [a.text for a in answers] == ["echo: headers"]
    (headers,) = [{k.lower(): v for k, v in seen[2].items()} for seen in proxy.seen if seen[0] == "POST"]
    assert headers["x-gateway-key"] == "gw-secret-123"
    assert headers["openai-organization"] == "org-test-1"
    assert headers["openai-project"] == "proj-test-1"
    assert headers["authorization"] == f"Bearer {fault_server.api_key}"


def test_anthropic_default_headers_are_sent():
    llm = mapgen.AnthropicLLM("claude-x", api_key="sk-ant-1", default_headers={"X-Gateway-Key": "gw-1"})
    headers = llm.request_headers()
    assert headers["X-Gateway-Key"] == "gw-1" and headers["x-api-key"] == "sk-ant-1"
    assert "anthropic-version" in headers


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-1", **kw),
        lambda **kw: mapgen.AnthropicLLM("claude-x", api_key="sk-ant-1", **kw),
    ],
)
def test_headers_are_credentials_kept_out_of_fingerprints_store_keys_and_reprs(make):
    from mapgen.core.config import fingerprint_state

    plain = make()
    headed = make(default_headers={"X-Gateway-Key": "gw-secret-123"})
    assert fingerprint_state(headed) == fingerprint_state(plain)
    assert headed.store_fingerprint() == plain.store_fingerprint()
    assert headed == plain
    assert "gw-secret-123" not in repr(headed)
    assert "gw-secret-123" in headed.secrets()  # masked in error messages


def test_organization_and_project_stay_out_of_fingerprints_and_reprs():
    plain = mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-1")
    org = mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-1", organization="org-abc", project="proj-abc")
    assert org.fingerprint() == plain.fingerprint() and org.store_fingerprint() == plain.store_fingerprint()
    assert "org-abc" not in repr(org) and "proj-abc" not in repr(org)


def test_default_headers_must_be_strings():
    with pytest.raises(TypeError, match="default_headers"):
        mapgen.OpenAILLM("gpt-4o-mini", default_headers={"X-Count": 3})
