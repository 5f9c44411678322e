"""The wire formats alone, without a server: bodies built from Requests, answers read, malformed answers
refused. Each API backend is a wire format (this) plus the shared sending layer (tested against servers)."""

from __future__ import annotations

import base64

import pytest

import mapgen
from mapgen.core.prompt import Image, Prompt
from mapgen.core.request import Request
from mapgen.llms._http import APIError, to_api_error
from mapgen.llms.anthropic_wire import ANTHROPIC_MESSAGES
from mapgen.llms.openai_wire import OPENAI_CHAT

SCHEMA = {
    "title": "Color",
    "type": "object",
    "properties": {"color": {"type": "string"}},
    "required": ["color"],
}
CHAT = Prompt(
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a color."},
    ]
)


def test_each_backend_names_its_wire_format():
    assert mapgen.OpenAILLM("m", base_url="http://x/v1").wire is OPENAI_CHAT
    assert mapgen.InferenceEndpointsLLM("http://x").wire is OPENAI_CHAT
    assert mapgen.AnthropicLLM("claude").wire is ANTHROPIC_MESSAGES
    assert (OPENAI_CHAT.path, ANTHROPIC_MESSAGES.path) == ("/chat/completions", "/v1/messages")


def test_openai_body_from_a_request():
    llm = mapgen.OpenAILLM(
        "m", base_url="http://x/v1", temperature=0.3, seed=5, stop=".", extra_body={"k": 1}
    )
    body = OPENAI_CHAT.body(llm, Request(CHAT, index=2, schema=SCHEMA, top_logprobs=3), 1, "json_schema")
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["model"], body["temperature"], body["seed"], body["stop"], body["k"]) == (
        "m",
        0.3,
        7,
        ["."],
        1,
    )
    assert body["response_format"]["json_schema"]["strict"] is True
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert "n" not in body and "n" in OPENAI_CHAT.body(llm, Request(CHAT), 3, None)


def test_openai_answers_read_and_malformed_ones_refused():
    answer = {
        "choices": [
            {"index": 1, "message": {"content": "blue"}, "finish_reason": "stop"},
            {"index": 0, "message": {"content": "", "refusal": "no"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }
    first, second = OPENAI_CHAT.completions(answer, 2)
    assert (first.text, first.error_kind, second.text) == (None, "refused", "blue")
    assert OPENAI_CHAT.rate_usage(answer) == (4, 2)
    for malformed in (
        {},
        {"choices": []},
        {"choices": [{"text": "x"}]},
        {"choices": [{"message": {"content": 3}}]},
    ):
        with pytest.raises(APIError) as caught:
            OPENAI_CHAT.completions(malformed, 1)
        assert caught.value.kind == "invalid_answer" and caught.value.retryable


def test_anthropic_body_from_a_request():
    llm = mapgen.AnthropicLLM("claude", temperature=0.2, top_k=5, stop=["END"], max_new_tokens=32)
    body = ANTHROPIC_MESSAGES.body(llm, Request(CHAT, index=1), 1, None)
    assert body == {
        "model": "claude",
        "max_tokens": 32,
        "system": "Be brief.",  # top-level, not a message
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a color."},
        ],
        "temperature": 0.2,
        "top_k": 5,
        "stop_sequences": ["END"],
    }
    with pytest.raises(ValueError, match="once per request"):
        ANTHROPIC_MESSAGES.body(llm, Request(CHAT), 2, None)


def test_anthropic_structured_output_is_a_forced_tool_and_images_are_blocks():
    llm = mapgen.AnthropicLLM("claude")
    prompt = Prompt("Which color?", images=[Image(b"\x89PNG", "image/png")])
    body = ANTHROPIC_MESSAGES.body(llm, Request(prompt, schema=SCHEMA), 1, "tool_use")
    assert body["tools"] == [
        {
            "name": "Color",
            "description": "Give the answer by calling this tool with it as input.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "Color"}
    image, text = body["messages"][0]["content"]
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}
    assert text == {"type": "text", "text": "Which color?"}
    # past the last schema style: no tool, the task's tolerant parser reads the text
    assert "tools" not in ANTHROPIC_MESSAGES.body(llm, Request(prompt, schema=SCHEMA), 1, None)


def test_each_wire_format_says_how_a_body_carried_its_schema():
    # what each answer's metadata records (schema_style), and what is warned of as unconstrained
    llm = mapgen.OpenAILLM("m", base_url="http://x/v1")
    free = {"type": "object", "properties": {"counts": {"type": "object", "additionalProperties": True}}}
    sent = {
        (name, style): OPENAI_CHAT.schema_style_sent(
            OPENAI_CHAT.body(llm, Request(CHAT, schema=schema), 1, style)
        )
        for name, schema in (("strict", SCHEMA), ("free", free))
        for style in ("json_schema", "json_object", None)
    }
    assert sent == {
        ("strict", "json_schema"): "json_schema",
        ("free", "json_schema"): "json_schema_nonstrict",  # a dict field has no strict form
        ("strict", "json_object"): "json_object",
        ("free", "json_object"): "json_object",
        ("strict", None): "none",
        ("free", None): "none",
    }
    assert OPENAI_CHAT.schema_warning("json_schema", SCHEMA) is None
    assert "free-form object" in OPENAI_CHAT.schema_warning("json_schema_nonstrict", free)
    assert "not constrained" in OPENAI_CHAT.schema_warning("none", SCHEMA)
    forced, thinking = (
        mapgen.AnthropicLLM("claude"),
        mapgen.AnthropicLLM("claude", thinking_budget=1024, max_new_tokens=2048, temperature=1.0),
    )
    request = Request(CHAT, schema=SCHEMA)
    styles = [
        ANTHROPIC_MESSAGES.schema_style_sent(ANTHROPIC_MESSAGES.body(config, request, 1, style))
        for config, style in ((forced, "tool_use"), (thinking, "tool_use"), (forced, None))
    ]
    assert styles == ["tool_use", "tool_use_auto", "none"]
    assert ANTHROPIC_MESSAGES.schema_warning("tool_use_auto", SCHEMA) is None
    assert "not constrained" in ANTHROPIC_MESSAGES.schema_warning("none", SCHEMA)


def test_anthropic_sends_a_data_url_image_as_a_base64_source_and_only_http_urls_as_url_sources():
    # A prompt of a task's own can hold Image(url="data:..."): Anthropic fetches url sources over HTTP.
    data = base64.b64encode(b"\xff\xd8\xff\xe0").decode()
    prompt = Prompt("Which?", images=[Image(url=f"data:image/jpg;base64,{data}"), Image(url="https://a.b/c")])
    body = ANTHROPIC_MESSAGES.body(mapgen.AnthropicLLM("c"), Request(prompt), 1, None)
    first, second, _ = body["messages"][0]["content"]
    assert first["source"] == {"type": "base64", "media_type": "image/jpeg", "data": data}
    assert second["source"] == {"type": "url", "url": "https://a.b/c"}
    with pytest.raises(ValueError, match="http"):
        Image(url="ftp://example.com/a.png")


def test_anthropic_marks_a_long_system_prompt_for_caching():
    long, short = Prompt("Hi", system="rule " * 1000), Prompt("Hi", system="Be brief.")
    llm = mapgen.AnthropicLLM("claude")  # cache_min_tokens=1024: about 4,096 characters
    assert ANTHROPIC_MESSAGES.body(llm, Request(long), 1, None)["system"] == [
        {"type": "text", "text": "rule " * 1000, "cache_control": {"type": "ephemeral"}}
    ]
    assert ANTHROPIC_MESSAGES.body(llm, Request(short), 1, None)["system"] == "Be brief."
    off = mapgen.AnthropicLLM("claude", cache_min_tokens=None)
    assert isinstance(ANTHROPIC_MESSAGES.body(off, Request(long), 1, None)["system"], str)
    assert off == llm  # a knob: the answer is the same


def test_anthropic_answers_read():
    usage = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    thought = {"type": "thinking", "thinking": "Red is warm.", "signature": "s"}
    [c] = ANTHROPIC_MESSAGES.completions(
        {"content": [thought, {"type": "text", "text": "red"}], "stop_reason": "end_turn", "usage": usage}, 1
    )
    assert (c.text, c.reasoning, c.finish_reason) == ("red", "Red is warm.", "stop")
    assert (c.prompt_tokens, c.completion_tokens, c.cached_tokens) == (125, 7, 100)
    assert ANTHROPIC_MESSAGES.rate_usage({"usage": usage}) == (25, 7)  # cache reads do not count (ITPM)
    tool = {"type": "tool_use", "id": "toolu_1", "name": "Color", "input": {"color": "ré"}}
    [c] = ANTHROPIC_MESSAGES.completions({"content": [tool], "stop_reason": "tool_use"}, 1)
    assert (c.text, c.finish_reason) == ('{"color": "ré"}', "stop")
    [c] = ANTHROPIC_MESSAGES.completions({"content": [], "stop_reason": "refusal"}, 1)
    assert (c.text, c.error_kind, c.finish_reason) == (None, "refused", "content_filter")
    [c] = ANTHROPIC_MESSAGES.completions({"content": [thought], "stop_reason": "max_tokens"}, 1)
    assert (c.error_kind, c.reasoning, c.finish_reason) == ("empty_answer", "Red is warm.", "length")


@pytest.mark.parametrize(
    "malformed",
    [
        {},
        {"type": "error", "error": {"message": "Overloaded"}},
        {"content": "red"},
        {"content": [{"type": "x"}]},
    ],
)
def test_anthropic_malformed_answers_refused(malformed):
    with pytest.raises(APIError) as caught:
        ANTHROPIC_MESSAGES.completions(malformed, 1)
    assert caught.value.kind == "invalid_answer" and caught.value.retryable


def test_every_transports_errors_map_in_one_place():
    import anthropic
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://x/v1/messages")
    response = httpx2.Response(
        529,
        headers={"retry-after": "2"},
        json={"type": "error", "error": {"message": "Overloaded"}},
        request=request,
    )
    for sdk in (anthropic, openai):
        status = to_api_error(sdk.APIStatusError("overloaded", response=response, body=None))
        assert (status.kind, status.retryable, status.retry_after, str(status)) == (
            "http_529",
            True,
            2.0,
            "HTTP 529: Overloaded",
        )
        assert to_api_error(sdk.APITimeoutError(request), timeout=3).kind == "timeout"
        assert to_api_error(sdk.APIConnectionError(request=request)).kind == "connection"
    unauthorized = httpx2.Response(
        401, json={"error": {"message": "bad key sk-ant-abcdefgh"}}, request=request
    )
    error = to_api_error(
        anthropic.AuthenticationError("x", response=unauthorized, body=None), ["sk-ant-abcdefgh"]
    )
    assert error.fatal and "sk-ant" not in str(error)


def test_one_requests_usage_is_shared_among_its_n_answers():
    choices = [{"index": i, "message": {"content": f"answer {i}"}, "finish_reason": "stop"} for i in range(3)]
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 4}}
    answers = OPENAI_CHAT.completions({"choices": choices, "usage": usage}, 3)
    assert [(a.prompt_tokens, a.completion_tokens, a.cached_tokens) for a in answers] == [
        (4, 7, 2),
        (3, 7, 1),
        (3, 6, 1),
    ]
