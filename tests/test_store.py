"""The response store: re-runs reuse paid answers, a kill -9 loses at most what was in flight."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest

import mapgen
from mapgen.cli import main
from mapgen.explain import cache_differences, explain_cache
from mapgen.store import default_store


def echo_llm(server, **knobs):
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **knobs)


def prompts(n):
    return datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(n)]})


def test_an_in_memory_dataset_run_twice_sends_nothing_the_second_time(fault_server):
    ds = prompts(20)  # built in memory: datasets never caches its maps
    first = ds.map(mapgen.generate(echo_llm(fault_server), num_generations=2), batched=True)
    assert fault_server.stats()["total"] > 0
    fault_server.configure(api_key=fault_server.api_key)  # zero the counters

    # Knobs differ (concurrency, batch size): the stored answers still apply.
    second = ds.map(
        mapgen.generate(echo_llm(fault_server, max_concurrency=3), num_generations=2),
        batched=True,
        batch_size=7,
    )
    assert fault_server.stats()["total"] == 0
    assert second["generations"] == first["generations"]
    assert all(m["from_store"] for row in second["generation_metadata"] for m in row)
    assert not any(m["from_store"] for row in first["generation_metadata"] for m in row)
    assert mapgen.counters.snapshot()["reused"] == 40


def test_output_affecting_changes_send_again(fault_server):
    ds = prompts(5)
    ds.map(mapgen.generate(echo_llm(fault_server)), batched=True)
    fault_server.configure(api_key=fault_server.api_key)
    ds.map(mapgen.generate(echo_llm(fault_server, max_new_tokens=17)), batched=True)
    assert fault_server.stats()["total"] == 5
    fault_server.configure(api_key=fault_server.api_key)
    task = mapgen.TextGenerationTask(system_prompt="Be brief.")
    ds.map(mapgen.generate(echo_llm(fault_server), task), batched=True)
    assert fault_server.stats()["total"] == 5


def test_failed_rows_are_retried_on_the_next_run_and_only_they(fault_server):
    ds = prompts(10)
    fault_server.configure(api_key=fault_server.api_key, fail_first=3, error_status=500)
    first = ds.map(mapgen.generate(echo_llm(fault_server, max_retries=0, max_concurrency=1)), batched=True)
    assert sum(e != [None] for e in first["generation_errors"]) == 3

    fault_server.configure(api_key=fault_server.api_key)
    second = ds.map(mapgen.generate(echo_llm(fault_server, max_retries=0)), batched=True)
    assert fault_server.stats()["total"] == 3
    assert second["generations"] == [[f"echo: question {i}"] for i in range(10)]


def test_cache_false_always_sends(fault_server):
    ds = prompts(4)
    for _ in range(2):
        ds.map(mapgen.generate(echo_llm(fault_server), cache=False), batched=True)
    assert fault_server.stats()["total"] == 8
    assert len(default_store()) == 0


def test_num_proc_workers_share_the_store(fault_server):
    ds = prompts(40)
    ds.map(mapgen.generate(echo_llm(fault_server)), batched=True, batch_size=5, num_proc=2)
    assert len(default_store()) == 40
    fault_server.configure(api_key=fault_server.api_key)
    again = ds.map(mapgen.generate(echo_llm(fault_server)), batched=True, batch_size=5, num_proc=2)
    assert fault_server.stats()["total"] == 0
    assert again["generations"][39] == ["echo: question 39"]


RUN = """
import sys
import datasets, mapgen
base_url, api_key, rows, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ds = datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(rows)]})
llm = mapgen.OpenAILLM("fault", base_url=base_url, api_key=api_key, max_concurrency=16)
out = ds.map(mapgen.generate(llm), batched=True, batch_size=100)
out.to_json(output)
"""


def start_run(server, rows, output, env):
    command = [sys.executable, "-c", textwrap.dedent(RUN), server.base_url, server.api_key, str(rows), output]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_mid_run_then_rerun_resends_at_most_what_was_in_flight(fault_server, tmp_path):
    rows, max_concurrency = 1000, 16
    env = {**os.environ, "MAPGEN_CACHE_DIR": str(tmp_path / "store")}
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)

    run = start_run(fault_server, rows, str(tmp_path / "first.jsonl"), env)
    deadline = time.monotonic() + 60
    while fault_server.stats()["total"] < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    sent_before_kill = fault_server.stats()["total"]
    assert 400 <= sent_before_kill < rows, "the run must be killed in the middle"

    output = tmp_path / "second.jsonl"
    assert start_run(fault_server, rows, str(output), env).wait(timeout=120) == 0

    total = fault_server.stats()["total"]
    assert total <= rows + max_concurrency
    assert total - sent_before_kill < rows  # the re-run did not start over
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["generations"] for r in written] == [[f"echo: question {i}"] for i in range(rows)]


def test_explain_cache_names_what_differs():
    a = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.7), num_generations=1)
    b = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.7, n_threads=3), num_generations=2)
    c = mapgen.generate(
        mapgen.LlamaCppLLM(temperature=0.2), mapgen.TextGenerationTask(template="Q: {{ input }}")
    )
    assert cache_differences(a, b) == ["num_generations: 1 -> 2"]
    assert cache_differences(a, c) == [
        "llm.temperature: 0.7 -> 0.2",
        "task.template: '{{ input }}' -> 'Q: {{ input }}'",
    ]
    assert "num_generations: 1 -> 2" in explain_cache(a, b)
    assert explain_cache(a, mapgen.generate(mapgen.LlamaCppLLM(temperature=0.7, n_ctx=512))).startswith(
        "Same"
    )


def test_an_unhashable_callable_warns_at_construction():
    from dataclasses import dataclass, field

    @dataclass(frozen=True, kw_only=True)
    class StreamingTask(mapgen.TextGenerationTask):
        # A generator cannot be pickled: datasets could only give the map a random fingerprint.
        examples: object = field(default_factory=lambda: (line for line in ["a", "b"]))

    with pytest.warns(mapgen.CacheWarning, match="random fingerprint"):
        mapgen.generate(mapgen.LlamaCppLLM(), StreamingTask())


def test_cache_command_reports_and_clears(fault_server, capsys):
    prompts(3).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert main(["cache", "info"]) == 0
    assert "3 answers" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert len(default_store()) == 0


def test_a_progress_bar_counts_requests_and_shows_reuse_and_retries(fault_server, capsys):
    fault_server.configure(api_key=fault_server.api_key, fail_first=2, error_status=503)
    ds = prompts(6)
    ds.map(mapgen.generate(echo_llm(fault_server)), batched=True, batch_size=3)
    ds.select(range(4)).map(mapgen.generate(echo_llm(fault_server), num_generations=2), batched=True)
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()
    bars = [line for line in last if line.startswith("Requests")]
    assert bars, err[-2000:]
    # 6 rows, then 4 rows x 2 generations of which the first generation of each is stored: 10 requests.
    assert "10/10" in bars[-1]
    assert "retries=2" in bars[-1] and "reused=4" in bars[-1]
