"""The fault server's Files and Batch APIs follow OpenAI's reference: exercised through the official
``openai`` SDK, so that a batch mode tested against them would work against OpenAI."""

from __future__ import annotations

import json

import pytest

from tests.servers.tokens import END_TOKENS, count_tokens, openai_prompt_tokens

openai = pytest.importorskip("openai")

MODEL = "gpt-test"
ENDPOINT = "/v1/chat/completions"


@pytest.fixture
def client(fault_server):
    return openai.OpenAI(base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0)


def line(custom_id, text, model=MODEL, **extra):
    body = {
        "model": model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
    }
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body, **extra}


def upload(client, lines, name="requests.jsonl"):
    data = "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines).encode()
    return client.files.create(file=(name, data), purpose="batch")


def submit(client, lines, **options):
    uploaded = upload(client, lines)
    return client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", **options
    )


def read_lines(client, file_id):
    return [json.loads(text) for text in client.files.content(file_id).text.splitlines()]


def test_chat_usage_counts_every_message(client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a prime number?"},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=messages)
    text = answer.choices[0].message.content
    assert answer.usage.prompt_tokens == openai_prompt_tokens(messages) == 7
    assert answer.usage.completion_tokens == count_tokens(text) + END_TOKENS
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_file_is_uploaded_batched_and_its_output_read(client, fault_server):
    fault_server.configure(
        api_key=fault_server.api_key, batch_delay=None, replies=[{"contains": "broken", "status": 500}]
    )
    uploaded = upload(client, [line("a", "What is two plus two?"), line("b", "broken one")])
    assert uploaded.object == "file" and uploaded.purpose == "batch" and uploaded.status == "processed"
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
    assert json.loads(client.files.content(uploaded.id).text.splitlines()[0])["custom_id"] == "a"
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", metadata={"run": "test"}
    )
    assert batch.object == "batch" and batch.status == "validating" and batch.metadata == {"run": "test"}
    polled = client.batches.retrieve(batch.id)
    assert polled.status == "in_progress" and polled.request_counts.total == 2 and polled.model == MODEL
    fault_server.control_batch(batch.id, processed=1)
    assert client.batches.retrieve(batch.id).request_counts.completed == 1  # counts follow progress
    fault_server.control_batch(batch.id)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.completed_at is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    [output] = read_lines(client, done.output_file_id)
    assert output["custom_id"] == "a" and output["error"] is None and output["id"].startswith("batch_req_")
    assert output["response"]["status_code"] == 200 and output["response"]["request_id"]
    completion = output["response"]["body"]
    assert completion["choices"][0]["message"]["content"] == "echo: What is two plus two?"
    assert completion["usage"]["prompt_tokens"] == count_tokens("Be brief. What is two plus two?")
    assert done.usage.input_tokens == completion["usage"]["prompt_tokens"]
    [failed] = read_lines(client, done.error_file_id)
    assert failed["custom_id"] == "b" and failed["response"]["status_code"] == 500
    assert "error" in failed["response"]["body"]
    assert [b.id for b in client.batches.list(limit=10).data] == [batch.id]
    assert fault_server.stats()["total"] == 0  # batch items are not chat requests


def test_cancel_keeps_what_was_done(client, fault_server):
    fault_server.configure(api_key=fault_server.api_key, batch_delay=None)
    batch = submit(client, [line(f"r{i}", f"question {i}") for i in range(3)])
    client.batches.retrieve(batch.id)
    fault_server.control_batch(batch.id, processed=1)
    assert client.batches.cancel(batch.id).status == "cancelling"
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert [item["custom_id"] for item in read_lines(client, cancelled.output_file_id)] == ["r0"]
    errors = read_lines(client, cancelled.error_file_id)
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [
        ("r1", None, "batch_cancelled"),
        ("r2", None, "batch_cancelled"),
    ]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_expired_batches_return_partial_results(client, fault_server):
    fault_server.configure(
        api_key=fault_server.api_key, batch_delay=0.0, batch_results=[{"contains": "slow", "type": "expired"}]
    )
    batch = submit(client, [line("fast", "quick one"), line("slow", "a slow one")])
    expired = client.batches.retrieve(batch.id)
    assert expired.status == "expired" and expired.expired_at is not None
    assert (expired.request_counts.completed, expired.request_counts.failed) == (1, 1)
    assert read_lines(client, expired.output_file_id)[0]["custom_id"] == "fast"
    [error] = read_lines(client, expired.error_file_id)
    assert error["custom_id"] == "slow" and error["error"]["code"] == "batch_expired"
    # The control endpoint expires a batch whose requests are still waiting.
    fault_server.configure(api_key=fault_server.api_key, batch_delay=None)
    waiting = submit(client, [line("x", "one"), line("y", "two")])
    client.batches.retrieve(waiting.id)
    assert fault_server.control_batch(waiting.id, processed=1, expire=True)["status"] == "expired"
    assert client.batches.retrieve(waiting.id).request_counts.failed == 1


@pytest.mark.parametrize(
    ("lines", "code", "line_number"),
    [
        (["not json"], "invalid_json_line", 1),
        ([line("a", "x"), line("a", "y")], "duplicate_custom_id", 2),
        ([line("a", "x"), line("b", "y", model="other-model")], "mismatched_model", 2),
        ([{**line("a", "x"), "url": "/v1/embeddings"}], "invalid_url", 1),
        (
            [{key: value for key, value in line("a", "x").items() if key != "method"}],
            "missing_required_parameter",
            1,
        ),
        ([line(f"n{i}", "x") for i in range(4)], "too_many_requests", None),
    ],
)
def test_a_malformed_input_file_fails_the_batch(client, fault_server, lines, code, line_number):
    fault_server.configure(api_key=fault_server.api_key, max_batch_requests=3)
    batch = submit(client, lines)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert [(error.code, error.line) for error in failed.errors.data][:1] == [(code, line_number)]


def test_requests_are_validated_as_openai_does(client, fault_server):
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        upload(client, [line("a", "x")], name="requests.txt")
    fault_server.configure(api_key=fault_server.api_key, max_batch_file_bytes=100)
    with pytest.raises(openai.BadRequestError, match="too large"):
        upload(client, [line("a", "x" * 200)])
    fault_server.configure(api_key=fault_server.api_key)
    uploaded = upload(client, [line("a", "x")])
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="48h")
    assert window.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError, match="No such File"):
        client.batches.create(input_file_id="file-missing", endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    wrong_key = openai.OpenAI(base_url=fault_server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.files.create(file=("r.jsonl", b"{}\n"), purpose="batch")


def test_batches_list_pages_with_after(client, fault_server):
    batches = [submit(client, [line("a", f"x{i}")]) for i in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == [batches[2].id, batches[1].id] and page.has_more
    assert [b.id for b in page] == [b.id for b in reversed(batches)]  # the SDK follows `after`
    assert client.files.delete(batches[0].input_file_id).deleted
