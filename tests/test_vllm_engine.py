"""mapgen.vLLM on the real engine: vLLM's CPU build, the embedded model as safetensors (no download).

vLLM lives in a virtual environment of its own (tests/servers/vllm_env.py), so each case runs a script of
tests/real_vllm/ there, with this checkout on PYTHONPATH, and checks what it wrote. One process runs every
scenario that one engine can answer (scenarios.py); workers.py runs ``num_proc=2, with_rank=True`` with
no memory settings, through the response store, and is interrupted with Ctrl-C and kill -9. Every process
a script starts carries a tag in its environment, so the tests can see that no engine outlives its run.
What the CPU build cannot show (GPU placement, tensor parallelism) is tested against a double in
tests/test_vllm.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.servers.fixtures import ROOT, default_sigint
from tests.servers.vllm_fixtures import VLLMEnv, tagged_processes

SCRIPTS = ROOT / "tests" / "real_vllm"
ROWS = 8


class Dish(BaseModel):  # as in scenarios.py
    name: str
    minutes: int


ENGINE_PROCESSES = ("VLLM::", "multiprocessing.spawn", "reaper.py")
"""vLLM's engine (its processes name themselves ``VLLM::EngineCore``, ``VLLM::Worker``; before that they
are spawned interpreters) and mapgen's watcher of them."""


def wait_until_gone(tag: str, timeout: float = 30.0, *, engines_only: bool = False) -> None:
    """Wait until no process of the run is left (``engines_only``: no engine process); fail after
    ``timeout`` seconds, naming those left."""
    deadline = time.monotonic() + timeout
    while left := [
        command
        for command in tagged_processes(tag)
        if not engines_only or any(name in command for name in ENGINE_PROCESSES)
    ]:
        assert time.monotonic() < deadline, f"left running after the run: {left}"
        time.sleep(0.2)


def failure(log: str) -> str:
    """What a failed script printed that says why: vLLM's error lines (an engine that failed to start logs
    its cause long before the traceback that ends the log), then the log's end."""
    errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith(("ERROR", "Runtime"))]
    return "\n".join([*errors[:40], "...", log[-4000:]])


def run(env: VLLMEnv, script: str, *args: str | os.PathLike[str], tmp_path: Path) -> dict[str, Any]:
    """Run a script of tests/real_vllm to its end; what it wrote, once none of its processes is left."""
    tag = uuid.uuid4().hex
    out = tmp_path / f"{script}-{tag}.json"
    log = tmp_path / f"{script}-{tag}.log"
    with open(log, "wb") as sink:
        done = subprocess.run(
            [env.python, SCRIPTS / f"{script}.py", env.model, out, *args],
            env=env.env(tag, HF_DATASETS_CACHE=str(tmp_path / "hf")),
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    assert done.returncode == 0, failure(log.read_text())
    wait_until_gone(tag)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def scenarios(vllm_env_ready: VLLMEnv, tmp_path_factory) -> dict[str, Any]:
    return run(vllm_env_ready, "scenarios", tmp_path=tmp_path_factory.mktemp("vllm"))


def test_a_seed_reproduces_each_generation_and_no_seed_samples_anew(scenarios):
    seeded, again = scenarios["seeded"], scenarios["seeded_again"]
    assert seeded == again  # another map, another batch size: the same answers
    assert all(len(row) == 2 and all(isinstance(g, str) and g for g in row) for row in seeded)
    assert all(row[0] != row[1] for row in seeded)  # generation i is asked with seed + i
    first, second = scenarios["unseeded"], scenarios["unseeded_again"]
    assert all(row[0] != row[1] for row in first)
    assert all(a != b for a, b in zip(first, second, strict=True))  # each run draws its own seeds


def test_the_metadata_is_the_engines(scenarios):
    metadata = [m for row in scenarios["metadata"] for m in row]
    assert {m["finish_reason"] for m in metadata} <= {"stop", "length"}
    assert all(m["prompt_tokens"] > 10 and 0 < m["completion_tokens"] <= 24 for m in metadata)
    assert any(m["finish_reason"] == "length" and m["completion_tokens"] == 24 for m in metadata)


def test_sampling_parameters_and_raw_prompt_formats_reach_the_engine(scenarios):
    assert all(isinstance(g, str) and g for [g] in scenarios["greedy"] + scenarios["top_k_1"])
    for name in ("chatml", "zephyr"):  # the raw text goes to LLM.generate, the model's template unused
        assert all(isinstance(g, str) and g for [g] in scenarios[name])
    # Greedy, the same prompt in another raw format (Zephyr's, which this model was not trained on) is
    # another text to the engine, and gets another answer.
    assert scenarios["chatml"][0] != scenarios["zephyr"][0]


def test_a_judge_rates_through_guided_decoding(scenarios):
    label = scenarios["label"]
    assert label["labelling_error"] is None and label["labelling_model"].startswith("SmolLM2-135M-Instruct-")
    assert len(label["rating"]) == 2 and all(r in (1.0, 2.0, 3.0, 4.0, 5.0) for r in label["rating"])
    # constrained to the task's schema, sized to the row's two answers: it parses as it came
    sent = json.loads(label["raw_labelling_response"])["ratings"]
    assert [float(r["rating"]) for r in sent] == label["rating"]


def test_a_structured_task_gets_records_of_its_model(scenarios):
    for row in scenarios["structured"]:
        [error] = row["generation_errors"]
        assert error is None
        record = Dish(name=row["name"][0], minutes=row["minutes"][0])
        assert json.loads(row["raw_generation_responses"][0]) == record.model_dump()


def test_chat_magpie_and_conversation_tasks(scenarios):
    [[reply]] = scenarios["chat"]
    assert isinstance(reply, str) and reply
    for row in scenarios["magpie"]:
        [instruction], [response] = row["instruction"], row["response"]
        assert instruction and response and instruction != response
        assert [m["role"] for m in row["conversation"][0]] == ["user", "assistant"]
    [row] = scenarios["conversation"]
    turns = row["conversation"][0]
    assert [m["role"] for m in turns] == ["user", "assistant"] and all(m["content"] for m in turns)


def test_a_pool_of_two_vllm_members_answers_every_generation(scenarios):
    for row in scenarios["pool"]:
        assert len(row["generations"]) == 4 and all(isinstance(g, str) and g for g in row["generations"])
        assert len(set(row["generations"])) == 4


def test_a_prompt_longer_than_the_context_fails_only_its_row(scenarios):
    short, long, other = scenarios["too_long"]
    assert short["generations"][0] and other["generations"][0]
    assert long["generations"] == [None]
    assert "maximum context length is 8192 tokens" in long["generation_errors"][0]


def test_a_memory_share_that_cannot_fit_is_refused_before_loading(scenarios):
    message = scenarios["too_much_memory"]
    assert "gpu_memory_utilization=" in message and "would fit" in message and "0.99 is" in message


def test_a_script_without_a_main_guard_is_refused_before_the_engine_starts(vllm_env_ready, tmp_path):
    tag = uuid.uuid4().hex
    done = subprocess.run(
        [vllm_env_ready.python, SCRIPTS / "unguarded.py", vllm_env_ready.model],
        env=vllm_env_ready.env(tag, HF_DATASETS_CACHE=str(tmp_path / "hf")),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert (
        'run line 14 a second time: put the script\'s code under `if __name__ == "__main__":`' in done.stderr
    )
    assert "bootstrapping" not in done.stderr  # Python's own error, from a spawned engine, never came
    wait_until_gone(tag)


def test_num_proc_workers_with_no_memory_settings_then_a_rerun_from_the_store(
    vllm_env_ready, scenarios, tmp_path
):
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    first = run(vllm_env_ready, "workers", store, str(ROWS), tmp_path=tmp_path)
    assert first["counters"]["requests"] == ROWS and first["counters"]["failed"] == 0
    generations = [g for [g] in first["generations"]]
    assert all(isinstance(g, str) and g for g in generations)
    # seed 3 in two worker processes, each with its own engine: as in one process
    assert generations == [g for [g] in scenarios["like_workers"]]

    again = run(vllm_env_ready, "workers", store, str(ROWS), tmp_path=tmp_path)
    assert again["counters"]["requests"] == 0 and again["counters"]["reused"] == ROWS
    assert again["generations"] == first["generations"]


def stored(path: Path) -> int:
    """Answers in the store (a map's provenance record is kept there too)."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            query = "SELECT count(*) FROM responses WHERE key NOT LIKE 'provenance:%'"
            return db.execute(query).fetchone()[0]
        except sqlite3.OperationalError:  # not made yet
            return 0


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_an_interrupted_map_leaves_no_engine_and_pays_nothing_twice(vllm_env_ready, how, tmp_path):
    """Ctrl-C reaches the script and its workers (a terminal's process group); kill -9 only the script,
    whose workers then end themselves. Either way no engine process is left, and a re-run asks only for
    what is not in the store."""
    rows = 12
    path = tmp_path / "store.sqlite3"
    tag = uuid.uuid4().hex
    command = [vllm_env_ready.python, SCRIPTS / "workers.py", vllm_env_ready.model, tmp_path / "out.json"]
    command += [f"sqlite:///{path}", str(rows), "48"]
    process = subprocess.Popen(
        command,
        env=vllm_env_ready.env(tag, HF_DATASETS_CACHE=str(tmp_path / "hf")),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while stored(path) < 2:
            assert process.poll() is None, "the map ended before it could be interrupted"
            assert time.monotonic() < deadline, "no answer was stored"
            time.sleep(0.2)
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)
            wait_until_gone(tag)
        else:
            process.kill()
            process.wait(timeout=60)
            # The workers see their parent gone and end; the engines end with them. datasets' Manager
            # server process (its queue of results) outlives a killed parent: datasets', not an engine.
            wait_until_gone(tag, engines_only=True)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    kept = stored(path)
    assert 2 <= kept < rows

    rerun = run(vllm_env_ready, "workers", f"sqlite:///{path}", str(rows), "48", tmp_path=tmp_path)
    assert rerun["counters"]["reused"] == kept
    assert rerun["counters"]["requests"] == rows - kept
    assert all(g is not None for [g] in rerun["generations"])
