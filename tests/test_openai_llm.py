"""OpenAILLM against real servers on 127.0.0.1: llama.cpp's OpenAI-compatible server and the fault server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request

import datasets
import pytest

import mapgen
from mapgen.core.prompt import Prompt
from mapgen.core.request import Request


def rows(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(n)]})


def fault_llm(server, **kwargs) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **kwargs)


# llama.cpp's server, end to end


@pytest.mark.llamacpp
def test_generate_through_llamacpp_server(llamacpp_server):
    llm = mapgen.OpenAILLM("smollm2", base_url=llamacpp_server, temperature=0.0, max_new_tokens=8, seed=0)
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
    out = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generation_errors"] == [[None, None], [None, None]]
    assert all(isinstance(t, str) and t for g in out["generations"] for t in g)
    assert out["generation_model"][0] == ["smollm2", "smollm2"]
    # greedy with a seed per generation: the same prompt gives the same text
    assert out["generations"][0][0] == out["generations"][0][1]


@pytest.mark.llamacpp
def test_llamacpp_server_ignores_n_so_generations_are_asked_one_by_one(llamacpp_server):
    llm = mapgen.OpenAILLM("smollm2", base_url=llamacpp_server, temperature=1.0, max_new_tokens=4)
    answers = llm.complete([Request(Prompt("Say a word."), i) for i in range(3)])
    assert [a.error for a in answers] == [None, None, None]
    assert all(a.text for a in answers)
    assert llm.engine().n_supported is False


@pytest.mark.llamacpp
def test_structured_output_through_llamacpp_server(llamacpp_server):
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    llm = mapgen.OpenAILLM(
        "smollm2", base_url=llamacpp_server, temperature=0.0, max_new_tokens=24, seed=0, max_retries=1
    )
    [answer] = llm.complete([Request(Prompt("Name a color, as JSON."), 0, schema)])
    assert answer.error is None, answer.error
    assert isinstance(json.loads(answer.text)["color"], str)
    # llama-cpp-python's server rejects OpenAI's json_schema shape and takes json_object + schema
    assert llm.schema_styles[llm.engine().schema_style] == "json_object"


@pytest.mark.llamacpp
def test_sdk_transport_through_llamacpp_server(llamacpp_server):
    llm = mapgen.OpenAILLM(
        "smollm2", base_url=llamacpp_server, temperature=0.0, max_new_tokens=4, seed=0, transport="sdk"
    )
    [answer] = llm.complete([Request(Prompt("Say hi."))])
    assert answer.error is None and answer.text
    assert answer.completion_tokens is not None and answer.completion_tokens <= 4


# The fault server: concurrency, retries, n, secrets


def test_requests_run_concurrently_up_to_max_concurrency(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.2)
    llm = fault_llm(fault_server, max_concurrency=8, seed=0)
    start = time.perf_counter()
    answers = llm.complete([Request(Prompt(f"q{i}")) for i in range(40)])
    elapsed = time.perf_counter() - start
    assert [a.text for a in answers] == [f"echo: q{i}" for i in range(40)]
    assert fault_server.stats()["max_in_flight"] == 8
    assert 0.9 < elapsed < 2.5  # 5 rounds of 0.2 s, not 40


def test_every_row_completes_under_injected_429s(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.005, error_rate=0.1, retry_after="0")
    out = rows(300).map(mapgen.generate(fault_llm(fault_server), mapgen.TextGenerationTask()), batched=True)
    assert [g[0] for g in out["generations"]] == [f"echo: row {i}" for i in range(300)]
    assert all(e == [None] for e in out["generation_errors"])
    stats = fault_server.stats()
    assert stats["errors"] > 10
    assert stats["total"] == 300 + stats["errors"]
    assert mapgen.counters.snapshot()["retries"] == stats["errors"]


def test_retry_after_is_honoured(fault_server):
    fault_server.configure(api_key=fault_server.api_key, fail_first=1, retry_after="0.6")
    start = time.perf_counter()
    [answer] = fault_llm(fault_server).complete([Request(Prompt("x"))])
    assert answer.text == "echo: x"
    assert time.perf_counter() - start >= 0.6


def test_rows_fail_as_data_after_the_last_retry(fault_server):
    fault_server.configure(api_key=fault_server.api_key, error_rate=1.0, error_status=500, retry_after=None)
    out = rows(2).map(mapgen.generate(fault_llm(fault_server, max_retries=2)), batched=True)
    assert out["generations"] == [[None], [None]]
    for [error] in out["generation_errors"]:
        assert error.startswith("http_500: HTTP 500: injected 500") and "after 3 attempts" in error
    assert fault_server.stats()["total"] == 6
    assert mapgen.counters.snapshot()["retries"] == 4


def test_client_errors_are_not_retried(fault_server):
    fault_server.configure(api_key=fault_server.api_key, error_rate=1.0, error_status=400)
    [answer] = fault_llm(fault_server).complete([Request(Prompt("x"))])
    assert answer.text is None and answer.error.startswith("HTTP 400")
    assert fault_server.stats()["total"] == 1


def test_per_request_timeout(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=2.0)
    start = time.perf_counter()
    [answer] = fault_llm(fault_server, timeout=0.3, max_retries=0).complete([Request(Prompt("x"))])
    assert answer.text is None and "timed out" in answer.error
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_generations_share_one_request_with_n_unless_seeded(fault_server, transport):
    fault_server.configure(api_key=fault_server.api_key)
    fn = mapgen.generate(fault_llm(fault_server, transport=transport), num_generations=3)
    out = rows(4).map(fn, batched=True)
    assert out["generations"][1] == ["echo: row 1 #0", "echo: row 1 #1", "echo: row 1 #2"]
    assert fault_server.stats()["total"] == 4
    fault_server.configure(api_key=fault_server.api_key)
    fn = mapgen.generate(fault_llm(fault_server, transport=transport, seed=7), num_generations=3)
    out = rows(4).map(fn, batched=True)
    assert out["generations"][1] == ["echo: row 1"] * 3
    assert fault_server.stats()["total"] == 12


def test_a_prompt_too_long_for_the_context_fails_its_row_and_keeps_n(fault_server):
    # vLLM answers such a prompt with a 400 (tests/test_vllm_server.py): that is no refusal of n, which
    # the next rows still get in one request each.
    fault_server.configure(api_key=fault_server.api_key, max_context=50)
    llm = fault_llm(fault_server, max_concurrency=1, max_new_tokens=8)
    ds = datasets.Dataset.from_dict({"input": ["word " * 60, "short", "short too"]})
    out = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generations"][0] == [None, None]
    for error in out["generation_errors"][0]:
        assert error.startswith("http_400: HTTP 400: This model's maximum context length is 50 tokens.")
    assert out["generations"][1:] == [
        ["echo: short #0", "echo: short #1"],
        ["echo: short too #0", "echo: short too #1"],
    ]
    assert llm.engine().n_supported is True
    # the long prompt was asked once with n, then alone twice (to tell it from a refusal of n)
    assert sorted(str(body.get("n")) for body in fault_server.requests()) == ["2", "2", "2", "None", "None"]
    fault_server.configure(api_key=fault_server.api_key, max_context=50)
    rows(2).map(mapgen.generate(llm, num_generations=2), batched=True)
    assert [body.get("n") for body in fault_server.requests()] == [2, 2]  # later maps too


def test_a_server_that_refuses_n_is_asked_one_by_one(fault_server):
    fault_server.configure(api_key=fault_server.api_key, support_n="refuse")
    llm = fault_llm(fault_server, max_concurrency=1)
    out = rows(2).map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generations"] == [["echo: row 0"] * 2, ["echo: row 1"] * 2]
    assert llm.engine().n_supported is False
    sent = [body.get("n") for body in fault_server.requests()]
    assert sent[0] == 2 and sent.count(None) == 4  # refused, then each generation alone


def test_the_fault_server_refuses_what_vllm_refuses(fault_server):
    def answer(**body):
        request = urllib.request.Request(
            f"{fault_server.base_url}/chat/completions",
            json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **body}).encode(),
            {"Authorization": f"Bearer {fault_server.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = answer(continue_final_message=True)  # add_generation_prompt defaults to true
    assert status == 400 and "not compatible" in body["error"]["message"]
    status, body = answer(continue_final_message=True, add_generation_prompt=False)
    assert status == 200 and body["choices"][0]["message"]["role"] == "user"  # the turn continued
    fault_server.configure(api_key=fault_server.api_key, max_context=4)
    status, body = answer(max_tokens=8)
    assert status == 400 and body["error"]["param"] == "max_tokens"
    status, body = answer(messages=[{"role": "user", "content": "one two three four five"}], max_tokens=2)
    assert status == 400 and body["error"]["param"] == "input_tokens"


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_log_probabilities_are_asked_for_and_read_back(fault_server, transport):
    content = [
        {"token": "Rating: ", "logprob": 0.0, "top_logprobs": [{"token": "Rating: ", "logprob": 0.0}]},
        {
            "token": "4",
            "logprob": -0.7,
            "top_logprobs": [
                {"token": "4", "logprob": -0.7},
                {"token": "2", "logprob": -0.9},
                {"token": "4", "logprob": -5.0},  # another token id with the same text
                {"token": "x", "logprob": -3.0},
            ],
        },
    ]
    fault_server.configure(
        api_key=fault_server.api_key,
        default_reply="Rating: 4",
        replies=[{"contains": "rate", "reply": "Rating: 4", "logprobs": content}],
    )
    llm = fault_llm(fault_server, transport=transport)
    assert llm.supports_logprobs
    [answer, plain] = llm.complete([Request(Prompt("rate it"), top_logprobs=3), Request(Prompt("x"))])
    assert answer.text == "Rating: 4"
    assert answer.tokens == ["Rating: ", "4"]
    assert answer.top_logprobs == [{"Rating: ": 0.0}, {"4": -0.7, "2": -0.9}]  # cut to the 3 asked
    assert plain.tokens is None and plain.top_logprobs is None
    sent = {body["messages"][-1]["content"]: body for body in fault_server.requests()}
    assert (sent["rate it"]["logprobs"], sent["rate it"]["top_logprobs"]) == (True, 3)
    assert "logprobs" not in sent["x"] and "top_logprobs" not in sent["x"]
    # OpenAI's API takes at most 20
    llm.complete([Request(Prompt("rate again"), top_logprobs=50)])
    assert fault_server.requests()[-1]["top_logprobs"] == 20


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_the_key_never_reaches_an_error_message_or_repr(fault_server, transport):
    wrong = "sk-wrong-key-do-not-print-0123456789"
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=wrong, transport=transport)
    with pytest.raises(mapgen.errors.FatalAPIError) as raised:  # a bad key stops the map
        rows(1).map(mapgen.generate(llm), batched=True)
    error = str(raised.value)
    assert error.startswith("HTTP 401") and "Incorrect API key" in error
    assert wrong not in error and "do-not-print" not in error
    assert wrong not in repr(llm) and wrong not in str(mapgen.generate(llm))


def test_the_key_comes_from_the_environment(fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    [answer] = mapgen.OpenAILLM("fault", base_url=fault_server.base_url).complete([Request(Prompt("x"))])
    assert answer.text == "echo: x"


def test_openai_api_without_a_key_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        mapgen.OpenAILLM("gpt-4o-mini").complete([Request(Prompt("x"))])


FINGERPRINT = """
import sys, mapgen
llm = mapgen.OpenAILLM(sys.argv[1], api_key=sys.argv[2], max_concurrency=int(sys.argv[3]), rpm=100)
print(mapgen.fingerprint(mapgen.generate(llm)))
"""


def test_fingerprint_ignores_key_and_knobs_across_processes():
    def fingerprint(*args: str) -> str:
        command = [sys.executable, "-c", FINGERPRINT, *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    a = fingerprint("gpt-4o-mini", "sk-one-111111", "64")
    assert a == fingerprint("gpt-4o-mini", "sk-two-222222", "8")
    assert a != fingerprint("gpt-4o", "sk-one-111111", "64")


def test_async_map_path(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.01)
    fn = mapgen.generate(fault_llm(fault_server, max_concurrency=16))
    out = rows(50).map(fn.acall, batched=True, batch_size=10)
    assert [g[0] for g in out["generations"]] == [f"echo: row {i}" for i in range(50)]
    assert mapgen.fingerprint(fn.acall) == mapgen.fingerprint(mapgen.generate(fault_llm(fault_server)).acall)


def test_works_where_a_loop_is_already_running(fault_server):
    llm = fault_llm(fault_server)

    async def notebook_cell() -> list:
        return llm.complete([Request(Prompt("x"))])  # called synchronously inside a running loop

    [answer] = asyncio.run(notebook_cell())
    assert answer.text == "echo: x"


ACALL_IN_A_LOOP = """
import asyncio, os, datasets, mapgen

llm = mapgen.OpenAILLM("fault", base_url=os.environ["BASE_URL"], api_key=os.environ["KEY"])
fn = mapgen.generate(llm, cache=False)
ds = datasets.Dataset.from_dict({"input": ["row 0", "row 1"]})


async def notebook_cell(function):
    return ds.map(function(), batched=True)


try:
    asyncio.run(notebook_cell(lambda: fn.acall))
except RuntimeError as error:
    print("raised:", error)
print("fn:", asyncio.run(notebook_cell(lambda: fn))["generations"][:])
"""


def test_acall_in_a_running_loop_says_to_pass_fn(fault_server):
    """Inside a running loop (Jupyter), datasets' async map cannot run: one clear error naming ``fn``, and
    none of datasets' stray tracebacks on stderr (they print at exit: hence a process of its own)."""
    fault_server.configure(api_key=fault_server.api_key)
    env = {**os.environ, "BASE_URL": fault_server.base_url, "KEY": fault_server.api_key}
    done = subprocess.run([sys.executable, "-c", ACALL_IN_A_LOOP], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    raised, passed = done.stdout.splitlines()
    assert raised.startswith("raised: fn.acall is for datasets' async map") and "pass fn itself" in raised
    assert passed == "fn: [['echo: row 0'], ['echo: row 1']]"  # the advice works in the same loop
    assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr
    assert fault_server.stats()["total"] == 2  # nothing was sent for the refused map


def test_num_proc_workers(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.01)
    llm = fault_llm(fault_server)
    llm.complete([Request(Prompt("warm the parent's loop before the fork"))])
    out = rows(40).map(mapgen.generate(llm), batched=True, batch_size=10, num_proc=2)
    assert [g[0] for g in out["generations"]] == [f"echo: row {i}" for i in range(40)]


def test_config_errors_raise_before_any_request():
    with pytest.raises(ValueError, match="base_url"):
        mapgen.OpenAILLM("m", base_url="localhost:8000")
    with pytest.raises(ValueError, match="max_concurrency"):
        mapgen.OpenAILLM("m", max_concurrency=0)
    with pytest.raises(ValueError, match="rpm"):
        mapgen.OpenAILLM("m", rpm=-1)


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        (mapgen.OpenAILLM, "api_key"),
        (mapgen.AnthropicLLM, "api_key"),
        (mapgen.InferenceEndpointsLLM, "token"),
    ],
)
@pytest.mark.parametrize("url", ["http://user:s3cret@127.0.0.1:8124/v1", "https://s3cret@example.com"])
def test_a_base_url_with_credentials_is_refused_without_showing_them(backend, key, url):
    # aiohttp cannot send a key both in the URL and as a header, and a URL lands in reprs and records.
    # Every spelling, and every other URL field: tests/test_url_secrets.py.
    with pytest.raises(ValueError, match="must not hold credentials") as refused:
        backend("m", base_url=url)
    assert "s3cret" not in str(refused.value) and f"{key}=" in str(refused.value)


def test_the_parent_keeps_its_connections_after_num_proc_workers_fork(fault_server):
    # Regression: a forked worker that closed the sockets it inherited unregistered them from the epoll
    # instance it shares with the parent, whose next request on a pooled connection then never returned.
    llm = mapgen.OpenAILLM(
        "fork-check", base_url=fault_server.base_url, api_key=fault_server.api_key, timeout=3, max_retries=0
    )
    ds = datasets.Dataset.from_dict({"input": [f"q{i}" for i in range(8)]})
    ds.map(mapgen.generate(llm, cache=False), batched=True)  # pooled connections in the parent
    ds.map(mapgen.generate(llm, cache=False), batched=True, batch_size=2, num_proc=2)
    after = ds.map(mapgen.generate(llm, cache=False), batched=True)
    assert after["generation_errors"] == [[None]] * 8


# A batch's first rows are sent while the rest are prepared (MapFunction._process_overlapped)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptsAfterTheFirstRequest(mapgen.TextGenerationTask):
    """Builds the prompt of a row past the first ``head`` only once the server has received a request:
    were a batch wholly prepared before its first request, this would wait in vain."""

    stats_url: str
    head: int

    def prompt(self, row):
        if int(row["input"].split()[-1]) >= self.head:
            deadline = time.monotonic() + 30
            while json.load(urllib.request.urlopen(self.stats_url))["total"] == 0:
                assert time.monotonic() < deadline, "the batch was prepared whole before its first request"
                time.sleep(0.01)
        return super().prompt(row)


def test_a_batch_sends_its_first_rows_while_it_prepares_the_rest(fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)
    task = PromptsAfterTheFirstRequest(stats_url=f"{fault_server.root}/stats", head=4)
    out = rows(40).map(mapgen.generate(fault_llm(fault_server, max_concurrency=4), task), batched=True)
    assert out["generations"] == [[f"echo: row {i}"] for i in range(40)]
    assert fault_server.stats()["total"] == 40


def test_rows_repeating_the_first_rows_prompts_are_paid_once_in_order(store_url, fault_server):
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)
    inputs = [f"row {i % 12}" for i in range(48)]  # the first 4 rows go ahead; each prompt comes 4 times
    ds = datasets.Dataset.from_dict({"input": inputs})
    out = ds.map(mapgen.generate(fault_llm(fault_server, max_concurrency=4)), batched=True)
    assert out["generations"] == [[f"echo: {text}"] for text in inputs]
    assert fault_server.stats()["total"] == 12
    assert sum(m[0]["from_store"] for m in out["generation_metadata"]) == 36
