"""mapgen.counters and the Requests bar: totals over every num_proc worker, shown in the main process."""

import multiprocessing
import re

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
    expected = {"requests": 7, "reused": 0, "failed": 0, "retries": 3, "reasks": 0}
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
    assert requests_counted() == {"requests": 0, "reused": 12, "failed": 0, "retries": 0, "reasks": 0}


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
    assert requests_counted() == {"requests": 4, "reused": 0, "failed": 1, "retries": 2, "reasks": 0}
    assert re.search(r"4/4.*failed=1, retries=2", last_bar(capsys.readouterr().err))
