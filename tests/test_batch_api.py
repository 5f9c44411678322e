"""Provider batch APIs as a map mode (``batch_api=True``), against the fault server's Files and Batch APIs
(:mod:`tests.servers.openai_batches`), which follow OpenAI's reference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

import mapgen
from mapgen.llms.provider_batches import OpenAIBatches, split
from mapgen.store import BatchJob, open_store
from tests.servers.fixtures import default_sigint

openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]


def batch_llm(server, **knobs):
    knobs = {"batch_api": True, "batch_poll_interval": 0.02, **knobs}
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **knobs)


def prompts(n):
    return datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(n)]})


def run(server, ds, **knobs):
    return ds.map(mapgen.generate(batch_llm(server, **knobs)), batched=True, batch_size=None)


def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)


def submitted(server):
    """custom_id -> the ids of the batches whose input file held it: every request the server was sent."""
    api = client(server)
    seen: dict[str, list[str]] = {}
    for batch in api.batches.list(limit=100).data:
        for text in api.files.content(batch.input_file_id).text.splitlines():
            seen.setdefault(json.loads(text)["custom_id"], []).append(batch.id)
    return seen


def test_a_batch_map_submits_one_job_waits_and_stores_answers_a_synchronous_run_reuses(fault_server):
    ds = run(fault_server, prompts(5))
    assert [g[0] for g in ds["generations"]] == [f"echo: question {i}" for i in range(5)]
    assert ds["generation_errors"] == [[None]] * 5
    jobs = submitted(fault_server)
    assert len(jobs) == 5 and len({b for ids in jobs.values() for b in ids}) == 1
    assert fault_server.stats()["total"] == 0  # nothing went through /chat/completions
    assert mapgen.counters.snapshot()["requests"] == 5
    store = open_store()
    assert len(store) == 5 and store.batch_jobs() == {}  # answers stored, job records dropped

    # batch_api is a knob: the synchronous config has the same store keys and reuses every answer.
    again = prompts(5).map(mapgen.generate(batch_llm(fault_server, batch_api=False)), batched=True)
    assert again["generations"] == ds["generations"]
    assert fault_server.stats()["total"] == 0 and len(submitted(fault_server)) == 5


def test_batch_answers_carry_their_tokens_and_the_batch_discounted_cost(fault_server):
    price = (2.0, 8.0)  # USD per million input and output tokens
    ds = run(fault_server, prompts(2), price_per_million=price)
    [meta] = ds["generation_metadata"][0]
    assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] > 0  # the server's reported usage
    full = (meta["prompt_tokens"] * price[0] + meta["completion_tokens"] * price[1]) / 1e6
    assert meta["cost"] == pytest.approx(full / 2)  # the batch API's half price
    assert mapgen.counters.snapshot()["cost"] == pytest.approx(2 * full / 2 / 1e-9, rel=1e-3)


def test_batch_wait_false_raises_pending_and_a_later_run_collects_without_submitting_again(fault_server):
    fault_server.configure(api_key=fault_server.api_key, batch_delay=None)  # only control_batch moves it
    with pytest.raises(mapgen.BatchPending) as pending:
        run(fault_server, prompts(3), batch_wait=False)
    [job] = pending.value.jobs
    assert pending.value.pending == 3 and job in str(pending.value)
    assert {record.job_id for record in open_store().batch_jobs().values()} == {job}

    with pytest.raises(mapgen.BatchPending) as still:  # not done yet: polled, not submitted again
        run(fault_server, prompts(3), batch_wait=False)
    assert still.value.jobs == [job] and len(submitted(fault_server)) == 3

    fault_server.control_batch(job, processed=2)  # part done: a waiting run follows it to the end
    fault_server.control_batch(job)
    ds = run(fault_server, prompts(3), batch_wait=False)
    assert [g[0] for g in ds["generations"]] == [f"echo: question {i}" for i in range(3)]
    assert all(len(ids) == 1 for ids in submitted(fault_server).values())
    assert open_store().batch_jobs() == {}


def test_expired_and_failed_requests_are_none_with_their_kind_and_submitted_again(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        batch_results=[{"contains": "question 1", "type": "expired"}],
        replies=[{"contains": "question 2", "status": 500, "message": "overloaded"}],
    )
    ds = run(fault_server, prompts(4))
    assert ds["generations"][0] == ["echo: question 0"] and ds["generations"][3] == ["echo: question 3"]
    assert ds["generations"][1] == [None] and ds["generation_errors"][1][0].startswith("batch_expired: ")
    assert ds["generations"][2] == [None] and ds["generation_errors"][2][0].startswith("http_500: ")
    assert "overloaded" in ds["generation_errors"][2][0]
    assert len(open_store()) == 2 and open_store().batch_jobs() == {}  # failures are not stored

    first = set(submitted(fault_server))
    fault_server.configure(api_key=fault_server.api_key)  # the provider is well again (and forgot its jobs)
    again = run(fault_server, prompts(4))
    assert [g[0] for g in again["generations"]] == [f"echo: question {i}" for i in range(4)]
    resubmitted = submitted(fault_server)
    assert len(resubmitted) == 2 and set(resubmitted) <= first  # only the two that failed


def test_a_job_that_failed_as_a_whole_fails_its_rows_and_the_next_run_submits_them(fault_server, monkeypatch):
    fault_server.configure(api_key=fault_server.api_key, max_batch_requests=2)  # the server's limit is lower
    ds = run(fault_server, prompts(3))
    assert ds["generations"] == [[None]] * 3
    assert all(e[0].startswith("batch_failed: ") and "limit is 2" in e[0] for e in ds["generation_errors"])
    assert open_store().batch_jobs() == {} and len(open_store()) == 0

    monkeypatch.setattr(OpenAIBatches, "max_requests", 2)  # split to the server's limit
    ds = run(fault_server, prompts(3))
    assert [g[0] for g in ds["generations"]] == [f"echo: question {i}" for i in range(3)]


def test_requests_are_split_to_the_providers_limits(fault_server, monkeypatch):
    monkeypatch.setattr(OpenAIBatches, "max_requests", 2)
    run(fault_server, prompts(5))
    jobs = submitted(fault_server)
    sizes = {}
    for ids in jobs.values():
        for batch in ids:
            sizes[batch] = sizes.get(batch, 0) + 1
    assert sorted(sizes.values()) == [1, 2, 2]
    monkeypatch.setattr(OpenAIBatches, "max_requests", 50_000)
    provider = OpenAIBatches(batch_llm(fault_server))
    lines = [provider.line(f"c{i}", mapgen.Request(mapgen.Prompt("q"))) for i in range(4)]
    size = len(json.dumps(lines[0])) + 1
    assert [len(job) for job in split(lines, max_requests=10, max_bytes=2 * size)] == [2, 2]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl-C"])
def test_a_request_with_a_pending_job_is_never_submitted_again_by_a_killed_and_rerun_example(
    fault_server, tmp_path, stop
):
    """The batch example end to end: submit, kill -9 (or Ctrl-C) while it waits, re-run, collect; none paid
    twice."""
    fault_server.configure(api_key=fault_server.api_key, batch_delay=None)
    url = f"sqlite:///{tmp_path}/responses.sqlite3"
    command = [
        sys.executable,
        str(ROOT / "examples" / "batch_api.py"),
        *("--base-url", fault_server.base_url, "--api-key", fault_server.api_key),
        *("--rows", "6", "--poll", "0.05", "--store", url),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    child = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    store = open_store(url)
    deadline = time.monotonic() + 60
    while not store.batch_jobs():  # the job ids are committed before the example starts waiting
        assert child.poll() is None, child.stdout.read()
        assert time.monotonic() < deadline, "the example never recorded its job"
        time.sleep(0.05)
    time.sleep(0.3)  # it is polling now
    child.send_signal(stop)
    output = child.communicate(timeout=60)[0]
    [job] = {record.job_id for record in store.batch_jobs().values()}
    if stop == signal.SIGINT:  # one line that names the job, no traceback
        assert f"interrupted while waiting for batch job(s) {job}" in output and "Traceback" not in output
    fault_server.control_batch(job)  # the provider finishes the job meanwhile

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answered 6 of 6" in done.stdout
    jobs = submitted(fault_server)
    assert len(jobs) == 6 and all(ids == [job] for ids in jobs.values())  # each request in one batch, once
    assert fault_server.stats()["total"] == 0 and store.batch_jobs() == {}


def test_the_example_without_waiting_prints_its_pending_job(fault_server, tmp_path):
    fault_server.configure(api_key=fault_server.api_key, batch_delay=None)
    example = {}
    exec((ROOT / "examples" / "batch_api.py").read_text(), example)
    server = {"base_url": fault_server.base_url, "api_key": fault_server.api_key, "num_rows": 2}
    with pytest.raises(mapgen.BatchPending) as pending:
        example["main"](**server, wait=False)
    fault_server.control_batch(pending.value.jobs[0])
    ds = example["main"](**server, poll=0.02)
    assert all(g[0].startswith("echo: ") for g in ds["generations"])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_job_records_round_trip_in_both_stores(kind, tmp_path, request):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/responses.sqlite3"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    store = open_store(url)
    store.record_batch_jobs({"k1": BatchJob("batch_a", "k1"), "k2": BatchJob("batch_a", "k2")})
    store.record_batch_jobs({"k3": BatchJob("batch_b", "k3")})
    found = store.batch_jobs(["k1", "k3", "k9"])
    assert found == {"k1": BatchJob("batch_a", "k1"), "k3": BatchJob("batch_b", "k3")}
    store.forget_batch_jobs(["k1", "k3"])
    assert store.batch_jobs() == {"k2": BatchJob("batch_a", "k2")}
    store.clear()  # clearing answers keeps the jobs that are paid for and pending
    assert list(store.batch_jobs()) == ["k2"]


def test_batch_mode_is_a_knob_and_misconfiguration_fails_before_sending(fault_server):
    plain = mapgen.OpenAILLM("fault", base_url=fault_server.base_url)
    batched = batch_llm(fault_server, batch_wait=False, batch_poll_interval=5)
    assert plain == batched
    assert mapgen.fingerprint(mapgen.generate(plain)) == mapgen.fingerprint(mapgen.generate(batched))
    with pytest.raises(ValueError, match="cache=False"):
        mapgen.generate(batched, cache=False)
    with pytest.raises(ValueError, match="batch_poll_interval"):
        batch_llm(fault_server, batch_poll_interval=0)
    with pytest.raises(ValueError, match="no batch API"):
        mapgen.InferenceEndpointsLLM("some/model", batch_api=True)


def test_a_rejected_key_stops_the_map_before_anything_is_submitted(fault_server):
    key = "sk-wrong-key-123456"
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url, api_key=key, batch_api=True)
    with pytest.raises(mapgen.FatalAPIError) as raised:
        prompts(2).map(mapgen.generate(llm), batched=True)
    assert key not in str(raised.value)
    assert submitted(fault_server) == {} and open_store().batch_jobs() == {}
