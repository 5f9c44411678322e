"""mapgen.counters and the Requests bar: totals over every num_proc worker, shown in the main process, one
bar per ds.map."""

import multiprocessing
import os
import re
import subprocess
import sys
import textwrap

import datasets
import pytest

import mapgen
from mapgen.runtime import progress
from mapgen.runtime.progress import Counters, request_progress

fork = multiprocessing.get_context("fork")
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0, "priced": 0, "unpriced": 0}


def requests_counted() -> dict[str, int]:
    """The request counters (tokens and cost aside: tests/test_costs.py checks those)."""
    return {name: value for name, value in mapgen.counters.snapshot().items() if name not in ZERO_USAGE}


def run_in_children(target, count: int, **kwargs) -> None:
    children = [fork.Process(target=target, kwargs=kwargs) for _ in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [child.exitcode for child in children] == [0] * count


def test_forked_processes_add_to_the_parents_totals():
    counters = Counters()
    counters.add(requests=1)
    run_in_children(counters.add, 3, requests=2, retries=1)
    expected = {"requests": 7, "reused": 0, "failed": 0, "retries": 3, "reasks": 0, "truncated": 0}
    assert counters.snapshot() == expected | ZERO_USAGE


def test_processes_beyond_the_slots_share_the_last_one(monkeypatch):
    monkeypatch.setattr(progress, "MAX_SLOTS", 2)
    counters = Counters()
    counters.add(reused=1)
    run_in_children(counters.add, 4, reused=5)
    assert counters.snapshot()["reused"] == 21


def test_reset_and_unknown_names():
    counters = Counters()
    counters.add(failed=2)
    counters.reset()
    assert counters.snapshot() == dict.fromkeys(progress.COUNTERS, 0)
    with pytest.raises(TypeError, match=r"unknown counter 'request'; counters are \['requests'"):
        counters.add(request=1)


@pytest.fixture
def bars(monkeypatch):
    """datasets' progress bars on for the test, as they are for a user; the state is restored after."""
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.enable_progress_bars()
    yield
    request_progress.close()
    if was_enabled:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()


def num_proc_map(fault_server, rows: int):
    ds = datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(rows)]})
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key)
    return ds.map(mapgen.generate(llm), batched=True, batch_size=3, num_proc=2)


def test_a_num_proc_map_reports_every_workers_requests_in_the_parent(fault_server, bars, capsys):
    fault_server.configure(api_key=fault_server.api_key, fail_first=3)  # three 429s, Retry-After: 0
    out = num_proc_map(fault_server, 12)
    assert all(g[0] for g in out["generations"])
    request_progress.close()

    sent = fault_server.stats()["total"]
    totals = mapgen.counters.snapshot()
    assert (totals["requests"], totals["retries"], totals["reused"]) == (12, 3, 0)
    assert totals["requests"] + totals["retries"] == sent == 15
    # The parent sent nothing itself, yet its bar followed the workers to the end.
    assert re.search(r"Requests: 100%.*12/12.*retries=3", capsys.readouterr().err)

    # The same rows again (an in-memory dataset, which datasets does not cache): the workers reuse the
    # store's answers, and the parent counts them.
    mapgen.counters.reset()
    fault_server.configure(api_key=fault_server.api_key)
    num_proc_map(fault_server, 12)
    assert fault_server.stats()["total"] == 0
    assert requests_counted() == {
        "requests": 0,
        "reused": 12,
        "failed": 0,
        "retries": 0,
        "reasks": 0,
        "truncated": 0,
    }


def test_the_bar_follows_disable_progress_bars(fault_server, bars, capsys):
    datasets.disable_progress_bars()
    num_proc_map(fault_server, 4)
    request_progress.close()
    assert mapgen.counters.snapshot()["requests"] == 4
    assert "Requests" not in capsys.readouterr().err


def last_bar(err: str) -> str:
    """The Requests bar as it was last drawn (tqdm redraws a line in place with carriage returns, and the
    bar below datasets' Map bar after moving the cursor: the line may start with the Map bar's text)."""
    lines = re.split(r"[\r\n]", err)
    return [line[line.index("Requests:") :] for line in lines if "Requests:" in line][-1]


def test_the_bar_ends_on_the_failures_counted_after_the_last_answer(fault_server, bars, capsys):
    # A failure is counted once its batch is parsed, after the answer that ended the batch was drawn.
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"contains": "question 2", "status": 500, "message": "down"}]
    )
    ds = datasets.Dataset.from_dict({"input": [f"question {i}" for i in range(4)]})
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=2)
    out = ds.map(mapgen.generate(llm), batched=True, batch_size=4)
    request_progress.close()

    assert [g[0] is None for g in out["generations"]] == [False, False, True, False]
    assert requests_counted() == {
        "requests": 4,
        "reused": 0,
        "failed": 1,
        "retries": 2,
        "reasks": 0,
        "truncated": 0,
    }
    assert re.search(r"4/4.*failed=1, retries=2", last_bar(capsys.readouterr().err))


def closed_bars(err: str) -> list[str]:
    """Each Requests bar as it was drawn when it closed: a bar closes with its last line and a newline, where
    the draws before (below datasets' Map bar) end by moving the cursor back up."""
    last_parts = (chunk.split("\r")[-1] for chunk in err.split("\n"))
    return [part for part in last_parts if part.startswith("Requests:") and "\x1b[A" not in part]


def counts(bar: str) -> str:
    return re.search(r"\d+/\d+", bar).group()


@pytest.mark.parametrize("num_proc", [None, 2])
def test_each_map_gets_a_bar_of_its_own_counts(fault_server, bars, capsys, num_proc):
    # The second map's "question 2" fails: its bar, and its bar only, says so.
    down = {"contains": "map 1 question 2", "status": 500, "message": "down"}
    fault_server.configure(api_key=fault_server.api_key, replies=[down])
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0)
    for m in range(3):
        ds = datasets.Dataset.from_dict({"input": [f"map {m} question {i}" for i in range(5)]})
        ds.map(mapgen.generate(llm), batched=True, batch_size=2, num_proc=num_proc)

    bars = closed_bars(capsys.readouterr().err)
    assert [counts(bar) for bar in bars] == ["5/5", "5/5", "5/5"]
    assert [re.search(r"failed=(\d+)", bar).group(1) for bar in bars] == ["0", "1", "0"]
    assert mapgen.counters.snapshot()["requests"] == 15  # the counters themselves total every map


def test_a_map_of_a_function_that_wraps_mapgens_gets_a_bar_of_its_own(fault_server, bars, capsys):
    fault_server.configure(api_key=fault_server.api_key)
    fn = mapgen.generate(mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key))
    for m in range(2):
        ds = datasets.Dataset.from_dict({"input": [f"map {m} question {i}" for i in range(3)]})
        ds.map(lambda batch: fn(batch), batched=True)
    assert [counts(bar) for bar in closed_bars(capsys.readouterr().err)] == ["3/3", "3/3"]


def test_a_map_of_the_async_function_gets_a_bar_of_its_own(fault_server, bars, capsys):
    fault_server.configure(api_key=fault_server.api_key)
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key)
    for m in range(2):
        ds = datasets.Dataset.from_dict({"input": [f"map {m} question {i}" for i in range(4)]})
        ds.map(mapgen.generate(llm).acall, batched=True, batch_size=2)
    assert [counts(bar) for bar in closed_bars(capsys.readouterr().err)] == ["4/4", "4/4"]


def test_answers_cut_at_the_token_limit_are_counted_and_shown(fault_server, bars, capsys):
    cut = {"contains": "long", "reply": "Once upon a", "finish_reason": "length"}
    fault_server.configure(api_key=fault_server.api_key, replies=[cut])
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key)
    ds = datasets.Dataset.from_dict({"input": ["a long story", "a short one", "another long story"]})
    fn = mapgen.generate(llm)
    out = ds.map(fn, batched=True)
    assert [m[0]["finish_reason"] for m in out["generation_metadata"]] == ["length", "stop", "length"]
    assert mapgen.counters.snapshot()["truncated"] == 2
    [bar] = closed_bars(capsys.readouterr().err)
    assert re.search(r"3/3.*failed=0, truncated=2, retries=0", bar)

    # Reused from the store, they are the map's cut answers all the same (no request: no bar).
    ds.map(fn, batched=True, load_from_cache_file=False)
    assert mapgen.counters.snapshot()["truncated"] == 4


def test_a_bar_without_cut_answers_shows_no_truncated_count(fault_server, bars, capsys):
    fault_server.configure(api_key=fault_server.api_key)
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key)
    datasets.Dataset.from_dict({"input": ["a", "b"]}).map(mapgen.generate(llm), batched=True)
    [bar] = closed_bars(capsys.readouterr().err)
    assert "2/2" in bar and "truncated" not in bar


def test_the_bar_writes_to_stderr_as_it_is_when_drawing(bars, capsys):
    # A library swapped sys.stderr for /dev/null while the bar was made (llama-cpp-python does, loading a
    # model); once it is back, the bar's lines reach it.
    real = sys.stderr
    with open(os.devnull, "w") as null:
        sys.stderr = null
        try:
            request_progress.expect(1)
            request_progress.advance()  # all answered: drawn now, so made now
        finally:
            sys.stderr = real
    request_progress.expect(1)
    request_progress.advance()
    request_progress.close()
    assert [counts(bar) for bar in closed_bars(capsys.readouterr().err)] == ["2/2"]


SCRIPT = """
import datasets, mapgen

llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=1, seed=0)  # every answer cut at one token
for m in range(3):
    ds = datasets.Dataset.from_dict({"input": [f"Write a long story about dragon {m}{i}." for i in range(2)]})
    ds.map(mapgen.generate(llm), batched=True, batch_size=1)
    print("mapped", flush=True)
"""


@pytest.mark.llamacpp
def test_a_script_with_llamacpp_shows_a_bar_per_map(tmp_path):
    # llama-cpp-python points sys.stderr at /dev/null while it loads the model, in the first map.
    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mapped"] * 3
    bars = closed_bars(done.stderr)
    assert [counts(bar) for bar in bars] == ["2/2", "2/2", "2/2"]
    assert all("failed=0, truncated=2" in bar for bar in bars)
