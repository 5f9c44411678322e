"""mapgen.label: alignment, error column, schema sizing, weighted ratings, column types, end to end.

The judge is the real :class:`mapgen.OpenAILLM` against the fault server on 127.0.0.1, whose answers are
scripted by rules keyed on substrings of the prompt; ``fault_server.requests()`` shows what was sent.
"""

import math
import re

import datasets
import pytest

import mapgen


class PlainServerLLM(mapgen.OpenAILLM):
    """OpenAILLM declared, as a user would for an OpenAI-compatible server without structured outputs or
    log-probabilities, with both capabilities off (no such server runs here; the fault server stands in)."""

    supports_schema = False
    supports_logprobs = False


def judge(server, *replies, default=None, llm=mapgen.OpenAILLM, **kwargs):
    """A judge on the fault server, which answers with the first rule of ``replies`` whose ``contains``
    is in the prompt, else ``default`` (rules: ``{"contains": ..., "reply": ...}``)."""
    server.configure(api_key=server.api_key, replies=list(replies), default_reply=default)
    return llm("judge", base_url=server.base_url, api_key=server.api_key, **kwargs)


def blocks(ratings):
    return "\n\n".join(f"Text {i}\nRating: {r}\nRationale: r{i}" for i, r in enumerate(ratings, 1))


def texts(*shown):
    """How the UltraFeedback prompt lists ``shown``, in order: a rule keyed on it matches only a prompt
    that shows exactly these texts in this order."""
    return "".join(f"<text {i}>\n{text}\n</text {i}>\n" for i, text in enumerate(shown, 1))


def user_message(body):
    return body["messages"][-1]["content"]


def count_texts(body):
    return len(re.findall(r"^<text \d+>$", user_message(body), flags=re.MULTILINE))


def run(fn, data):
    return datasets.Dataset.from_dict(data).map(fn, batched=True, batch_size=10)


def test_none_generations_are_skipped_and_ratings_stay_aligned(fault_server):
    # the judge rates the texts it is shown by their length: 3, 1, 7 -> 3, 1, 5
    llm = judge(fault_server, {"contains": texts("aaa", "a", "aaaaaaa"), "reply": blocks([3, 1, 5])})
    ds = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask()),
        {"input": ["q"], "generations": [["aaa", None, "a", "aaaaaaa"]]},
    )
    row = ds[0]
    assert row["rating"] == [3.0, None, 1.0, 5.0]
    assert row["rationale"] == ["r1", None, "r2", "r3"]
    assert row["labelling_error"] is None
    assert row["labelling_model"] == "judge"
    [sent] = fault_server.requests()
    assert count_texts(sent) == 3  # the None generation was not shown to the judge


def test_fewer_blocks_than_generations_leaves_the_rest_none_with_a_reason(fault_server):
    llm = judge(fault_server, default="Text 1\nRating: 4\nRationale: ok")
    row = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask()), {"input": ["q"], "generations": [["a", "b", "c"]]}
    )[0]
    assert row["rating"] == [4.0, None, None]
    assert "no rating for text(s) [2, 3] of 3" in row["labelling_error"]


def test_more_blocks_than_generations_are_ignored_with_a_reason(fault_server):
    llm = judge(fault_server, default=blocks([4, 3, 2]))
    row = run(mapgen.label(llm, mapgen.UltraFeedbackTask()), {"input": ["q"], "generations": [["a", "b"]]})[0]
    assert row["rating"] == [4.0, 3.0]
    assert "3 ratings for 2 texts" in row["labelling_error"]


def test_unparseable_answers_and_failed_requests_are_data(fault_server):
    llm = judge(fault_server, {"contains": "boom", "status": 500}, default="I like them all.", max_retries=1)
    ds = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask()),
        {"input": ["q", "boom"], "generations": [["a", "b"], ["c", "d"]]},
    )
    assert ds["rating"] == [[None, None], [None, None]]
    assert ds[0]["labelling_error"].startswith("parse: found no rated blocks")
    assert ds[1]["labelling_error"] == "http_500: HTTP 500: scripted 500 (after 2 attempts)"
    assert ds[0]["raw_labelling_response"] == "I like them all."
    assert ds[1]["raw_labelling_response"] is None
    assert fault_server.stats()["total"] == 3  # one answer, one failure retried once


def test_rows_with_nothing_to_rate_send_nothing(fault_server):
    llm = judge(fault_server, default=blocks([5]))
    ds = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask()),
        {"input": ["q", "q", None], "generations": [[None, None], [], ["x"]]},
    )
    assert ds["rating"] == [[None, None], [], [None]]
    assert (
        ds[0]["labelling_error"]
        == "input: no generations to rate in column 'generations' (all None or empty)"
    )
    assert ds[2]["labelling_error"].startswith("input: ")
    assert fault_server.requests() == []


@pytest.mark.parametrize("task", [mapgen.UltraFeedbackTask(), mapgen.UltraCMTask()])  # per row, per text
def test_a_row_whose_input_is_not_text_fails_alone_and_sends_nothing(fault_server, task):
    llm = judge(fault_server, default=blocks([5]))
    ds = run(mapgen.label(llm, task), {"input": [b"\xff\x00raw"], "generations": [["x"]]})
    assert ds[0]["labelling_error"].startswith("input: column 'input': holds a bytes value, not text")
    assert fault_server.requests() == []


def test_all_failing_first_batch_keeps_column_types(fault_server):
    llm = judge(fault_server, {"contains": texts("abcd"), "reply": blocks([4])})
    ds = datasets.Dataset.from_dict({"input": ["q", "q"], "generations": [[None], ["abcd"]]})
    ds = ds.map(mapgen.label(llm, mapgen.UltraFeedbackTask()), batched=True, batch_size=1)
    assert ds["rating"] == [[None], [4.0]]
    assert str(ds.features["rating"].feature.dtype) == "float64"


def test_missing_columns_fail_before_any_request(fault_server):
    llm = judge(fault_server, {"contains": texts("ab"), "reply": blocks([2])})
    fn = mapgen.label(llm, mapgen.UltraFeedbackTask())
    with pytest.raises(mapgen.MissingColumnError, match="generations"):
        run(fn, {"input": ["q"], "answers": [["a"]]})
    assert fault_server.requests() == []
    fn = mapgen.label(llm, mapgen.UltraFeedbackTask(), input_columns={"generations": "answers"})
    assert run(fn, {"input": ["q"], "answers": [["ab"]]})["rating"] == [[2.0]]


def test_generation_tasks_are_refused_with_a_pointer_to_generate(fault_server):
    with pytest.raises(TypeError, match=r"mapgen\.generate"):
        mapgen.label(judge(fault_server), mapgen.TextGenerationTask())


def test_schema_is_sized_to_the_row_for_constraining_backends(fault_server):
    reply = '{"ratings": [{"rating": 5, "rationale": "a"}, {"rating": 1, "rationale": "b"}]}'
    llm = judge(fault_server, default=reply)
    assert llm.supports_schema
    row = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask()), {"input": ["q"], "generations": [["a", None, "b"]]}
    )[0]
    assert row["rating"] == [5.0, None, 1.0]
    [sent] = fault_server.requests()
    assert sent["response_format"]["type"] == "json_schema"
    items = sent["response_format"]["json_schema"]["schema"]["properties"]["ratings"]
    assert items["minItems"] == items["maxItems"] == 2
    assert mapgen.UltraFeedbackTask().schema["properties"]["ratings"].get("minItems") is None  # not mutated


def test_backends_without_schema_support_get_no_schema(fault_server):
    llm = judge(fault_server, default="7 3\nok", llm=PlainServerLLM)
    row = run(mapgen.label(llm, mapgen.JudgeLMTask()), {"input": ["q"], "generations": [["a", "b"]]})[0]
    assert row["rating"] == [7.0, 3.0]
    [sent] = fault_server.requests()
    assert "response_format" not in sent


def test_per_item_tasks_send_one_request_per_generation(fault_server):
    llm = judge(
        fault_server,
        {"contains": "\ntiny\n", "reply": "Critique: short\nOverall score: 3"},
        default="Critique: long\nOverall score: 9",
    )
    row = run(
        mapgen.label(llm, mapgen.UltraCMTask()),
        {"input": ["q"], "generations": [["tiny", None, "a long answer"]]},
    )[0]
    sent = fault_server.requests()
    assert len(sent) == 2
    assert sorted("\ntiny\n" in user_message(body) for body in sent) == [False, True]
    assert row["score"] == [3.0, None, 9.0]
    assert row["critique"] == ["short", None, "long"]
    assert row["labelling_prompt"][1] is None and row["raw_labelling_response"][2].startswith(
        "Critique: long"
    )
    assert row["labelling_error"] is None


def test_per_item_partial_failure_names_the_text(fault_server):
    llm = judge(fault_server, {"contains": "\nbad\n", "reply": "no score here"}, default="Score: 5")
    row = run(mapgen.label(llm, mapgen.UltraCMTask()), {"input": ["q"], "generations": [["good", "bad"]]})[0]
    assert row["score"] == [5.0, None]
    assert row["labelling_error"].startswith("parse: text 2: ")


def test_each_failed_text_keeps_its_own_kind_and_the_summary_reads_them(fault_server):
    from mapgen.report.summary import rating_failures

    llm = judge(
        fault_server,
        {"contains": "\nbad\n", "reply": "no score here"},
        {"contains": "\ndown\n", "status": 500},
        default="Score: 5",
        max_retries=0,
    )
    fn = mapgen.label(llm, mapgen.UltraCMTask())
    row = run(fn, {"input": ["q"], "generations": [["bad", "good", "down"]]})[0]
    assert row["score"] == [None, 5.0, None]
    first, second = row["labelling_error"].split("; ")
    assert first.startswith("parse: text 1: ") and second.startswith("http_500: text 3: ")
    assert mapgen.error_kinds(row["labelling_error"]) == ["parse", "http_500"]
    counts = rating_failures(row["generations"], row["score"], row["labelling_error"])
    assert counts == {"parse": 1, "http_500": 1}


def test_judgelm_rationale_is_one_per_row(fault_server):
    llm = judge(fault_server, default="7 3\nFirst is better.")
    row = run(mapgen.label(llm, mapgen.JudgeLMTask()), {"input": ["q"], "generations": [[None, "a", "b"]]})[0]
    assert row["rating"] == [None, 7.0, 3.0]
    assert row["rationale"] == "First is better."


def test_complexity_scorer_rates_instructions(fault_server):
    llm = judge(fault_server, default="[1] Score: 2\n[2] Score: 8")
    row = run(mapgen.label(llm, mapgen.ComplexityScorerTask()), {"instructions": [["easy", "hard"]]})[0]
    assert row["rating"] == [2.0, 8.0]


def test_ultrajudge_areas_column(fault_server):
    llm = judge(fault_server, default="Answer 1\n- Practical Accuracy: 8 - right\nFinal scores: 8")
    row = run(mapgen.label(llm, mapgen.UltraJudgeTask()), {"input": ["q"], "generations": [["a"]]})[0]
    assert row["rating"] == [8.0]
    assert row["areas"][0]["Practical Accuracy"] == {"rating": 8.0, "rationale": "right"}


def logprob_rule():
    """A JSON answer whose rating token carries probabilities 0.5 on '4' and 0.5 on ' 2', in OpenAI's
    ``logprobs.content`` shape."""
    tokens = ['{"ratings": [{"rating": ', "4", ', "rationale": "x"}]}']
    top = [[], [("4", math.log(0.5)), (" 2", math.log(0.5)), ("x", -1.0)], []]
    content = [
        {
            "token": token,
            "logprob": 0.0 if not alternatives else alternatives[0][1],
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives],
        }
        for token, alternatives in zip(tokens, top, strict=True)
    ]
    return {"reply": "".join(tokens), "logprobs": content}


def test_weighted_ratings_read_the_digit_probabilities(fault_server):
    llm = judge(fault_server, logprob_rule())
    assert llm.supports_logprobs
    row = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask(), weighted_ratings=True),
        {"input": ["q"], "generations": [[None, "a"]]},
    )[0]
    assert row["rating"] == [None, 4.0]
    assert row["weighted_rating"] == [None, 3.0]
    [sent] = fault_server.requests()
    assert sent["logprobs"] is True and sent["top_logprobs"] > 0


def test_weighted_ratings_need_logprobs_and_a_one_digit_scale(fault_server):
    with pytest.raises(ValueError, match="log-probabilities"):
        mapgen.label(
            judge(fault_server, llm=PlainServerLLM), mapgen.UltraFeedbackTask(), weighted_ratings=True
        )
    with pytest.raises(ValueError, match="two digits"):
        mapgen.label(judge(fault_server), mapgen.JudgeLMTask(), weighted_ratings=True)
    assert fault_server.requests() == []


def test_fingerprint_differs_by_task_and_option(fault_server):
    llm = judge(fault_server)
    a = mapgen.fingerprint(mapgen.label(llm, mapgen.UltraFeedbackTask.for_honesty()))
    b = mapgen.fingerprint(mapgen.label(llm, mapgen.UltraFeedbackTask.for_helpfulness()))
    c = mapgen.fingerprint(mapgen.label(llm, mapgen.UltraFeedbackTask.for_honesty(), weighted_ratings=True))
    assert len({a, b, c}) == 3
    assert a == mapgen.fingerprint(mapgen.label(llm, mapgen.UltraFeedbackTask.for_honesty()))


QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is 12 times 3?",
    "Give a synonym for 'happy'.",
]


@pytest.mark.llamacpp
def test_embedded_model_generates_and_labels_with_numeric_ratings():
    """End to end on the embedded model: at least 90% of generations get a numeric rating."""
    ds = datasets.Dataset.from_dict({"input": QUESTIONS})
    generator = mapgen.LlamaCppLLM(max_new_tokens=24, seed=0)
    ds = ds.map(mapgen.generate(generator, num_generations=2), batched=True)
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=60, seed=0)
    fn = mapgen.label(judge, mapgen.UltraFeedbackTask.for_small_models(), weighted_ratings=True)
    ds = ds.map(fn, batched=True)
    ratings = [r for row in ds["rating"] for r in row]
    weighted = [w for row in ds["weighted_rating"] for w in row]
    assert len(ratings) == 10
    assert sum(r is not None for r in ratings) >= 9
    assert all(r is None or 1 <= r <= 5 for r in ratings)
    assert sum(w is not None for w in weighted) >= 9
    assert all(w is None or 1.0 <= w <= 5.0 for w in weighted)


@pytest.mark.llamacpp
def test_embedded_model_labels_all_at_once_with_the_full_rubric():
    ds = datasets.Dataset.from_dict(
        {"input": QUESTIONS[:2], "generations": [["Paris.", "Lyon."], ["Red, blue and yellow.", None]]}
    )
    judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=120, seed=0)
    ds = ds.map(mapgen.label(judge, mapgen.UltraFeedbackTask.for_overall_quality()), batched=True)
    assert [len(r) for r in ds["rating"]] == [2, 2]
    assert ds["rating"][1][1] is None
    assert sum(r is not None for row in ds["rating"] for r in row) >= 3


# Ratings cut at the token limit (issue 20)


@pytest.mark.parametrize(
    "reply, rating, error",
    [
        ("Text 1\nRating: 4", [4.0], None),  # a short rating the limit cut after its score: kept
        ("Text 1\nRati", [None], "length: cut at max_new_tokens=32"),
        (
            "Text 1\nRating: 4\nRationale: ok\n\nText 2\nRat",
            [4.0, None],
            "length: cut at max_new_tokens=32: ",
        ),
    ],
)
def test_a_rating_cut_at_the_token_limit_is_kept_if_it_reads_else_says_why(
    fault_server, reply, rating, error
):
    llm = judge(fault_server, {"reply": reply, "finish_reason": "length"}, max_new_tokens=32)
    data = {"input": ["q"], "generations": [["a", "b"][: len(rating)]]}
    row = run(mapgen.label(llm, mapgen.UltraFeedbackTask()), data)[0]
    assert row["rating"] == rating
    assert (row["labelling_error"] or "")[: len(error or "")] == (error or "")
    assert (row["labelling_error"] is None) == (error is None)
    assert row["labelling_metadata"]["finish_reason"] == "length"
    assert fault_server.stats()["total"] == 1


def test_a_critique_cut_at_the_token_limit_is_not_reasked(fault_server):
    llm = judge(
        fault_server, {"reply": '{"critique": "The answer', "finish_reason": "length"}, max_new_tokens=8
    )
    row = run(mapgen.label(llm, mapgen.UltraCMTask()), {"input": ["q"], "generations": [["a", "b"]]})[0]
    assert row["score"] == [None, None]
    assert row["labelling_error"].startswith("length: text 1: cut at max_new_tokens=8; length: text 2:")
    assert fault_server.stats()["total"] == 2
