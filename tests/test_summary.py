"""What a run did, read back: mapgen.summary from the dataset's own columns (the table the CLI prints),
the lines only the run knows (counters), and the "mapgen" logger's lines about retries and fallbacks."""

import logging
import re
from collections import Counter

import datasets
import pytest

import mapgen
from mapgen.report.summary import RunCounts, describe_failures, failures_by_kind, rating_failures

MOVED = {"requests": 3, "reused": 2, "failed": 1, "retries": 4}
STILL = dict.fromkeys(MOVED, 0)


def test_failures_are_counted_by_the_kind_code_their_error_starts_with():
    errors = [
        "http_429: HTTP 429: slow down (after 9 attempts)",
        None,
        "parse: no rating",
        "parse: empty",
        "boom",
    ]
    assert failures_by_kind(errors) == Counter({"parse": 2, "http_429": 1, "other": 1})
    assert describe_failures(failures_by_kind(errors)) == "4 (parse 2, http_429 1, other 1)"
    assert describe_failures(failures_by_kind([None, None])) == "0"


def test_a_labelling_error_gives_each_missing_rating_its_kind():
    error = "timeout: text 1: no answer in 120 s; parse: text 3: no rating"  # as mapgen.label writes it
    assert rating_failures(["a", "b", "c", None], [None, 4.0, None, None], error) == Counter(
        {"timeout": 1, "parse": 1}
    )
    # One error for the whole row (one comparative prompt): its kind for every missing rating.
    assert rating_failures(["a", "b"], [None, None], "http_500: HTTP 500") == Counter({"http_500": 2})


def test_the_run_lines_say_what_only_the_run_knows():
    ran = RunCounts.between(STILL, MOVED, cache_files_predate=False)
    assert ran.lines(rows=4) == [("requests sent", "3")]
    assert RunCounts.between(STILL, {**MOVED, "reasks": 2}).lines(rows=4)[1] == (
        "re-asks",
        "2 (answers that failed their answer model)",
    )
    cached = RunCounts.between(MOVED, MOVED, cache_files_predate=True)
    assert cached.lines(rows=4) == [
        ("requests sent", "0"),
        ("datasets' cache", "this map came whole from datasets' cache (nothing was sent or re-read)"),
    ]
    # The cached map keeps its failures: the line says how to send them again.
    assert cached.lines(rows=4, failed=1)[1] == (
        "datasets' cache",
        "this map came whole from datasets' cache (nothing was sent or re-read); its 1 failed "
        "answer(s) were not retried: pass --retry-failed to send them again",
    )
    # New cache files, yet no counter moved: workers this process cannot count (spawned), not zero.
    unseen = RunCounts.between(MOVED, MOVED, cache_files_predate=False)
    assert unseen.lines(rows=4)[0] == (
        "requests sent",
        "not counted (the num_proc workers were not forked from this process)",
    )


# mapgen.summary on real map outputs (the OpenAI test server in tests/servers)

PROMPTS = ["hi", "bad request", "long one", "bye"]
PRICE = (1.0, 2.0)  # USD per million prompt and completion tokens


def llm_on(server, **kwargs) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM("m", base_url=server.base_url, api_key=server.api_key, **kwargs)


def scripted(server) -> None:
    """Two 429s first (with Retry-After: 0), then a 400 for one row and an answer cut at the limit for
    another."""
    server.configure(
        api_key=server.api_key,
        fail_first=2,
        error_status=429,
        retry_after="0",
        replies=[
            {"contains": "bad", "status": 400, "message": "bad request"},
            {"contains": "long", "reply": "a long answer that was", "finish_reason": "length"},
        ],
    )


def test_summary_reads_failures_cuts_retries_reuse_tokens_and_cost_from_the_dataset(fault_server, tmp_path):
    scripted(fault_server)
    fn = mapgen.generate(llm_on(fault_server, price_per_million=PRICE, max_new_tokens=8))
    ds = datasets.Dataset.from_dict({"input": PROMPTS}).map(fn, batched=True)
    assert fault_server.stats()["total"] == 6  # 4 rows and 2 retries

    done = mapgen.summary(ds)
    assert (done.rows, done.answers, done.asked) == (4, 3, 4)
    assert done.failed == {"http_400": 1}
    assert done.truncated == 1  # read (a text task keeps a cut text), and counted
    assert done.retries == 2
    assert done.reused == 0
    total = mapgen.usage(ds).total
    assert (done.prompt_tokens, done.completion_tokens) == (total.prompt_tokens, total.completion_tokens)
    assert done.tokens == total.prompt_tokens + total.completion_tokens > 0
    assert done.cost == pytest.approx(
        (done.prompt_tokens * PRICE[0] + done.completion_tokens * PRICE[1]) / 1e6
    )
    table = dict(line.split("  ", 1) for line in str(done).splitlines())
    assert table["failed answers"].strip() == "1 (http_400 1)"
    assert table["retries"].strip() == "2"

    # The way the summary says to select the cut answers selects them.
    select = re.search(r"ds\.filter\((lambda row: .*)\)\)$", dict(done.lines())["truncated"]).group(1)
    cut = ds.filter(eval(select))
    assert cut["input"] == ["long one"]

    # From disk, the same numbers.
    ds.save_to_disk(str(tmp_path / "out"))
    assert mapgen.summary(datasets.load_from_disk(str(tmp_path / "out"))) == done

    # The same rows again (in memory: datasets does not cache them): the store answers 3, the 400 is re-sent.
    again = datasets.Dataset.from_dict({"input": PROMPTS}).map(fn, batched=True)
    assert fault_server.stats()["total"] == 7
    rerun = mapgen.summary(again)
    assert (rerun.answers, rerun.reused, rerun.retries, rerun.failed) == (3, 3, 0, {"http_400": 1})
    assert (rerun.tokens, rerun.cost) == (0, None)  # nothing answered was paid for this time

    # The summary says to re-ask them alone (tests/test_redo.py); mapped with a larger max_new_tokens, the
    # cut rows are sent again too (its store key changed); with the same limit they would be reused.
    assert 'redo="length") and a larger max_new_tokens' in dict(done.lines())["truncated"]
    cut.map(fn, batched=True)
    assert fault_server.stats()["total"] == 7
    larger = mapgen.generate(llm_on(fault_server, price_per_million=PRICE, max_new_tokens=64))
    cut.map(larger, batched=True, load_from_cache_file=False)
    assert fault_server.stats()["total"] == 8


def test_retries_of_one_request_for_n_answers_count_once(fault_server):
    # One request asks n=2 answers; retried twice, it is 2 retries, not 2 per answer it brought.
    fault_server.configure(api_key=fault_server.api_key, fail_first=2, error_status=429, retry_after="0")
    before = mapgen.counters.snapshot()
    fn = mapgen.generate(llm_on(fault_server, max_new_tokens=8), num_generations=2)
    ds = datasets.Dataset.from_dict({"input": ["hi"]}).map(fn, batched=True)
    assert fault_server.stats()["total"] == 3 and len(ds[0]["generations"]) == 2
    assert mapgen.summary(ds).retries == mapgen.counters.snapshot()["retries"] - before["retries"] == 2
    assert [meta["retries"] for meta in ds[0]["generation_metadata"]] == [2, 0]


def test_summary_of_a_label_step_alone(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"contains": "q2", "reply": "no rating here"}],
        default_reply="Text 1\nRating: 4\nRationale: ok",
    )
    rows = datasets.Dataset.from_dict(
        {"input": ["q1", "q2"], "generations": [["a"], ["b"]], "generation_metadata": [[None], [None]]}
    )
    ds = rows.map(mapgen.label(llm_on(fault_server, max_retries=0), mapgen.UltraFeedbackTask()), batched=True)
    done = mapgen.summary(ds, columns=["labelling_metadata"])
    assert (done.answers, done.asked, done.failed) == (1, 2, {"parse": 1})
    with pytest.raises(ValueError, match="not mapgen answer metadata"):
        mapgen.summary(ds, columns=["rating"])


def test_summary_says_when_the_metadata_predates_retries():
    old = {"finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 2, "from_store": False}
    ds = datasets.Dataset.from_dict({"generation_errors": [[None]], "generation_metadata": [[old]]})
    done = mapgen.summary(ds)
    assert (done.answers, done.retries, done.cost) == (1, None, None)
    assert "unknown (the metadata was written before mapgen recorded retries)" in str(done)
    assert "unknown: no price for this model" in str(done)


# The "mapgen" logger


def test_the_mapgen_logger_is_silent_unless_configured():
    handlers = logging.getLogger("mapgen").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


@pytest.mark.parametrize(
    "status, retry_after, wait", [(429, "0", "the server's Retry-After"), (500, None, "backoff")]
)
def test_the_mapgen_logger_records_a_retry_with_its_reason(fault_server, caplog, status, retry_after, wait):
    fault_server.configure(
        api_key=fault_server.api_key, fail_first=1, error_status=status, retry_after=retry_after
    )
    caplog.set_level(logging.INFO, logger="mapgen")
    ds = datasets.Dataset.from_dict({"input": ["hi"]}).map(
        mapgen.generate(llm_on(fault_server)), batched=True
    )
    assert ds["generations"] == [["echo: hi"]]
    [retry] = [r for r in caplog.records if r.name.startswith("mapgen") and "retry" in r.getMessage()]
    assert retry.levelno == logging.INFO
    message = retry.getMessage()
    assert f"HTTP {status}: injected {status}" in message and wait in message
    assert "retry 1 of 8 in " in message
    assert fault_server.api_key not in caplog.text
    assert mapgen.summary(ds).retries == 1


def test_the_mapgen_logger_records_a_schema_fallback(fault_server, caplog):
    fault_server.configure(
        api_key=fault_server.api_key,
        refuse_formats=["json_schema"],
        default_reply="Text 1\nRating: 3\nRationale: ok",
    )
    caplog.set_level(logging.INFO, logger="mapgen")
    llm = llm_on(fault_server, max_retries=0, temperature=0.3)  # a config of its own: nothing learnt yet
    rows = datasets.Dataset.from_dict({"input": ["q1"], "generations": [["a"]]})
    rows.map(mapgen.label(llm, mapgen.UltraFeedbackTask()), batched=True)
    [fallback] = [r for r in caplog.records if "refused response_format" in r.getMessage()]
    assert "response_format json_schema" in fallback.getMessage()
    assert fallback.getMessage().endswith("trying json_object")
