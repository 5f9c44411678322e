"""The numbers the CLI's closing table prints, from error columns and counters."""

from collections import Counter

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


def test_the_request_lines_say_where_answers_came_from():
    ran = RunCounts.between(STILL, MOVED, cache_files_predate=False)
    assert ran.lines(rows=4, answers=3) == [
        ("requests sent", "3"),
        ("answers reused", "2 from the response store"),
        ("retries", "4"),
        ("tokens", "0 prompt + 0 completion"),  # no usage reported, no price: said so (tests/test_costs.py)
        ("cost", "unknown: no price for this model (set price_per_million=(input, output) on the LLM)"),
    ]
    cached = RunCounts.between(MOVED, MOVED, cache_files_predate=True)
    assert cached.lines(rows=4, answers=7)[:2] == [
        ("requests sent", "0"),
        ("answers reused", "all 7: this map came whole from datasets' cache (nothing was sent or re-read)"),
    ]
    # The cached map keeps its failures: the line says how to send them again.
    assert cached.lines(rows=4, answers=7, failed=1)[1] == (
        "answers reused",
        "all 7: this map came whole from datasets' cache (nothing was sent or re-read); its 1 failed "
        "answer(s) were not retried: pass --retry-failed to send them again",
    )
    # New cache files, yet no counter moved: workers this process cannot count (spawned), not zero.
    unseen = RunCounts.between(MOVED, MOVED, cache_files_predate=False)
    assert unseen.lines(rows=4, answers=7)[0] == (
        "requests sent",
        "not counted (the num_proc workers were not forked from this process)",
    )
