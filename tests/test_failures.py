"""What peers' users hit, by kind: answers that are not what the API promised, misuse, interrupts.

Each test replays one failing input from a public bug report (issue 10) against real servers on
127.0.0.1 and asserts the right value. The fault server scripts what misbehaving servers send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest

import mapgen
from mapgen.errors import FatalAPIError, error_kind
from mapgen.store import default_store
from tests.servers.fixtures import default_sigint


def fault_llm(server, **kwargs) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **kwargs)


def rows(*texts: str, column: str = "input") -> datasets.Dataset:
    return datasets.Dataset.from_dict({column: list(texts)})


def generate(ds, llm, **kwargs):
    return ds.map(mapgen.generate(llm, **kwargs), batched=True)


# Answers that are not what the API promised


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"choices": []}, "HTTP 200 without choices"),  # Azure's content filter
        ({"error": "overloaded"}, "HTTP 200 without choices"),
        ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "a choice that has no message"),
        ({"choices": [{"message": {"content": {"text": "x"}}}]}, "content of an unknown shape"),
        ({"choices": [{"message": {"content": [{"type": "text", "text": 7}]}}]}, "unknown shape"),
    ],
)
def test_a_200_that_is_not_a_chat_completion_is_retried_a_bounded_number_of_times(fault_server, body, reason):
    fault_server.configure(api_key=fault_server.api_key, replies=[{"body": body}])
    out = generate(rows("hello"), fault_llm(fault_server, max_retries=2))
    assert out["generations"] == [[None]]
    [[error]] = out["generation_errors"]
    assert error_kind(error) == "invalid_answer"
    assert reason in error and "after 3 attempts" in error
    assert fault_server.stats()["total"] == 3  # the first try and max_retries=2 retries, no more
    assert len(default_store()) == 0  # nothing invalid is kept: a re-run asks again
    generate(rows("hello"), fault_llm(fault_server, max_retries=0))
    assert fault_server.stats()["total"] == 4


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_a_200_cut_short_is_an_invalid_answer_on_every_transport(fault_server, transport):
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"raw": '{"choices":[{"index":0,"message":{"content":"o'}]
    )
    out = generate(rows("x"), fault_llm(fault_server, max_retries=1, transport=transport))
    [[error]] = out["generation_errors"]
    assert error_kind(error) == "invalid_answer" and "after 2 attempts" in error
    assert fault_server.stats()["total"] == 2


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_content_as_a_list_of_parts_is_its_text(fault_server, transport):
    parts = [{"type": "text", "text": "answer to "}, {"type": "text", "text": "hello"}]
    fault_server.configure(api_key=fault_server.api_key, replies=[{"content": parts}])
    llm = fault_llm(fault_server, transport=transport)
    out = generate(rows("hello", "hi"), llm)
    assert out["generations"] == [["answer to hello"], ["answer to hello"]]
    assert out.features["generations"].feature.dtype == "string"
    again = generate(rows("hello", "hi"), llm)  # from the store: still text
    assert again["generations"] == out["generations"]
    assert fault_server.stats()["total"] == 2


def test_a_refusal_part_or_a_content_filter_is_a_refusal_never_stored(fault_server):
    def choice(content, finish):
        return {"body": {"choices": [{"message": {"content": content}, "finish_reason": finish}]}}

    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "a", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
            {"contains": "b", **choice(None, "content_filter")},
            {"contains": "c", **choice("the first half of an ans", "content_filter")},  # cut short
            {"contains": "d", **choice(None, "length")},
            {"contains": "e", **choice([], "stop")},
        ],
    )
    out = generate(rows("a", "b", "c", "d", "e"), fault_llm(fault_server))
    assert out["generations"] == [[None]] * 5
    assert [e for [e] in out["generation_errors"]] == [
        "refused: I can't help with that.",
        "refused: stopped by a content filter",
        "refused: stopped by a content filter",
        "empty_answer: no text in the answer (finish_reason=length)",
        "empty_answer: no text in the answer (finish_reason=stop)",
    ]
    assert fault_server.stats()["total"] == 5  # not retried: the model decided
    assert len(default_store()) == 0


def test_an_error_body_on_a_200_keeps_the_servers_message(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key, replies=[{"body": {"error": {"message": "overloaded"}}}]
    )
    [[error]] = generate(rows("x"), fault_llm(fault_server, max_retries=0))["generation_errors"]
    assert error == "invalid_answer: HTTP 200 without choices: overloaded"


def test_parts_without_a_type_are_text(fault_server):
    fault_server.configure(api_key=fault_server.api_key, replies=[{"content": [{"text": "hello"}]}])
    assert generate(rows("x"), fault_llm(fault_server))["generations"] == [["hello"]]


def test_a_retry_after_beyond_the_cap_fails_the_row_instead_of_sleeping(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "slow", "status": 429, "headers": {"Retry-After": "3600"}}],
    )
    out = generate(rows("slow", "fine"), fault_llm(fault_server, max_retries=5))
    [slow], [fine] = out["generation_errors"]
    assert error_kind(slow) == "http_429"
    assert "Retry-After 3600s is over max_retry_wait=60s" in slow
    assert fine is None
    assert fault_server.stats()["total"] == 2  # asked once each: no retry was slept for


def test_a_retry_after_within_the_cap_is_waited_for(fault_server):
    fault_server.configure(api_key=fault_server.api_key, fail_first=1, retry_after="1")
    out = generate(rows("x"), fault_llm(fault_server, max_retry_wait=2))
    assert out["generations"] == [["echo: x"]]
    assert fault_server.stats()["total"] == 2


def ultrafeedback_rows(*inputs):
    return datasets.Dataset.from_dict({"input": list(inputs), "generations": [["an answer"]] * len(inputs)})


def test_an_unrelated_400_does_not_switch_the_structured_output_style(fault_server):
    long = "LONG " * 50
    fault_server.configure(
        api_key=fault_server.api_key,
        refuse_formats=["json_object"],
        replies=[
            {
                "contains": "LONG",
                "status": 400,
                "message": "This model's maximum context length is 4096 tokens.",
            },
            {"reply": "Text 1\nRating: 4\nRationale: fine"},
        ],
    )
    llm = fault_llm(fault_server, max_retries=0, max_concurrency=1)
    fn = mapgen.label(llm, mapgen.UltraFeedbackTask.for_overall_quality())
    out = ultrafeedback_rows(long, "q1", "q2").map(fn, batched=True, batch_size=1)
    assert out["rating"] == [[None], [4.0], [4.0]]
    assert error_kind(out["labelling_error"][0]) == "http_400"
    assert "maximum context length" in out["labelling_error"][0]
    assert out["labelling_error"][1:] == [None, None]
    formats = {body["response_format"]["type"] for body in fault_server.requests()}
    assert formats == {"json_schema"}


def test_a_server_that_takes_no_schema_style_is_asked_without_one(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        refuse_formats=["json_schema", "json_object"],
        default_reply="Text 1\nRating: 2\nRationale: ok",
    )
    llm = fault_llm(fault_server, max_retries=0, max_concurrency=1, temperature=0.2)
    fn = mapgen.label(llm, mapgen.UltraFeedbackTask())
    out = ultrafeedback_rows("q1", "q2").map(fn, batched=True, batch_size=1)
    assert out["rating"] == [[2.0], [2.0]]  # read by the tolerant parser
    sent = [(body.get("response_format") or {}).get("type") for body in fault_server.requests()]
    assert sent == ["json_schema", "json_object", None, None]


def test_a_server_that_refuses_one_schema_style_gets_the_next_and_keeps_it(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        refuse_formats=["json_schema"],
        default_reply="Text 1\nRating: 3\nRationale: ok",
    )
    # a config of its own: what an engine learnt about a server is kept per process and config
    llm = fault_llm(fault_server, max_retries=0, max_concurrency=1, temperature=0.1)
    out = ultrafeedback_rows("q1", "q2", "q3").map(
        mapgen.label(llm, mapgen.UltraFeedbackTask()), batched=True, batch_size=1
    )
    assert out["rating"] == [[3.0]] * 3
    sent = [body["response_format"]["type"] for body in fault_server.requests()]
    assert sent == ["json_schema", "json_object", "json_object", "json_object"]  # learnt once, kept


@pytest.mark.parametrize("status", [401, 403, 404])
def test_errors_that_fail_every_request_stop_the_map_after_a_handful(fault_server, status):
    if status == 401:
        fault_server.configure(api_key="sk-the-right-key-0123456789")
    else:
        fault_server.configure(api_key=fault_server.api_key, replies=[{"status": status, "message": "nope"}])
    llm = fault_llm(fault_server, max_concurrency=8)
    with pytest.raises(FatalAPIError, match=f"HTTP {status}") as raised:
        generate(rows(*[f"row {i}" for i in range(200)]), llm)
    assert fault_server.stats()["total"] <= 8  # what was in flight, not one request per row
    assert fault_server.api_key not in str(raised.value)


def test_a_key_fixed_in_the_environment_is_used_by_the_next_map(fault_server, monkeypatch):
    llm = mapgen.OpenAILLM("fault", base_url=fault_server.base_url)  # the key from OPENAI_API_KEY
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0123456789")
    with pytest.raises(FatalAPIError):
        generate(rows("x"), llm)
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)  # as in a notebook: fix it, run again
    assert generate(rows("x"), llm)["generations"] == [["echo: x"]]


def test_a_missing_client_library_stops_before_any_request(fault_server, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiohttp" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"aiohttp.*mapgen\[openai\]"):
        generate(rows("x"), fault_llm(fault_server, transport="aiohttp"))
    assert fault_server.stats()["total"] == 0


@pytest.mark.parametrize("key", [None, "", "  "])
def test_a_pipeline_whose_default_judge_has_no_key_fails_before_generating(fault_server, monkeypatch, key):
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    fn = mapgen.pipeline("preference", "text-quality", generator=fault_llm(fault_server))
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        rows("x").map(fn, batched=True)
    assert fault_server.stats()["total"] == 0


# Cache truth


def test_identical_rows_are_one_request_in_every_run_and_batch_size(fault_server):
    fault_server.configure(api_key=fault_server.api_key, count_replies=True)
    llm = fault_llm(fault_server, temperature=1.0)
    jokes = rows(*["Tell me a joke."] * 4)
    first = generate(jokes, llm)["generations"]
    assert len({answer for [answer] in first}) == 1
    assert fault_server.stats()["total"] == 1
    for batch_size in (1, 2, 3):
        again = jokes.map(mapgen.generate(llm), batched=True, batch_size=batch_size)["generations"]
        assert again == first
    assert fault_server.stats()["total"] == 1


def test_without_the_store_identical_rows_are_independent_samples(fault_server):
    fault_server.configure(api_key=fault_server.api_key, count_replies=True)
    out = generate(rows(*["Tell me a joke."] * 4), fault_llm(fault_server, temperature=1.0), cache=False)
    assert len({answer for [answer] in out["generations"]}) == 4


def test_the_store_key_follows_where_requests_go(fault_server, monkeypatch):
    llm = mapgen.OpenAILLM("fault", api_key=fault_server.api_key)  # base_url from the environment
    monkeypatch.setenv("OPENAI_BASE_URL", fault_server.base_url)
    here = mapgen.fingerprint(mapgen.generate(llm))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert mapgen.fingerprint(mapgen.generate(llm)) != here
    explicit = mapgen.OpenAILLM("fault", base_url="http://127.0.0.1:9/v1")
    assert mapgen.fingerprint(mapgen.generate(explicit)) == mapgen.fingerprint(mapgen.generate(llm))


# Misuse


@pytest.mark.parametrize("make", ["generate", "label", "pipeline"])
def test_a_forgotten_batched_true_is_an_error_before_any_request(fault_server, make):
    llm = fault_llm(fault_server)
    fn = {
        "generate": lambda: mapgen.generate(llm),
        "label": lambda: mapgen.label(llm, mapgen.UltraFeedbackTask()),
        "pipeline": lambda: mapgen.pipeline("preference", "text-quality", generator=llm, labeller=llm),
    }[make]()
    ds = datasets.Dataset.from_dict({"input": ["hello", "What is a prime?"], "generations": [["a"], ["b"]]})
    with pytest.raises(TypeError, match="batched=True"):
        ds.map(fn)
    assert fault_server.stats()["total"] == 0


def test_input_columns_given_to_datasets_instead_of_mapgen_is_an_error_before_any_request(fault_server):
    with pytest.raises(TypeError, match=r"do not pass input_columns to ds\.map"):
        rows("hello").map(mapgen.generate(fault_llm(fault_server)), batched=True, input_columns="input")
    assert fault_server.stats()["total"] == 0


def test_empty_inputs_are_missing_inputs_named_by_the_users_column(fault_server):
    ds = datasets.Dataset.from_dict({"question": ["", "  ", None, "real"]})
    out = ds.map(mapgen.generate(fault_llm(fault_server), input_columns={"input": "question"}), batched=True)
    errors = [e for [e] in out["generation_errors"]]
    assert errors[:3] == ["input: column(s) ['question'] are empty"] * 3
    assert errors[3] is None
    assert fault_server.stats()["total"] == 1


def test_a_failed_labelling_row_keeps_every_list_column_aligned(fault_server):
    fault_server.configure(api_key=fault_server.api_key, default_reply="Rating: 4\nRationale: ok")
    task = mapgen.UltraFeedbackTask(per_generation=True)
    fn = mapgen.label(fault_llm(fault_server), task, weighted_ratings=True)
    ds = datasets.Dataset.from_dict({"input": ["", "q"], "generations": [["a", "b"], ["a", "b"]]})
    out = ds.map(fn, batched=True)
    failed = out[0]
    assert error_kind(failed["labelling_error"]) == "input"
    for column in (
        "rating",
        "weighted_rating",
        "labelling_metadata",
        "labelling_prompt",
        "raw_labelling_response",
        "labelling_reasoning",
    ):
        assert failed[column] == [None, None], column
        assert len(out[1][column]) == 2
    assert [sum(w is None for w in row) for row in out["weighted_rating"]] == [2, 0]


# Interrupts


SCRIPT = """
import sys, time, datasets, mapgen
llm = mapgen.OpenAILLM("fault", base_url=sys.argv[1], api_key=sys.argv[2], max_concurrency=8)
ds = datasets.Dataset.from_dict({"input": [f"row {i}" for i in range(400)]})
datasets.disable_progress_bars()
print("started", flush=True)
"""


def start_script(code: str, *args: str, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "MAPGEN_CACHE_DIR": str(tmp_path / "store"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf"),
    }
    command = [sys.executable, "-c", textwrap.dedent(SCRIPT) + textwrap.dedent(code), *args]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    assert process.stdout.readline().strip() == "started"
    return process


def wait_for_requests(server, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.stats()["total"] < count:
        assert time.monotonic() < deadline, "the map never started sending"
        time.sleep(0.05)


def test_ctrl_c_in_a_live_process_stops_sending_and_keeps_what_landed(fault_server, tmp_path):
    fault_server.configure(api_key=fault_server.api_key, latency=0.3)
    process = start_script(
        """
        try:
            ds.map(mapgen.generate(llm), batched=True, batch_size=400)
        except KeyboardInterrupt as interrupted:
            print("caught", type(interrupted).__name__, interrupted, flush=True)
        time.sleep(2)  # a notebook lives on: nothing more may go out
        print("stored", len(mapgen.store.default_store()), flush=True)
        """,
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    wait_for_requests(fault_server, 20)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    caught, stored = out.strip().splitlines()
    assert caught.startswith("caught Interrupted interrupted: ")
    sent = fault_server.stats()["total"]
    assert sent < 60  # what was sent before the interrupt and what was in flight, not 400
    assert int(stored.split()[1]) == sent  # every request that went out landed and was stored
    assert "Traceback" not in err


def test_ctrl_c_in_datasets_async_map_stops_sending(fault_server, tmp_path):
    fault_server.configure(api_key=fault_server.api_key, latency=0.5)
    process = start_script(
        """
        try:
            ds.map(mapgen.generate(llm).acall, batched=True, batch_size=20)
        except KeyboardInterrupt:
            print("caught", flush=True)
        time.sleep(3)  # in-flight requests land; nothing new may go out
        print("done", flush=True)
        """,
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    wait_for_requests(fault_server, 16)
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == "caught"
    time.sleep(1)  # what was in flight lands (0.5 s latency)
    settled = fault_server.stats()["total"]
    out, _ = process.communicate(timeout=60)
    assert out.strip() == "done"
    assert fault_server.stats()["total"] == settled < 100


def test_an_uncaught_ctrl_c_in_datasets_async_map_prints_one_line_once_what_was_in_flight_landed(
    fault_server, tmp_path
):
    fault_server.configure(api_key=fault_server.api_key, latency=1.0)
    process = start_script(
        "ds.map(mapgen.generate(llm).acall, batched=True, batch_size=20)\n",
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    wait_for_requests(fault_server, 8)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    sent = fault_server.stats()["total"]
    assert lines[0].startswith(f"mapgen: interrupted: {sent} answers received are kept"), (sent, err)


def interrupted_map(fault_server, tmp_path, latency: float) -> subprocess.Popen:
    """A script mapping one batch of 400 rows (``max_concurrency=8``: its first 8 go ahead on a thread of
    their own, which Ctrl-C does not reach), sent SIGINT once its first requests are in flight."""
    fault_server.configure(api_key=fault_server.api_key, latency=latency)
    process = start_script(
        "ds.map(mapgen.generate(llm), batched=True, batch_size=400)\n",
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    wait_for_requests(fault_server, 8)
    process.send_signal(signal.SIGINT)
    return process


def test_ctrl_c_in_a_script_prints_one_line(fault_server, tmp_path):
    process = interrupted_map(fault_server, tmp_path, latency=0.3)
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mapgen: interrupted: "), err
    assert "run the same map again to resume" in lines[0]


def test_a_second_ctrl_c_stops_waiting_for_answers_in_flight(fault_server, tmp_path):
    process = interrupted_map(fault_server, tmp_path, latency=30)  # those in flight may land, up to 30 s
    time.sleep(1)
    process.send_signal(signal.SIGINT)  # not waiting any more
    _, err = process.communicate(timeout=20)  # well before the server answers (30 s)
    assert "mapgen: interrupted: " in err


@dataclasses.dataclass(frozen=True, kw_only=True)
class BrokenOnRow(mapgen.TextGenerationTask):
    """A task with a bug: its ``prompt()`` raises on one row."""

    broken: str

    def prompt(self, row):
        if row["input"] == self.broken:
            raise RuntimeError("a bug in prompt()")
        return super().prompt(row)


@pytest.mark.parametrize(("row", "paid"), [(2, 0), (30, 4)])
def test_a_bug_in_a_tasks_prompt_stops_the_map_having_paid_for_no_more_than_the_head(fault_server, row, paid):
    # max_concurrency=4: rows 0-3 of the batch go ahead while the rest is prepared.
    llm = fault_llm(fault_server, max_concurrency=4)
    task = BrokenOnRow(broken=f"row {row}")
    with pytest.raises(RuntimeError, match="a bug in prompt"):
        generate(rows(*[f"row {i}" for i in range(40)]), llm, task=task)
    assert fault_server.stats()["total"] == paid


def test_workers_stop_when_their_parent_is_killed(fault_server, tmp_path):
    fault_server.configure(api_key=fault_server.api_key, latency=0.3)
    process = start_script(
        "ds.map(mapgen.generate(llm), batched=True, batch_size=50, num_proc=2)\n",
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    wait_for_requests(fault_server, 16)
    process.kill()
    process.wait()
    time.sleep(2)  # a worker notices within PARENT_CHECK_INTERVAL; in-flight requests end
    settled = fault_server.stats()["total"]
    time.sleep(2)
    assert fault_server.stats()["total"] == settled < 400


def running_in_group(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (zombies do not)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    stat = file.read()
            except OSError:
                continue
            state, _, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(pgrp) == group and state not in ("Z", "X"):
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process groups from /proc")
def test_ctrl_c_with_num_proc_keeps_what_was_in_flight_and_prints_one_line(fault_server, tmp_path):
    # Ctrl-C in a terminal reaches the whole process group: the script and its num_proc workers. datasets
    # then ends its pool (SIGTERM to the workers) and raises a TimeoutError of its own.
    fault_server.configure(api_key=fault_server.api_key, latency=2.0)
    env = {
        **os.environ,
        "MAPGEN_CACHE_DIR": str(tmp_path / "store"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf"),
    }
    code = textwrap.dedent(SCRIPT) + "ds.map(mapgen.generate(llm), batched=True, batch_size=50, num_proc=2)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code, fault_server.base_url, fault_server.api_key],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    try:
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while fault_server.stats()["in_flight"] < 16:  # both workers have a full window out
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the workers never filled their windows"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)  # those in flight land (2 s), then it ends
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mapgen: interrupted: "), err
    assert "run the same map again to resume" in lines[0]
    deadline = time.monotonic() + 5
    while running_in_group(process.pid):
        assert time.monotonic() < deadline, f"left running: {running_in_group(process.pid)}"
        time.sleep(0.1)
    answered = fault_server.stats()["total"]  # every request that went out, answered after 2 s
    assert 16 <= answered < 400

    fault_server.configure(api_key=fault_server.api_key)
    rerun = start_script(
        """
        print("stored", len(mapgen.store.default_store()), flush=True)
        ds.map(mapgen.generate(llm), batched=True, batch_size=50)
        """,
        fault_server.base_url,
        fault_server.api_key,
        tmp_path=tmp_path,
    )
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert out.split() == ["stored", str(answered)]  # every answer in flight landed in the store
    assert fault_server.stats()["total"] == 400 - answered  # the re-run pays only for what never went out
