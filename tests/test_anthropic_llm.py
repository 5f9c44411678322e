"""AnthropicLLM against the Anthropic test server on 127.0.0.1 (tests/servers/anthropic_server.py), which
validates requests as Anthropic's API reference says: a body mapgen built wrong would fail there."""

from __future__ import annotations

import base64
import io
import json

import datasets
import pytest
from pydantic import BaseModel

import mapgen
from mapgen.core.prompt import Prompt
from mapgen.core.request import Request
from tests.test_structured import Owner  # the discriminated union


def claude(server, **kwargs) -> mapgen.AnthropicLLM:
    return mapgen.AnthropicLLM("claude-test", base_url=server.base_url, api_key=server.api_key, **kwargs)


def rows(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(n)]})


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_generate_sends_one_request_per_generation_and_stores_them(anthropic_server, transport):
    llm = claude(anthropic_server, transport=transport, temperature=0.5, max_new_tokens=16)
    out = rows(3).map(mapgen.generate(llm, num_generations=2), batched=True)
    assert out["generations"] == [[f"echo: row {i}"] * 2 for i in range(3)]
    assert out["generation_errors"] == [[None, None]] * 3
    meta = out["generation_metadata"][0][0]
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["finish_reason"]) == (2, 4, "stop")
    assert anthropic_server.stats()["messages"] == 6  # no n: one request per generation
    bodies = anthropic_server.requests()
    assert {b["temperature"] for b in bodies} == {0.5}  # accepted: mapgen sends anthropic-version 2023-06-01
    assert all("seed" not in b and "n" not in b for b in bodies)
    again = rows(3).map(mapgen.generate(llm, num_generations=2), batched=True)
    assert again["generations"] == out["generations"]
    assert anthropic_server.stats()["messages"] == 6  # the store answered the re-run


def test_system_prompt_multi_turn_and_stop_sequences(anthropic_server):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Say one, two. three"},
    ]
    ds = datasets.Dataset.from_dict({"messages": [chat]})
    out = ds.map(
        mapgen.generate(claude(anthropic_server, stop=["."]), mapgen.ChatGenerationTask()), batched=True
    )
    assert out["generations"] == [["echo: Say one, two"]]
    [body] = anthropic_server.requests()
    assert body["system"] == "Be brief." and [m["role"] for m in body["messages"]] == [
        "user",
        "assistant",
        "user",
    ]
    assert body["stop_sequences"] == ["."]


class Color(BaseModel):
    echo: str


def test_structured_output_through_a_forced_tool(anthropic_server):
    task = mapgen.StructuredTask(Color, template="Name a color for {{ input }}.")
    out = rows(2).map(mapgen.generate(claude(anthropic_server), task), batched=True)
    assert out["echo"] == [["Name a color for row 0."], ["Name a color for row 1."]]
    [body, _] = anthropic_server.requests()
    assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}


def test_a_discriminated_union_goes_whole_in_the_forced_tool(anthropic_server):
    # A tool's input_schema is JSON schema, oneOf included: the answer schema goes as it is, and its
    # answers say they were constrained by the forced tool
    dog = {"pet": {"pet_type": "dog", "barks": 2}}
    anthropic_server.configure(
        api_key=anthropic_server.api_key, replies=[{"tool_use": {"name": "answer", "input": dog}}]
    )
    out = rows(2).map(mapgen.generate(claude(anthropic_server), mapgen.StructuredTask(Owner)), batched=True)
    assert out["generation_errors"] == [[None], [None]]
    assert [json.loads(pet) for [pet] in out["pet"]] == [{"pet_type": "dog", "barks": 2.0}] * 2
    assert [meta["schema_style"] for [meta] in out["generation_metadata"]] == ["tool_use", "tool_use"]
    [body, _] = anthropic_server.requests()
    assert body["tools"][0]["input_schema"] == mapgen.core.schema.answer_schema(Owner)
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}


def test_a_long_system_prompt_is_cached_and_read_back(anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, min_cache_tokens=50)
    system = "Answer as a careful teacher would, in one sentence. " * 10  # 90 words, about 130 tokens
    price = (3.0, 15.0, 0.3, 3.75)  # USD per million: input, output, cache reads, cache writes
    llm = claude(anthropic_server, cache_min_tokens=100, max_concurrency=1, price_per_million=price)
    answers = llm.complete([Request(Prompt(f"Question {i}", system=system)) for i in range(3)])
    assert [a.cached_tokens for a in answers] == [0, 90, 90]  # written by the first, read by the others
    assert [a.cache_write_tokens for a in answers] == [90, 0, 0]
    assert all(a.prompt_tokens == 92 for a in answers)  # uncached + cached: the whole prompt
    outputs = [a.completion_tokens for a in answers]
    assert answers[0].cost == pytest.approx((2 * 3.0 + 90 * 3.75 + outputs[0] * 15.0) / 1e6)
    assert answers[1].cost == pytest.approx((2 * 3.0 + 90 * 0.3 + outputs[1] * 15.0) / 1e6)
    off = claude(anthropic_server, cache_min_tokens=None).complete(
        [Request(Prompt("Question 9", system=system))]
    )
    assert off[0].cached_tokens == 0


def test_overloaded_and_rate_limited_requests_are_retried(anthropic_server):
    anthropic_server.configure(
        api_key=anthropic_server.api_key, fail_first=2, error_status=529, retry_after="0"
    )
    [answer] = claude(anthropic_server).complete([Request(Prompt("Hi"))])
    assert answer.text == "echo: Hi"
    anthropic_server.configure(api_key=anthropic_server.api_key, error_rate=1.0, retry_after="0")
    [failed] = claude(anthropic_server, max_retries=2).complete([Request(Prompt("Hi"))])
    assert failed.error_kind == "http_429" and "after 3 attempts" in failed.error


def test_a_malformed_request_fails_at_the_server_as_at_anthropic(anthropic_server):
    # A body field the API does not know: the server's validation refuses it (400, not retried).
    [answer] = claude(anthropic_server, extra_body={"temprature": 0.5}).complete([Request(Prompt("Hi"))])
    assert answer.error_kind == "http_400" and "temprature: Extra inputs are not permitted" in answer.error
    assert anthropic_server.stats()["total"] == 1
    # Version 2026-10-21 refuses temperature: mapgen refuses such a config before sending anything...
    with pytest.raises(ValueError, match="2026-10-21 takes no temperature"):
        claude(anthropic_server, api_version="2026-10-21", temperature=0.5)
    # ...and sends none under it, which the server accepts.
    [ok] = claude(anthropic_server, api_version="2026-10-21", temperature=1.0).complete(
        [Request(Prompt("Hi"))]
    )
    assert ok.text == "echo: Hi" and "temperature" not in anthropic_server.requests()[-1]


def jpeg_bytes() -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 3), "red").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("batch_api", [False, True])
def test_each_documented_image_input_reaches_anthropic_in_its_own_form(anthropic_server, batch_api):
    jpeg = jpeg_bytes()
    data_url = "data:image/jpg;base64," + base64.b64encode(jpeg).decode()  # image/jpg: a common misspelling
    images = [data_url, "https://example.com/a.png"]
    ds = datasets.Dataset.from_dict({"image": images})
    task = mapgen.TextGenerationTask(template="What is it?", image_column="image")
    llm = claude(anthropic_server, batch_api=batch_api, batch_poll_interval=0.02)
    out = ds.map(mapgen.generate(llm, task), batched=True)
    assert out["generation_errors"] == [[None]] * 2
    assert out["generations"] == [["echo: What is it?"]] * 2  # the server checks each body, batched too
    if batch_api:
        return
    bodies = anthropic_server.requests()
    sources = sorted((b["messages"][0]["content"][0]["source"] for b in bodies), key=lambda s: s["type"])
    jpeg_source = {"type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(jpeg).decode()}
    # The data: URL goes as the bytes it holds, with their own media type.
    assert sources == [jpeg_source, {"type": "url", "url": "https://example.com/a.png"}]


def test_refusals_and_thinking_are_read(anthropic_server):
    refusal = {"type": "message", "role": "assistant", "content": [], "stop_reason": "refusal", "usage": {}}
    thinking = {
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Blue is calm.", "signature": "sig"},
            {"type": "text", "text": "blue"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        replies=[{"contains": "Refuse", "body": refusal}, {"contains": "Think", "body": thinking}],
    )
    refused, thought = claude(anthropic_server).complete(
        [Request(Prompt("Refuse")), Request(Prompt("Think"))]
    )
    assert refused.error_kind == "refused"
    assert (thought.text, thought.reasoning) == ("blue", "Blue is calm.")


def test_a_wrong_key_stops_the_map_and_is_masked(anthropic_server):
    wrong = "sk-ant-wrong-key-0123456789"
    llm = mapgen.AnthropicLLM("claude-test", base_url=anthropic_server.base_url, api_key=wrong)
    with pytest.raises(mapgen.FatalAPIError, match="HTTP 401") as caught:
        rows(3).map(mapgen.generate(llm), batched=True)
    assert wrong not in str(caught.value)


def test_config_is_checked_and_fingerprinted(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValueError, match="needs an API key"):
        mapgen.AnthropicLLM("claude-sonnet-4-5").preflight()
    for bad in ({"temperature": 1.5}, {"min_p": 0.1}, {"seed": 1}, {"use_n": True}, {"stop": [" "]}):
        with pytest.raises(ValueError):
            mapgen.AnthropicLLM("claude", **bad)
    with pytest.raises(ValueError, match="thinking"):
        mapgen.AnthropicLLM("claude", thinking_budget=2048, max_new_tokens=4096)  # temperature 0.7
    base = mapgen.AnthropicLLM("claude", api_key="sk-ant-a")
    same = mapgen.AnthropicLLM(
        "claude", api_key="sk-ant-b", max_concurrency=8, cache_min_tokens=None, tpm=10_000
    )
    assert mapgen.fingerprint(mapgen.generate(base)) == mapgen.fingerprint(
        mapgen.generate(same)
    )  # keys and speed knobs do not count
    for other in (
        {"temperature": 0.1},
        {"api_version": "2026-10-21", "temperature": 1.0},
        {"base_url": "http://x"},
    ):
        assert mapgen.AnthropicLLM("claude", **other).fingerprint() != base.fingerprint()
    assert "sk-ant" not in repr(base)


def test_input_and_output_tokens_are_limited_apart(anthropic_server):
    llm = claude(anthropic_server, rpm=6000, tpm=100_000, output_tpm=50_000, max_new_tokens=8)
    [answer] = llm.complete([Request(Prompt("Hi"))])
    engine = llm.engine()
    assert answer.text == "echo: Hi"
    assert (engine.limiter.rpm, engine.limiter.tpm, engine.output_limiter.tpm) == (6000, 100_000, 50_000)
    assert llm.rate_tokens(10, 8) == (10, 8)  # tpm counts input only, output_tpm output only


class Essay(BaseModel):
    title: str
    body: str


def test_answers_cut_at_max_tokens_are_cuts_not_invalid_answers(anthropic_server):
    # The server cuts a text answer to max_tokens words (stop_reason max_tokens): finish_reason "length".
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        replies=[
            {"contains": "zq-essay", "reply": '{"title": "On rivers", "body": "Rivers begin in the hills."}'},
            {"contains": "zq-short", "reply": "Text 1\nRating: 4\nRationale: The answer is clear."},
            {"contains": "zq-long", "reply": "Text 1\nRating: 4\nRationale: The answer is clear."},
        ],
    )
    essays = datasets.Dataset.from_dict({"input": ["zq-essay"]})
    task = mapgen.StructuredTask(Essay)
    row = essays.map(mapgen.generate(claude(anthropic_server, max_new_tokens=4), task), batched=True)[0]
    assert row["generation_errors"] == ["length: cut at max_new_tokens=4"]
    assert row["generation_metadata"][0]["finish_reason"] == "length"
    assert anthropic_server.stats()["messages"] == 1  # not re-asked at the same limit
    rated = datasets.Dataset.from_dict({"input": ["zq-short", "zq-long"], "generations": [["a"], ["a"]]})
    judge = mapgen.UltraFeedbackTask()
    short = rated.select([0]).map(
        mapgen.label(claude(anthropic_server, max_new_tokens=4), judge), batched=True
    )
    long = rated.select([1]).map(
        mapgen.label(claude(anthropic_server, max_new_tokens=3), judge), batched=True
    )
    assert (short[0]["rating"], short[0]["labelling_error"]) == ([4.0], None)  # "Text 1 Rating: 4": it reads
    assert short[0]["labelling_metadata"]["finish_reason"] == "length"
    assert (long[0]["rating"], long[0]["labelling_error"]) == ([None], "length: cut at max_new_tokens=3")
