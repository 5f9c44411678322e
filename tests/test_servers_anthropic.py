"""The Anthropic test server follows Anthropic's API reference: exercised through the official ``anthropic``
SDK (the reference's executable form), so that a backend tested against it would work against the API."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.docs_examples import run_examples
from tests.servers.anthropic_schema import validate_params
from tests.servers.tokens import END_TOKENS, IMAGE_TOKENS, count_tokens

anthropic = pytest.importorskip("anthropic")

MODEL = "claude-test-1"


@pytest.fixture
def client(anthropic_server):
    return anthropic.Anthropic(
        base_url=anthropic_server.base_url, api_key=anthropic_server.api_key, max_retries=0
    )


def v1_client(anthropic_server):
    """A client sending ``anthropic-version: 2023-06-01``, the version with sampling parameters."""
    return anthropic.Anthropic(
        base_url=anthropic_server.base_url,
        api_key=anthropic_server.api_key,
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01"},
    )


def test_a_message_echoes_with_usage_counted_as_documented(client, anthropic_server):
    system = "You rate answers."
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": "Give one tip for sleeping well."}],
        metadata={"user_id": "u-1"},
    )
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.id.startswith("msg_") and message._request_id.startswith("req_")
    [block] = message.content
    assert block.type == "text" and block.text == "echo: Give one tip for sleeping well."
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    expected_input = count_tokens(system) + count_tokens("Give one tip for sleeping well.")
    assert message.usage.input_tokens == expected_input == 9
    assert message.usage.output_tokens == count_tokens(block.text) + END_TOKENS
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    counted = client.messages.count_tokens(
        model=MODEL, system=system, messages=[{"role": "user", "content": "Give one tip for sleeping well."}]
    )
    assert counted.input_tokens == expected_input
    assert anthropic_server.requests()[0]["system"] == system


def test_multi_turn_blocks_images_and_stops(client):
    image = base64.b64encode(b"\x89PNG not really").decode()
    message = client.messages.create(
        model=MODEL,
        max_tokens=5,
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "look at"},
            # consecutive user turns are combined into one, as the API does
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                    {"type": "text", "text": "this picture please"},
                ],
            },
        ],
    )
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5
    assert message.content[0].text == "echo: look at this picture"  # both user turns, cut to 5 words
    assert message.usage.input_tokens == 2 + 2 + 2 + IMAGE_TOKENS + 3
    stopped = client.messages.create(
        model=MODEL,
        max_tokens=50,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "go STOP here"}],
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "STOP"
    assert stopped.content[0].text == "echo: go "


def test_structured_output_through_tool_use(client, anthropic_server):
    tool = {
        "name": "rate",
        "description": "Record a rating",
        "input_schema": {"type": "object", "properties": {"rating": {"type": "integer"}}},
    }
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        replies=[{"contains": "Rate", "tool_use": {"name": "rate", "input": {"rating": 4}}}],
    )
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[tool],
        tool_choice={"type": "tool", "name": "rate"},
        messages=[{"role": "user", "content": "Rate this answer."}],
    )
    [block] = message.content
    assert message.stop_reason == "tool_use"
    assert block.type == "tool_use" and block.name == "rate" and block.input == {"rating": 4}
    assert block.id.startswith("toolu_")
    # Without a rule, a forced tool gets the echo as its input; the tool result goes back in the next turn.
    echoed = client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[tool],
        tool_choice={"type": "tool", "name": "rate"},
        messages=[{"role": "user", "content": "Anything"}],
    )
    assert echoed.content[0].input == {"echo": "Anything"}
    follow_up = client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[tool],
        messages=[
            {"role": "user", "content": "Rate this answer."},
            {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "saved"}],
            },
        ],
    )
    assert follow_up.content[0].text == "echo: saved"


def test_prompt_caching_writes_then_reads_the_marked_prefix(client, anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, min_cache_tokens=10)
    long_system = "Rate the answer on a scale from one to five and explain the rating in one sentence."
    system = [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    prefix = count_tokens(long_system)
    assert prefix >= 10

    def ask(question):
        messages = [{"role": "user", "content": question}]
        return client.messages.create(model=MODEL, max_tokens=20, system=system, messages=messages).usage

    first = ask("What is two plus two?")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (prefix, 0)
    assert first.cache_creation.ephemeral_5m_input_tokens == prefix
    assert first.input_tokens == count_tokens("What is two plus two?")
    second = ask("Name a prime number.")
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, prefix)
    assert second.input_tokens == count_tokens("Name a prime number.")
    # Another model has its own cache; a prefix under the minimum is neither written nor read.
    other = client.messages.create(
        model="claude-other", max_tokens=20, system=system, messages=[{"role": "user", "content": "Hi"}]
    ).usage
    assert other.cache_creation_input_tokens == prefix and other.cache_read_input_tokens == 0
    anthropic_server.configure(api_key=anthropic_server.api_key, min_cache_tokens=1000)
    small = ask("What is two plus two?")
    assert small.cache_creation_input_tokens == 0 and small.cache_read_input_tokens == 0
    assert small.input_tokens == prefix + count_tokens("What is two plus two?")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        (
            {"model": MODEL, "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Input",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages: at least one message is required"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 2},
            "n: Extra",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 0.5,
            },
            "temperature: Extra inputs are not permitted",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="},
                            }
                        ],
                    }
                ],
            },
            "messages.0.content.0.image.source.base64.media_type",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "tool_choice": {"type": "tool", "name": "missing"},
                "tools": [{"name": "rate", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "x"}],
            },
            "Tool 'missing' not found",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "system": [
                    {"type": "text", "text": f"b{i}", "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ],
                "messages": [{"role": "user", "content": "x"}],
            },
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}],
            },
            "previous message does not contain any tool_use blocks",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": ""}]},
            "non-empty content",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "The answer is "},
                ],
            },
            "final assistant content cannot end with trailing whitespace",
        ),
    ],
)
def test_malformed_requests_are_the_sdks_bad_request_error(client, body, message):
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    assert raised.value.status_code == 400
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert message in raised.value.body["error"]["message"]


def image_body(source: dict) -> dict:
    content = [{"type": "image", "source": source}, {"type": "text", "text": "What is it?"}]
    return {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": content}]}


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
NOT_HTTP = "source.url.url: Only HTTP(S) URLs are supported"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Anthropic fetches a url source over HTTP(S): a data: URL is no url source (it goes as base64).
        ({"type": "url", "url": f"data:image/png;base64,{PNG}"}, NOT_HTTP),
        ({"type": "url", "url": "ftp://example.com/a.png"}, NOT_HTTP),
        ({"type": "url", "url": "example.com/a.png"}, NOT_HTTP),
        ({"type": "base64", "media_type": "image/png", "data": "not base64!"}, "Invalid base64 data"),
        ({"type": "base64", "media_type": "image/jpg", "data": PNG}, "source.base64.media_type"),
        ({"type": "base64", "data": PNG}, "source.base64.media_type: Field required"),
        ({"type": "path", "path": "/tmp/a.png"}, "messages.0.content.0.image.source"),
        ({"url": "https://example.com/a.png"}, "messages.0.content.0.image.source"),
    ],
)
def test_image_sources_are_checked_as_the_api_reference_states(client, source, message):
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post("/v1/messages", body=image_body(source), cast_to=anthropic.types.Message)
    assert raised.value.status_code == 400
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert message in raised.value.body["error"]["message"]


@pytest.mark.parametrize(
    "source",
    [
        {"type": "url", "url": "https://example.com/a.png"},
        {"type": "url", "url": "http://example.com/a.png"},
        {"type": "base64", "media_type": "image/png", "data": PNG},
    ],
)
def test_well_formed_image_sources_are_taken(client, source):
    answer = client.post("/v1/messages", body=image_body(source), cast_to=anthropic.types.Message)
    assert answer.content[0].text == "echo: What is it?"


def test_version_2023_06_01_takes_sampling_parameters_within_range(anthropic_server):
    client = v1_client(anthropic_server)
    ok = client.messages.create(
        model=MODEL,
        max_tokens=20,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"temperature": 0.2},
    )
    assert ok.content[0].text == "echo: hi"
    with pytest.raises(
        anthropic.BadRequestError, match="temperature: Input should be less than or equal to 1"
    ):
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"temperature": 1.5},
        )
    assert (
        validate_params({"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
        is None
    )


def test_keys_and_versions_are_checked(anthropic_server):
    wrong = anthropic.Anthropic(base_url=anthropic_server.base_url, api_key="sk-ant-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        wrong.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    # x-api-key, the header the API documents, wins over the Bearer header the 2.x SDKs send
    keyed = anthropic.Anthropic(
        base_url=anthropic_server.base_url,
        api_key="sk-ant-wrong",
        max_retries=0,
        default_headers={"x-api-key": anthropic_server.api_key},
    )
    assert keyed.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
    ).content
    unversioned = anthropic.Anthropic(
        base_url=anthropic_server.base_url,
        api_key=anthropic_server.api_key,
        max_retries=0,
        default_headers={"anthropic-version": "2020-01-01"},
    )
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        unversioned.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_rate_limits_overload_and_unknown_models(client, anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, fail_first=1, retry_after="7")
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    headers = raised.value.response.headers
    assert headers["retry-after"] == "7" and int(headers["anthropic-ratelimit-requests-limit"]) > 0
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    answer = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    limit = int(answer.headers["anthropic-ratelimit-input-tokens-limit"])
    assert int(answer.headers["anthropic-ratelimit-input-tokens-remaining"]) == limit - 1
    anthropic_server.configure(api_key=anthropic_server.api_key, error_rate=1.0, error_status=529)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert (
        overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
    )
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        models=[MODEL],
        rate_limits={"requests": 1, "input_tokens": 100, "output_tokens": 100},
        enforce_rate_limits=True,
    )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1


def batch_request(custom_id, text, **params):
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": text}],
            **params,
        },
    }


def test_a_batch_is_created_polled_and_its_results_read(client, anthropic_server):
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        batch_delay=None,
        batch_results=[{"contains": "flaky", "type": "errored"}],
    )
    requests = [
        batch_request("q-1", "What is two plus two?"),
        batch_request("q-2", "a flaky one"),
        batch_request("q-3", "bad params", temperature=0.5),  # refused by this version, when processed
    ]
    batch = client.messages.batches.create(requests=requests)
    assert batch.type == "message_batch" and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 3
    assert batch.results_url is None and batch.expires_at > batch.created_at
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    anthropic_server.control_batch(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None and ended.results_url
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 2)
    results = {item.custom_id: item.result for item in client.messages.batches.results(batch.id)}
    assert results["q-1"].type == "succeeded"
    assert results["q-1"].message.content[0].text == "echo: What is two plus two?"
    assert results["q-1"].message.usage.service_tier == "batch"
    assert results["q-1"].message.usage.input_tokens == count_tokens("What is two plus two?")
    assert results["q-2"].type == "errored" and results["q-2"].error.error.type == "api_error"
    assert results["q-3"].error.error.type == "invalid_request_error"
    assert "temperature" in results["q-3"].error.error.message
    assert [b.id for b in client.messages.batches.list(limit=5)] == [batch.id]
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_batch_cancel_and_expiry_keep_what_was_processed(client, anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, batch_delay=None)
    requests = [batch_request(f"r{i}", f"question {i}") for i in range(4)]
    cancelled = client.messages.batches.create(requests=requests)
    anthropic_server.control_batch(cancelled.id, processed=1)
    assert client.messages.batches.cancel(cancelled.id).processing_status == "canceling"
    after = client.messages.batches.retrieve(cancelled.id)
    assert after.processing_status == "ended" and after.cancel_initiated_at is not None
    assert (after.request_counts.succeeded, after.request_counts.canceled) == (1, 3)
    kinds = [item.result.type for item in client.messages.batches.results(cancelled.id)]
    assert kinds == ["succeeded", "canceled", "canceled", "canceled"]
    expiring = client.messages.batches.create(requests=requests)
    anthropic_server.control_batch(expiring.id, processed=2)
    anthropic_server.control_batch(expiring.id, expire=True)
    counts = client.messages.batches.retrieve(expiring.id).request_counts
    assert (counts.succeeded, counts.expired, counts.processing) == (2, 2, 0)
    first_page = client.messages.batches.list(limit=1)
    assert [b.id for b in first_page.data] == [expiring.id] and first_page.has_more  # newest first
    assert [b.id for b in first_page] == [expiring.id, cancelled.id]  # the SDK follows the pages
    assert [b.id for b in client.messages.batches.list(limit=1, after_id=expiring.id).data] == [cancelled.id]


def test_timed_batches_end_by_themselves(client, anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, batch_delay=0.0)
    batch = client.messages.batches.create(requests=[batch_request("only", "hello")])
    assert batch.processing_status == "in_progress"  # as created, even when it ends at once
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    [item] = client.messages.batches.results(batch.id)
    assert item.result.message.content[0].text == "echo: hello"


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "at least 1 item"),
        ([batch_request("bad id!", "x")], "custom_id: String should match pattern"),
        ([batch_request("a" * 65, "x")], "custom_id: String should match pattern"),
        ([batch_request("same", "x"), batch_request("same", "y")], "Duplicate custom_id"),
        ([batch_request("zero", "x", max_tokens=0)], "max_tokens"),
        ([batch_request(f"n{i}", "x") for i in range(4)], "at most 3 items"),
    ],
)
def test_batch_creation_validates_the_envelope(client, anthropic_server, requests, message):
    anthropic_server.configure(api_key=anthropic_server.api_key, max_batch_requests=3)
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.batches.create(requests=requests)


def test_batch_size_limit_is_a_413(client, anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, max_batch_bytes=2000)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.batches.create(requests=[batch_request("big", "word " * 1000)])
    assert raised.value.status_code == 413 and raised.value.body["error"]["type"] == "request_too_large"
    assert json.loads(raised.value.response.text)["type"] == "error"


def test_the_docs_example_runs(anthropic_server, capsys):
    path = Path(__file__).resolve().parents[1] / "docs" / "test_servers.md"
    replace = {
        "http://127.0.0.1:8124": anthropic_server.base_url,
        '"sk-ant-test"': f'"{anthropic_server.api_key}"',
    }
    assert run_examples(path, runner="test_servers_anthropic", replace=replace) == 1
    assert capsys.readouterr().out.strip() == "echo: Name a prime number. 4 6"
