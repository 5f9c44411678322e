"""The response store: re-runs reuse paid answers, a kill -9 loses at most what was in flight."""

import contextlib
import dataclasses
import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import datasets
import pytest

import mapgen
from mapgen.cli import main
from mapgen.core.paths import cache_dir
from mapgen.core.request import Completion
from mapgen.errors import StoreError
from mapgen.report.explain import cache_differences, explain_cache
from mapgen.runtime.processes import is_running, process_start
from mapgen.runtime.progress import request_progress
from mapgen.store import SQLiteStore, StoreWarning, default_store, open_store, store_url
from mapgen.store import base as store_base
from mapgen.store.base import MAX_UNCOMMITTED
from tests.test_progress import closed_bars


def echo_llm(server, **knobs):
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **knobs)


def prompts(n):
    return datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(n)]})


def behind_the_back(url, sql, params=()):
    """Run ``sql`` on the store at ``url`` as another client would (``{responses}``, ``{claims}``: its
    tables; ``?``: a parameter); the first column of what it returns."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows = connection.execute(sql.format(responses="responses", claims="claims"), params).fetchall()
        connection.commit()
        connection.close()
        return [row[0] for row in rows]
    import psycopg

    sql = sql.format(responses="mapgen_responses", claims="mapgen_claims").replace("?", "%s")
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return [row[0] for row in cursor.fetchall()] if cursor.description else []


def test_an_in_memory_dataset_run_twice_sends_nothing_the_second_time(store_url, fault_server):
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


def test_failed_rows_are_retried_on_the_next_run_and_only_they(store_url, fault_server):
    ds = prompts(10)
    fault_server.configure(api_key=fault_server.api_key, fail_first=3, error_status=500)
    first = ds.map(mapgen.generate(echo_llm(fault_server, max_retries=0, max_concurrency=1)), batched=True)
    assert sum(e != [None] for e in first["generation_errors"]) == 3

    fault_server.configure(api_key=fault_server.api_key)
    second = ds.map(mapgen.generate(echo_llm(fault_server, max_retries=0)), batched=True)
    assert fault_server.stats()["total"] == 3
    assert second["generations"] == [[f"echo: question {i}"] for i in range(10)]


def test_cache_false_always_sends(store_url, fault_server):
    ds = prompts(4)
    for _ in range(2):
        ds.map(mapgen.generate(echo_llm(fault_server), cache=False), batched=True)
    assert fault_server.stats()["total"] == 8
    assert len(default_store()) == 0


def test_num_proc_workers_share_the_store(store_url, fault_server):
    ds = prompts(40)
    assert len(default_store()) == 0  # opened here first: each forked worker must open its own connection
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


def test_kill_9_mid_run_then_rerun_resends_at_most_what_was_in_flight(store_url, fault_server, tmp_path):
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
    # Sent again: what was in flight, and answers received but not yet committed by the store's writer
    # thread (it commits each batch as soon as the previous one is done; put() waits past MAX_UNCOMMITTED).
    assert total <= rows + max_concurrency + MAX_UNCOMMITTED, f"{total - rows} sent twice"
    assert total - sent_before_kill < rows  # the re-run did not start over
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["generations"] for r in written] == [[f"echo: question {i}"] for i in range(rows)]


def test_two_runs_at_once_pay_for_each_answer_once(store_url, fault_server, tmp_path):
    rows, max_concurrency = 400, 16
    env = {
        **os.environ,
        "MAPGEN_CACHE_DIR": str(tmp_path / "store"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf"),
    }
    fault_server.configure(api_key=fault_server.api_key, latency=0.1)
    outputs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    runs = [start_run(fault_server, rows, str(output), env) for output in outputs]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    # each key is sent by one run while the other waits for its answer; at most what was in flight
    # when one run's claim went stale could go twice
    assert fault_server.stats()["total"] <= rows + max_concurrency
    for output in outputs:
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


def test_cache_command_reports_and_clears(store_url, fault_server, capsys):
    prompts(3).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert main(["cache", "info"]) == 0
    assert "3 answers" in capsys.readouterr().out
    # stdin is no terminal here: nothing is deleted without --yes, and the refusal names it.
    assert main(["cache", "clear"]) == 2
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert len(default_store()) == 3
    assert main(["cache", "clear", "--yes"]) == 0
    assert "Removed 3 answers" in capsys.readouterr().out
    assert len(default_store()) == 0


def test_cache_clear_by_model_and_by_age(store_url, fault_server, capsys):
    """``--model`` matches the name generation_model shows; ``--older-than`` takes answers from before
    this release (no time kept) as old; records that are not answers stay."""
    one = prompts(3).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert one["generation_model"] == [["fault"]] * 3
    prompts(2).map(mapgen.generate(echo_llm(fault_server, temperature=0.5)), batched=True)  # 2 keys more
    store = default_store()
    month = 30 * 86400
    store._write(  # the backend's own write of answers stored 31 days ago, and by an earlier release
        {
            "old": store_base.encode(
                Completion(text="a"), stored_by="other", stored_at=int(time.time()) - month - 86400
            ),
            "legacy": '{"text": "b"}',
        },
        [],
    )
    assert len(store) == 7
    assert main(["cache", "clear", "--older-than", "30d"]) == 0
    assert "Removed 2 answers" in capsys.readouterr().out and len(store) == 5
    assert main(["cache", "clear", "--model", "nobody"]) == 0
    assert "Removed 0 answers" in capsys.readouterr().out
    assert main(["cache", "clear", "--model", "fault", "--older-than", "1h"]) == 0  # both: none that old
    assert "Removed 0 answers" in capsys.readouterr().out and len(store) == 5
    assert main(["cache", "clear", "--model", "fault"]) == 0
    assert f"Removed 5 answers from {store.where}; 0 remain" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        main(["cache", "clear", "--older-than", "soon"])
    assert "'soon' is no age" in capsys.readouterr().err


def test_a_progress_bar_counts_requests_and_shows_reuse_and_retries(fault_server, capsys):
    fault_server.configure(api_key=fault_server.api_key, fail_first=2, error_status=503)
    ds = prompts(6)
    ds.map(mapgen.generate(echo_llm(fault_server)), batched=True, batch_size=3)
    ds.select(range(4)).map(mapgen.generate(echo_llm(fault_server), num_generations=2), batched=True)
    request_progress.close()  # its last totals drawn now, not by the drawing thread's next tick
    first, second = closed_bars(capsys.readouterr().err)  # a bar per map
    # 6 rows, then 4 rows x 2 generations of which the first generation of each is stored: 4 requests.
    assert "6/6" in first and "retries=2" in first and "reused=0" in first
    assert "4/4" in second and "retries=0" in second and "reused=4" in second


# A damaged store: what users have found in theirs after a full disk, a bad copy or a stray write.
GARBAGE = b"this is not a SQLite database\n" * 200


def damage(store):
    """Write garbage over the start of the store's file and its journal (those that exist, or the file)."""
    store.path.parent.mkdir(parents=True, exist_ok=True)
    for file in [f for f in store._files() if f.exists()] or [store.path]:
        with open(file, "r+b" if file.exists() else "wb") as out:
            out.write(GARBAGE)


def test_a_damaged_store_fails_the_map_before_sending_naming_the_file_and_the_way_out(fault_server):
    store = default_store()
    damage(store)
    with pytest.raises(StoreError) as raised:
        prompts(3).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert fault_server.stats()["total"] == 0
    message = str(raised.value)
    assert str(store.path) in message
    assert "mapgen cache clear" in message and "delete" in message and "cache=False" in message
    with pytest.raises(StoreError, match="damaged"):
        len(store)
    assert store.size_bytes() == len(GARBAGE)

    # cache=False runs without it; `mapgen cache clear` recovers it, and the next run stores again.
    out = prompts(3).map(mapgen.generate(echo_llm(fault_server), cache=False), batched=True)
    assert out["generations"] == [[f"echo: question {i}"] for i in range(3)]
    assert main(["cache", "clear"]) == 2  # no terminal to ask on: it says to pass --yes
    assert main(["cache", "clear", "--yes"]) == 0
    prompts(3).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert len(store) == 3


def test_clear_starts_afresh_when_the_file_and_its_journal_are_damaged(tmp_path):
    store = SQLiteStore(tmp_path / "responses.sqlite3")
    store.put("old", Completion(text="old answer"))
    store.flush()
    damage(store)  # the database, its write-ahead log and its shared memory file, while open
    with pytest.raises(StoreError, match=r"responses\.sqlite3"):
        store.get_many(["old"])
    store.clear()
    assert len(store) == 0
    store.put("new", Completion(text="new answer"))
    assert store.get_many(["old", "new"])["new"].text == "new answer"
    # Another process sees the new store too.
    assert SQLiteStore(store.path).get_many(["new"])["new"].text == "new answer"


def test_a_store_damaged_while_answers_arrive_warns_once_and_raises_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "responses.sqlite3")
    store.put("k0", Completion(text="stored"))
    store.flush()  # committed before the damage, as an answer of an earlier batch would be
    damage(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(1, 4):
            store.put(f"k{i}", Completion(text="paid for"))
        store.release(["k1"], owner="a")
    assert [w.category for w in caught] == [StoreWarning]
    assert str(store.path) in str(caught[0].message)
    assert "mapgen cache clear" in str(caught[0].message)
    store.clear()  # the way out also ends the warning's silence
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.put("k4", Completion(text="stored again"))
    assert not caught and len(store) == 1


@pytest.mark.parametrize("tables", [("responses",), ("responses", "claims")])
def test_a_store_that_refuses_writes_keeps_every_paid_answer_in_the_output(store_url, fault_server, tables):
    store = default_store()
    len(store)  # create it
    # Another writer makes every insert fail, as a full disk would (claims too): reads still work.
    for table in tables:
        if store_url.startswith("sqlite"):
            behind_the_back(
                store_url,
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
            )
        else:
            behind_the_back(
                store_url,
                "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
            )
            behind_the_back(
                store_url, f"CREATE TRIGGER refuse BEFORE INSERT ON mapgen_{table} EXECUTE FUNCTION refuse()"
            )
    with pytest.warns(StoreWarning, match=re.escape(store.where)) as caught:
        out = prompts(6).map(mapgen.generate(echo_llm(fault_server)), batched=True, batch_size=2)
    assert len([w for w in caught if w.category is StoreWarning]) == 1  # once, not per answer
    assert out["generations"] == [[f"echo: question {i}"] for i in range(6)]
    assert out["generation_errors"] == [[None]] * 6
    assert fault_server.stats()["total"] == 6 and len(store) == 0


@pytest.mark.parametrize("value", ["garbage{", '{"text": "ok", "logprob_sum": 1.5}'])
def test_a_damaged_answer_in_a_sound_file_is_a_store_error_and_unknown_fields_are_ignored(
    store_url, fault_server, value
):
    prompts(2).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    behind_the_back(store_url, "UPDATE {responses} SET value = ?", (value,))
    if value.startswith("{"):  # a newer mapgen's extra field: the answer is still read
        again = prompts(2).map(mapgen.generate(echo_llm(fault_server)), batched=True)
        assert again["generations"] == [["ok"], ["ok"]]
        return
    with pytest.raises(mapgen.StoreError, match=r"is damaged.*mapgen cache clear") as raised:
        prompts(2).map(mapgen.generate(echo_llm(fault_server)), batched=True)
    assert default_store().where in str(raised.value)


def test_a_stored_answer_that_is_not_text_is_asked_again(store_url, fault_server):
    # An earlier release stored content parts as they came: they must never come back as data.
    fn = mapgen.generate(echo_llm(fault_server))
    prompts(2).map(fn, batched=True)
    behind_the_back(
        store_url, """UPDATE {responses} SET value = '{{"text": [{{"type": "text", "text": "x"}}]}}'"""
    )
    fault_server.configure(api_key=fault_server.api_key)
    again = prompts(2).map(fn, batched=True)
    assert again["generations"] == [["echo: question 0"], ["echo: question 1"]]
    assert fault_server.stats()["total"] == 2  # asked again, and stored right this time
    keys = behind_the_back(store_url, "SELECT key FROM {responses}")
    assert sorted(answer.text for answer in default_store().get_many(keys).values()) == [
        "echo: question 0",
        "echo: question 1",
    ]


# Two runs on one store at once: a key another live process is sending is awaited, not sent again.
OTHER_RUN = """
import sys
from mapgen.core.request import Completion
from mapgen.store import open_store
store = open_store(sys.argv[1])
print(" ".join(store.claim(sys.argv[2:], owner="a")), flush=True)
for line in sys.stdin:
    command, key = line.split()
    if command == "put":
        store.put(key, Completion(text=f"a's answer to {key}"))
        store.flush()
    else:
        store.release([key], owner="a")
    print("done", flush=True)
"""


@pytest.fixture
def other_run(store_url):
    """Another process holding claims on k0..k4 of a store, storing or releasing keys on request."""
    keys = [f"k{i}" for i in range(5)]
    process = subprocess.Popen(
        [sys.executable, "-c", OTHER_RUN, store_url, *keys],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().split() == keys

    def tell(command, key):
        process.stdin.write(f"{command} {key}\n")
        process.stdin.flush()
        assert process.stdout.readline() == "done\n"

    process.tell = tell
    process.store = open_store(store_url)
    yield process
    process.kill()
    process.wait()


def test_a_claim_excludes_keys_another_live_process_is_sending(other_run):
    store = other_run.store
    assert store.claim(["k3", "k5", "k0", "k6"], owner="b") == ["k5", "k6"]
    # And a process's own claims are live to its other owners (two maps in one notebook).
    assert store.claim(["k5", "k7"], owner="c") == ["k7"]


def test_wait_for_returns_the_other_process_answers_once_it_stores_them(other_run):
    store = other_run.store
    got = {}
    waiting = threading.Thread(target=lambda: got.update(store.wait_for(["k0", "k1", "k2"], poll=0.01)))
    waiting.start()
    other_run.tell("put", "k0")
    other_run.tell("put", "k1")
    waiting.join(0.3)
    assert waiting.is_alive() and not got  # k2 is still being sent
    other_run.tell("release", "k2")  # k2 failed over there: released unanswered
    waiting.join(30)
    assert {key: answer.text for key, answer in got.items()} == {
        "k0": "a's answer to k0",
        "k1": "a's answer to k1",
    }
    assert all(answer.from_store for answer in got.values())
    # What was answered is no longer to claim; what was released is.
    assert store.claim(["k0", "k1", "k2", "k3"], owner="b") == ["k2"]


def test_a_claim_dies_with_its_process_even_by_kill_9(other_run):
    store = other_run.store
    assert store.claim(["k0", "k1"], owner="b") == []
    other_run.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, other_run.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: a zombie
    assert store.wait_for(["k0", "k1"]) == {}
    assert store.claim(["k0", "k1", "k2"], owner="b") == ["k0", "k1", "k2"]


def test_a_reused_pid_does_not_keep_a_dead_claim_alive():
    pid = os.getpid()
    assert is_running(pid, process_start(pid))
    if process_start(pid) is not None:  # where start times are known (Linux)
        assert not is_running(pid, process_start(pid) - 1)


def test_claims_and_waits_over_many_keys(tmp_path):
    store = SQLiteStore(tmp_path / "responses.sqlite3")
    keys = [f"key {i}" for i in range(2500)]  # more than one SQL statement's parameters
    assert store.claim(keys, owner="a") == keys
    assert store.claim(keys, owner="b") == []
    for key in keys[:2000]:
        store.put(key, Completion(text=key.upper()))
    store.release(keys[2000:], owner="a")
    answered = store.wait_for(keys)
    assert len(answered) == 2000 and answered["key 1999"].text == "KEY 1999"
    assert store.claim(keys[::-1], owner="b") == list(reversed(keys[2000:]))


# Choosing the store by URL, and what PostgreSQL adds: claims that live by a heartbeat across hosts.
def test_the_store_is_a_url_whose_password_never_shows_and_which_changes_no_fingerprint(monkeypatch):
    from datasets.fingerprint import Hasher

    monkeypatch.delenv("MAPGEN_STORE", raising=False)
    assert store_url(None) == f"sqlite:///{(cache_dir() / 'responses.sqlite3').absolute()}"
    monkeypatch.setenv("MAPGEN_STORE", "/data/answers.sqlite3")
    assert store_url(None) == "sqlite:////data/answers.sqlite3"
    url = "postgresql://app:hunter2@db.internal:5432/answers"
    llm = mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-test")
    fn = mapgen.generate(llm, store=url)
    assert "hunter2" not in repr(fn) and "app:***@db.internal" in repr(fn)
    assert fn.store == url  # the real URL is what connects
    assert Hasher.hash(fn) == Hasher.hash(mapgen.generate(llm))
    assert pickle.loads(pickle.dumps(fn)).store == url
    assert "hunter2" not in repr(pickle.loads(pickle.dumps(fn)))
    with pytest.raises(ValueError, match=r"redis://app:\*\*\*@cache") as raised:
        mapgen.generate(llm, store="redis://app:hunter2@cache:6379")
    assert "hunter2" not in str(raised.value)


def test_store_picks_the_store_of_one_map(fault_server, postgres_server):
    url = postgres_server.new_database()
    ds = prompts(3)
    ds.map(mapgen.generate(echo_llm(fault_server), store=url), batched=True)
    assert len(open_store(url)) == 3 and len(default_store()) == 0
    fault_server.configure(api_key=fault_server.api_key)
    again = ds.map(mapgen.generate(echo_llm(fault_server), store=url), batched=True)
    assert fault_server.stats()["total"] == 0 and again["generations"][2] == ["echo: question 2"]


def test_a_postgres_store_that_refuses_us_fails_before_sending_without_showing_the_password(
    fault_server, postgres_server
):
    wrong = postgres_server.url().replace(postgres_server.password, "not-the-password-42")
    with pytest.raises(mapgen.StoreError) as raised:
        prompts(2).map(mapgen.generate(echo_llm(fault_server), store=wrong), batched=True)
    message = str(raised.value)
    assert "not-the-password-42" not in message and "mapgen:***@127.0.0.1" in message
    assert "password authentication failed" in message and "cache=False" in message
    assert fault_server.stats()["total"] == 0


def test_a_claim_from_another_host_lives_while_its_heartbeat_does(postgres_server, monkeypatch):
    url = postgres_server.new_database()
    store = open_store(url)
    assert store.claim(["mine"], owner="a") == ["mine"]  # creates the tables, and this process's holder
    behind_the_back(
        url,
        "INSERT INTO mapgen_holders (id, host, pid, started) VALUES ('far', 'another-host/boot/ns', ?, 1)",
        (os.getpid(),),  # a pid that runs here: on another host it says nothing
    )
    behind_the_back(url, "INSERT INTO {claims} (key, owner, holder) VALUES ('k', 'far-run', 'far')")
    assert store.claim(["k", "free"], owner="b") == ["free"]
    behind_the_back(url, "UPDATE mapgen_holders SET seen = now() - interval '60 seconds' WHERE id = 'far'")
    assert store.wait_for(["k"]) == {}  # its lease ran out: nobody is sending it
    assert store.claim(["k"], owner="b") == ["k"]
    assert behind_the_back(url, "SELECT owner FROM {claims} WHERE key = 'k'") == ["b"]

    # This process's heartbeat keeps its own holder fresh while it lives.
    def seen():
        return behind_the_back(url, "SELECT seen FROM mapgen_holders WHERE id = ?", (store._holder,))[0]

    before = seen()
    monkeypatch.setattr(mapgen.store.postgres, "HEARTBEAT", 0.05)
    store._idle_interval, store._next_tick = 0.05, 0.0
    store.put("nudge", Completion(text="wakes the writer"))
    deadline = time.monotonic() + 30
    while seen() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen() > before


@contextlib.contextmanager
def restarting(server, *, down=2.0, when=lambda: True):
    """During the block, stop ``server`` once ``when()`` holds, and start it again ``down`` seconds later;
    the block's end waits for it to be up."""

    def restart():
        deadline = time.monotonic() + 30
        while not when() and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()
        time.sleep(down)
        server.start()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def store_warnings(caught):
    return [w for w in caught if issubclass(w.category, StoreWarning)]


def test_a_postgres_restart_mid_map_loses_no_answer(fault_server, restartable_postgres):
    rows, max_concurrency = 600, 16
    url = restartable_postgres.new_database()
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)
    fn = mapgen.generate(echo_llm(fault_server, max_concurrency=max_concurrency), store=url)
    # Down for 2 s while requests are in flight, past a third of the way.
    in_flight = lambda: fault_server.stats()["total"] >= 250  # noqa: E731
    with restarting(restartable_postgres, when=in_flight), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prompts(rows).map(fn, batched=True, batch_size=100)  # no StoreError escapes
    assert not store_warnings(caught)  # it came back: nothing to warn about
    assert out["generations"] == [[f"echo: question {i}"] for i in range(rows)]
    assert fault_server.stats()["total"] == rows

    fault_server.configure(api_key=fault_server.api_key)
    again = prompts(rows).map(fn, batched=True, batch_size=100)
    assert fault_server.stats()["total"] <= max_concurrency  # at most what was in flight
    assert again["generations"] == out["generations"]


def test_reads_during_a_postgres_outage_are_misses_and_a_claim_waits_for_the_database(restartable_postgres):
    store = open_store(restartable_postgres.new_database())
    store.put("answered", Completion(text="stored before"))
    assert store.claim(["theirs"], owner="another-run") == ["theirs"]  # a live owner is sending it
    restartable_postgres.stop()
    with restarting(restartable_postgres), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.get_many(["answered", "theirs", "free"]) == {}  # a miss, not a StoreError
        # Not granted while the database is down: it would pay again for what the other run sends.
        assert store.claim(["answered", "theirs", "free"], owner="me") == ["free"]
    assert not store_warnings(caught)
    assert store.get_many(["answered"])["answered"].text == "stored before"


def test_an_outage_across_a_batch_start_lets_the_map_go_on_and_pays_nothing_twice(
    fault_server, restartable_postgres
):
    url = restartable_postgres.new_database()
    fn = mapgen.generate(echo_llm(fault_server), store=url)
    prompts(100).map(fn, batched=True)
    fault_server.configure(api_key=fault_server.api_key)
    restartable_postgres.stop()  # between two maps: the next batch starts while it is down
    with restarting(restartable_postgres), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prompts(200).map(fn, batched=True, batch_size=50)
    assert not store_warnings(caught)
    assert out["generations"] == [[f"echo: question {i}"] for i in range(200)]
    assert fault_server.stats()["total"] == 100  # the 100 stored before were reused once it was back
    assert len(open_store(url)) == 200


def test_a_store_that_never_comes_back_warns_once_and_the_map_finishes(fault_server, restartable_postgres):
    url = restartable_postgres.new_database()
    open_store(url).outage_window = 1.0  # the knob: how long an outage is ridden out (minutes by default)
    fn = mapgen.generate(echo_llm(fault_server), store=url)
    prompts(10).map(fn, batched=True)
    fault_server.configure(api_key=fault_server.api_key)
    restartable_postgres.stop()
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prompts(60).map(fn, batched=True, batch_size=20)
    assert time.monotonic() - started < 20
    [warning] = store_warnings(caught)
    assert "mapgen:***@127.0.0.1" in str(warning.message) and restartable_postgres.password not in str(
        warning.message
    )
    assert out["generations"] == [[f"echo: question {i}"] for i in range(60)]
    assert fault_server.stats()["total"] == 60  # without the store, every row is sent

    restartable_postgres.start()  # back at last: the next batch's read finds it, and storing resumes
    fault_server.configure(api_key=fault_server.api_key)
    prompts(70).map(fn, batched=True, batch_size=20)
    assert fault_server.stats()["total"] == 60  # rows 10..69: only the first 10 were stored before
    assert len(open_store(url)) == 70


def test_a_sqlite_store_locked_by_another_connection_for_a_second_stores_every_answer(tmp_path):
    store = SQLiteStore(tmp_path / "responses.sqlite3")
    store.put("k0", Completion(text="stored"))
    store.flush()
    # A lock held longer than the busy timeout (60 s by default; 50 ms here, to keep the test short).
    store._connection.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    unlock = threading.Timer(1.0, other.execute, ("COMMIT",))
    unlock.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(1, 6):
            store.put(f"k{i}", Completion(text="paid for"))
        assert store.claim(["c"], owner="me") == ["c"]
        store.release(["c"], owner="me")
    unlock.join()
    other.close()
    assert not store_warnings(caught)
    assert len(store) == 6


def test_every_answer_field_is_stored_and_read_back_old_rows_and_unknown_keys_included():
    from mapgen.store.base import decode, encode

    # repaired: each read parses anew; retries: what sending it took, none for a reuse
    not_stored = ("error", "error_kind", "from_store", "repaired", "retries")
    kept = [f.name for f in dataclasses.fields(Completion) if f.name not in not_stored]
    for name in kept:  # generic: a field added to Completion is stored without a change to the store
        answer = Completion(text="t")
        setattr(answer, name, ["a value"] if name != "text" else "other")
        assert name in json.loads(encode(answer))
        assert getattr(decode(encode(answer)), name) == getattr(answer, name)
    assert json.loads(encode(Completion(text="t", error="x", error_kind="engine"))) == {"text": "t"}
    old_row = {f.name: None for f in dataclasses.fields(Completion)} | {"text": "old", "from_store": False}
    assert decode(json.dumps(old_row)) == Completion(text="old", from_store=True)
    assert decode('{"text": "new", "reasoning_tokens_of_2030": 7}').text == "new"
    assert "repaired" not in encode(Completion(text="t", repaired=True))
    assert "retries" not in encode(Completion(text="t", retries=3))


def test_the_postgres_example_of_the_docs_runs(fault_server, postgres_server, monkeypatch):
    from tests.docs_examples import run_examples

    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    url = postgres_server.new_database()
    docs = Path(__file__).resolve().parents[1] / "docs" / "store.md"
    replace = {
        "postgresql://mapgen:secret@db.internal/mapgen": url,
        "http://localhost:8000/v1": fault_server.base_url,
    }
    assert run_examples(docs, runner="test_store.py", replace=replace) == 2
    assert len(open_store(url)) == 1
