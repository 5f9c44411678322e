"""Anthropic's Message Batches as a map mode (``AnthropicLLM(..., batch_api=True)``), against the Anthropic
test server's Message Batches API (:mod:`tests.servers.anthropic_batches`), which follows Anthropic's
reference (its creation checks included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

import mapgen
from mapgen.llms.provider_batches import AnthropicBatches
from mapgen.store import open_store

anthropic = pytest.importorskip("anthropic")

ROOT = Path(__file__).resolve().parents[1]


def batch_llm(server, **knobs):
    knobs = {"batch_api": True, "batch_poll_interval": 0.02, "max_new_tokens": 32, **knobs}
    return mapgen.AnthropicLLM("claude-test", base_url=server.base_url, api_key=server.api_key, **knobs)


def prompts(n):
    return datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(n)]})


def run(server, ds, **knobs):
    return ds.map(mapgen.generate(batch_llm(server, **knobs)), batched=True, batch_size=None)


def submitted(server):
    """custom_id -> the ids of the batches that held it: every request of the server's ended batches, read
    through the official SDK (the list of batches, each one's results)."""
    api = anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    seen: dict[str, list[str]] = {}
    for batch in api.messages.batches.list(limit=100).data:
        assert batch.processing_status == "ended", batch.id
        for item in api.messages.batches.results(batch.id):
            seen.setdefault(item.custom_id, []).append(batch.id)
    return seen


def answers(ds):
    return [g[0] for g in ds["generations"]]


def test_a_batch_map_submits_one_job_waits_and_stores_answers_a_synchronous_run_reuses(anthropic_server):
    ds = run(anthropic_server, prompts(5))
    assert answers(ds) == [f"echo: question {i}" for i in range(5)]
    assert ds["generation_errors"] == [[None]] * 5
    jobs = submitted(anthropic_server)
    assert len(jobs) == 5 and len({b for ids in jobs.values() for b in ids}) == 1
    assert all(len(key) == 64 for key in jobs)  # the store keys are the custom_ids
    assert anthropic_server.stats()["total"] == 1  # one POST /v1/messages/batches; no /v1/messages
    assert mapgen.counters.snapshot()["requests"] == 5
    store = open_store()
    assert len(store) == 5 and store.batch_jobs() == {}

    again = prompts(5).map(mapgen.generate(batch_llm(anthropic_server, batch_api=False)), batched=True)
    assert again["generations"] == ds["generations"]
    assert anthropic_server.stats()["total"] == 1  # every answer reused from the store


def test_batch_answers_carry_their_tokens_and_the_batch_discounted_cost(anthropic_server):
    price = (3.0, 15.0)  # USD per million input and output tokens
    ds = run(anthropic_server, prompts(2), price_per_million=price)
    [meta] = ds["generation_metadata"][0]
    assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] > 0  # the server's reported usage
    full = (meta["prompt_tokens"] * price[0] + meta["completion_tokens"] * price[1]) / 1e6
    assert meta["cost"] == pytest.approx(full / 2)  # the batch API's half price


def test_batch_wait_false_raises_pending_and_a_later_run_collects_without_submitting_again(anthropic_server):
    anthropic_server.configure(api_key=anthropic_server.api_key, batch_delay=None)
    with pytest.raises(mapgen.BatchPending) as pending:
        run(anthropic_server, prompts(3), batch_wait=False)
    [job] = pending.value.jobs
    assert job.startswith("msgbatch_") and pending.value.pending == 3
    assert {record.job_id for record in open_store().batch_jobs().values()} == {job}

    with pytest.raises(mapgen.BatchPending) as still:  # not done yet: polled, not submitted again
        run(anthropic_server, prompts(3), batch_wait=False)
    assert still.value.jobs == [job]

    anthropic_server.control_batch(job)
    ds = run(anthropic_server, prompts(3), batch_wait=False)
    assert answers(ds) == [f"echo: question {i}" for i in range(3)]
    assert anthropic_server.stats()["total"] == 1  # one batch created in all three runs
    assert open_store().batch_jobs() == {}


def test_expired_errored_and_cancelled_requests_are_none_with_their_kind_and_submitted_again(
    anthropic_server,
):
    overloaded = {"type": "overloaded_error", "message": "x"}
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        batch_results=[
            {"contains": "question 1", "type": "expired"},
            {"contains": "question 2", "type": "errored", "error": overloaded},
            {"contains": "question 3", "type": "canceled"},
        ],
    )
    ds = run(anthropic_server, prompts(5))
    errors = [e[0] for e in ds["generation_errors"]]
    assert answers(ds)[0] == "echo: question 0" and answers(ds)[4] == "echo: question 4"
    assert answers(ds)[1:4] == [None] * 3
    assert errors[1].startswith("batch_expired: ")
    assert errors[2].startswith("http_529: ") and "overloaded_error" in errors[2]  # as /v1/messages says
    assert errors[3].startswith("batch_cancelled: ")
    assert len(open_store()) == 2 and open_store().batch_jobs() == {}  # failures are not stored

    first = set(submitted(anthropic_server))
    anthropic_server.configure(api_key=anthropic_server.api_key)  # well again (and forgot its batches)
    again = run(anthropic_server, prompts(5))
    assert answers(again) == [f"echo: question {i}" for i in range(5)]
    resubmitted = submitted(anthropic_server)
    assert len(resubmitted) == 3 and set(resubmitted) <= first  # only the three that failed


def test_a_request_the_api_would_refuse_is_errored_with_its_http_kind(anthropic_server):
    # A batch checks each request's params when it processes them, as /v1/messages would: an unknown
    # model becomes an errored result with the not_found_error (404) the request alone would have had.
    anthropic_server.configure(api_key=anthropic_server.api_key, models=["claude-other"])
    ds = run(anthropic_server, prompts(1))
    assert ds["generations"] == [[None]]
    assert ds["generation_errors"][0][0].startswith("http_404: "), ds["generation_errors"]


def test_requests_are_split_to_the_providers_limits(anthropic_server, monkeypatch):
    monkeypatch.setattr(AnthropicBatches, "max_requests", 2)
    ds = run(anthropic_server, prompts(5))
    assert answers(ds) == [f"echo: question {i}" for i in range(5)]
    sizes: dict[str, int] = {}
    for ids in submitted(anthropic_server).values():
        for batch in ids:
            sizes[batch] = sizes.get(batch, 0) + 1
    assert sorted(sizes.values()) == [1, 2, 2]


def test_a_server_limit_refusal_fails_the_rows_and_the_next_run_submits_them(anthropic_server, monkeypatch):
    anthropic_server.configure(api_key=anthropic_server.api_key, max_batch_requests=2)
    ds = run(anthropic_server, prompts(3))
    assert ds["generations"] == [[None]] * 3
    assert all(e[0].startswith("http_400: ") and "at most 2" in e[0] for e in ds["generation_errors"])
    assert open_store().batch_jobs() == {} and len(open_store()) == 0

    monkeypatch.setattr(AnthropicBatches, "max_requests", 2)  # split to the server's limit
    ds = run(anthropic_server, prompts(3))
    assert answers(ds) == [f"echo: question {i}" for i in range(3)]


def test_a_rejected_key_stops_the_map_before_anything_is_submitted(anthropic_server):
    key = "sk-ant-wrong-key-123456"
    llm = mapgen.AnthropicLLM(
        "claude-test", base_url=anthropic_server.base_url, api_key=key, batch_api=True, max_retries=0
    )
    with pytest.raises(mapgen.FatalAPIError) as raised:
        prompts(2).map(mapgen.generate(llm), batched=True)
    assert key not in str(raised.value)
    assert open_store().batch_jobs() == {}


def test_the_example_killed_while_waiting_and_rerun_collects_its_job_without_paying_twice(
    anthropic_server, tmp_path
):
    """examples/batch_api.py with --provider anthropic: submit, kill -9 while it waits, re-run, collect."""
    anthropic_server.configure(api_key=anthropic_server.api_key, batch_delay=None)
    url = f"sqlite:///{tmp_path}/responses.sqlite3"
    command = [
        sys.executable,
        str(ROOT / "examples" / "batch_api.py"),
        *("--provider", "anthropic", "--base-url", anthropic_server.base_url),
        *("--api-key", anthropic_server.api_key, "--rows", "6", "--poll", "0.05", "--store", url),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = open_store(url)
    deadline = time.monotonic() + 60
    while not store.batch_jobs():  # the job id is committed before the example starts waiting
        assert child.poll() is None, child.stdout.read()
        assert time.monotonic() < deadline, "the example never recorded its job"
        time.sleep(0.05)
    time.sleep(0.3)  # it is polling now
    child.send_signal(signal.SIGKILL)
    child.wait()
    [job] = {record.job_id for record in store.batch_jobs().values()}
    anthropic_server.control_batch(job)  # the provider finishes the batch meanwhile

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answered 6 of 6" in done.stdout
    jobs = submitted(anthropic_server)
    assert len(jobs) == 6 and all(ids == [job] for ids in jobs.values())  # each request in one batch, once
    assert anthropic_server.stats()["total"] == 1 and store.batch_jobs() == {}
