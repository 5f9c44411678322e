"""mapgen.label: alignment, error column, schema sizing, weighted ratings, column types, end to end."""

import math
import re

import datasets
import pytest

import mapgen
from mapgen.llms.base import Completion
from tests import _fake_llm
from tests._fake_llm import FakeLLM


def blocks(request, ratings):
    return "\n\n".join(f"Text {i}\nRating: {r}\nRationale: r{i}" for i, r in enumerate(ratings, 1))


def count_texts(request):
    return len(re.findall(r"^<text \d+>$", request.prompt.user, flags=re.MULTILINE))


def rate_by_length(request):
    """Rates text i with its length (capped at 5): lets tests see which text got which rating."""
    texts = re.findall(r"<text \d+>\n(.*?)\n</text", request.prompt.user, flags=re.DOTALL)
    return blocks(request, [min(len(t), 5) for t in texts])


def run(fn, data):
    return datasets.Dataset.from_dict(data).map(fn, batched=True, batch_size=10)


def test_none_generations_are_skipped_and_ratings_stay_aligned():
    _fake_llm.SENT.clear()
    fn = mapgen.label(FakeLLM(reply=rate_by_length), mapgen.UltraFeedbackTask())
    ds = run(fn, {"input": ["q"], "generations": [["aaa", None, "a", "aaaaaaa"]]})
    row = ds[0]
    assert row["rating"] == [3.0, None, 1.0, 5.0]
    assert row["rationale"] == ["r1", None, "r2", "r3"]
    assert row["labelling_error"] is None
    assert row["labelling_model"] == "fake"
    assert count_texts(_fake_llm.SENT[0]) == 3  # the None generation was not shown to the judge


def test_fewer_blocks_than_generations_leaves_the_rest_none_with_a_reason():
    fn = mapgen.label(FakeLLM(reply=lambda r: "Text 1\nRating: 4\nRationale: ok"), mapgen.UltraFeedbackTask())
    row = run(fn, {"input": ["q"], "generations": [["a", "b", "c"]]})[0]
    assert row["rating"] == [4.0, None, None]
    assert "no rating for text(s) [2, 3] of 3" in row["labelling_error"]


def test_more_blocks_than_generations_are_ignored_with_a_reason():
    fn = mapgen.label(FakeLLM(reply=lambda r: blocks(r, [4, 3, 2])), mapgen.UltraFeedbackTask())
    row = run(fn, {"input": ["q"], "generations": [["a", "b"]]})[0]
    assert row["rating"] == [4.0, 3.0]
    assert "3 ratings for 2 texts" in row["labelling_error"]


def test_unparseable_answers_and_failed_requests_are_data():
    def reply(request):
        if "boom" in request.prompt.user:
            return Completion.failed("HTTPError: 500 after 3 retries")
        return "I like them all."

    fn = mapgen.label(FakeLLM(reply=reply), mapgen.UltraFeedbackTask())
    ds = run(fn, {"input": ["q", "boom"], "generations": [["a", "b"], ["c", "d"]]})
    assert ds["rating"] == [[None, None], [None, None]]
    assert ds[0]["labelling_error"].startswith("parse error: found no rated blocks")
    assert ds[1]["labelling_error"] == "HTTPError: 500 after 3 retries"
    assert ds[0]["raw_labelling_response"] == "I like them all."


def test_rows_with_nothing_to_rate_send_nothing():
    _fake_llm.SENT.clear()
    fn = mapgen.label(FakeLLM(reply=lambda r: blocks(r, [5])), mapgen.UltraFeedbackTask())
    ds = run(fn, {"input": ["q", "q", None], "generations": [[None, None], [], ["x"]]})
    assert ds["rating"] == [[None, None], [], [None]]
    assert ds[0]["labelling_error"] == "no generations to rate (all None or empty)"
    assert "are None" in ds[2]["labelling_error"]
    assert _fake_llm.SENT == []


def test_all_failing_first_batch_keeps_column_types():
    fn = mapgen.label(FakeLLM(reply=rate_by_length), mapgen.UltraFeedbackTask())
    ds = datasets.Dataset.from_dict({"input": ["q", "q"], "generations": [[None], ["abcd"]]})
    ds = ds.map(fn, batched=True, batch_size=1)
    assert ds["rating"] == [[None], [4.0]]
    assert str(ds.features["rating"].feature.dtype) == "float64"


def test_missing_columns_fail_before_any_request():
    _fake_llm.SENT.clear()
    fn = mapgen.label(FakeLLM(), mapgen.UltraFeedbackTask())
    with pytest.raises(mapgen.MissingColumnError, match="generations"):
        run(fn, {"input": ["q"], "answers": [["a"]]})
    assert _fake_llm.SENT == []
    fn = mapgen.label(
        FakeLLM(reply=rate_by_length), mapgen.UltraFeedbackTask(), input_columns={"generations": "answers"}
    )
    assert run(fn, {"input": ["q"], "answers": [["ab"]]})["rating"] == [[2.0]]


def test_generation_tasks_are_refused_with_a_pointer_to_generate():
    with pytest.raises(TypeError, match=r"mapgen\.generate"):
        mapgen.label(FakeLLM(), mapgen.TextGenerationTask())


def test_schema_is_sized_to_the_row_for_constraining_backends():
    _fake_llm.SENT.clear()
    reply = '{"ratings": [{"rating": 5, "rationale": "a"}, {"rating": 1, "rationale": "b"}]}'
    fn = mapgen.label(FakeLLM(reply=lambda r: reply, schema_support=True), mapgen.UltraFeedbackTask())
    row = run(fn, {"input": ["q"], "generations": [["a", None, "b"]]})[0]
    assert row["rating"] == [5.0, None, 1.0]
    items = _fake_llm.SENT[0].schema["properties"]["ratings"]
    assert items["minItems"] == items["maxItems"] == 2
    assert mapgen.UltraFeedbackTask().schema["properties"]["ratings"].get("minItems") is None  # not mutated


def test_backends_without_schema_support_get_no_schema():
    _fake_llm.SENT.clear()
    run(
        mapgen.label(FakeLLM(reply=rate_by_length), mapgen.JudgeLMTask()),
        {"input": ["q"], "generations": [["a"]]},
    )
    assert _fake_llm.SENT[0].schema is None


def test_per_item_tasks_send_one_request_per_generation():
    _fake_llm.SENT.clear()

    def reply(request):
        return (
            "Critique: short\nOverall score: 3"
            if "tiny" in request.prompt.user
            else "Critique: long\nOverall score: 9"
        )

    fn = mapgen.label(FakeLLM(reply=reply), mapgen.UltraCMTask())
    row = run(fn, {"input": ["q"], "generations": [["tiny", None, "a long answer"]]})[0]
    assert len(_fake_llm.SENT) == 2
    assert row["score"] == [3.0, None, 9.0]
    assert row["critique"] == ["short", None, "long"]
    assert row["labelling_prompt"][1] is None and row["raw_labelling_response"][2].startswith(
        "Critique: long"
    )
    assert row["labelling_error"] is None


def test_per_item_partial_failure_names_the_text():
    fn = mapgen.label(
        FakeLLM(reply=lambda r: "no score here" if "bad" in r.prompt.user else "Score: 5"),
        mapgen.UltraCMTask(),
    )
    row = run(fn, {"input": ["q"], "generations": [["good", "bad"]]})[0]
    assert row["score"] == [5.0, None]
    assert row["labelling_error"].startswith("text 2: parse error")


def test_judgelm_rationale_is_one_per_row():
    fn = mapgen.label(FakeLLM(reply=lambda r: "7 3\nFirst is better."), mapgen.JudgeLMTask())
    row = run(fn, {"input": ["q"], "generations": [[None, "a", "b"]]})[0]
    assert row["rating"] == [None, 7.0, 3.0]
    assert row["rationale"] == "First is better."


def test_complexity_scorer_rates_instructions():
    fn = mapgen.label(FakeLLM(reply=lambda r: "[1] Score: 2\n[2] Score: 8"), mapgen.ComplexityScorerTask())
    row = run(fn, {"instructions": [["easy", "hard"]]})[0]
    assert row["rating"] == [2.0, 8.0]


def test_ultrajudge_areas_column():
    answer = "Answer 1\n- Practical Accuracy: 8 - right\nFinal scores: 8"
    row = run(
        mapgen.label(FakeLLM(reply=lambda r: answer), mapgen.UltraJudgeTask()),
        {"input": ["q"], "generations": [["a"]]},
    )[0]
    assert row["rating"] == [8.0]
    assert row["areas"][0]["Practical Accuracy"] == {"rating": 8.0, "rationale": "right"}


def logprob_reply(request):
    """A JSON answer whose rating tokens carry probabilities 0.5 on '4' and 0.5 on '2'."""
    tokens = ['{"ratings": [{"rating": ', "4", ', "rationale": "x"}]}']
    top = [{}, {"4": math.log(0.5), " 2": math.log(0.5), "x": -1.0}, {}]
    return Completion(text="".join(tokens), tokens=tokens, top_logprobs=top)


def test_weighted_ratings_read_the_digit_probabilities():
    _fake_llm.SENT.clear()
    llm = FakeLLM(reply=logprob_reply, logprob_support=True)
    row = run(
        mapgen.label(llm, mapgen.UltraFeedbackTask(), weighted_ratings=True),
        {"input": ["q"], "generations": [[None, "a"]]},
    )[0]
    assert row["rating"] == [None, 4.0]
    assert row["weighted_rating"] == [None, 3.0]
    assert _fake_llm.SENT[0].top_logprobs > 0


def test_weighted_ratings_need_logprobs_and_a_one_digit_scale():
    with pytest.raises(ValueError, match="log-probabilities"):
        mapgen.label(FakeLLM(), mapgen.UltraFeedbackTask(), weighted_ratings=True)
    with pytest.raises(ValueError, match="two digits"):
        mapgen.label(FakeLLM(logprob_support=True), mapgen.JudgeLMTask(), weighted_ratings=True)


def test_fingerprint_differs_by_task_and_option():
    llm = FakeLLM(reply=rate_by_length, logprob_support=True)
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
