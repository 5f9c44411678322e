"""mapgen.pipeline('preference', ...): all five subtasks, clear errors, the default labeller."""

import datasets
import pytest

import mapgen
from mapgen.pipeline import DEFAULT_LABELLER_MODEL
from tests._fake_llm import FakeLLM

SUBTASKS = ["text-quality", "helpfulness", "truthfulness", "honesty", "instruction-following"]


def judge_reply(request):
    if "<text 1>" in request.prompt.user:
        return "Text 1\nRating: 4\nRationale: a\nText 2\nRating: 2\nRationale: b"
    return f"answer {request.index}"


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_every_subtask_generates_then_labels(subtask):
    llm = FakeLLM(reply=judge_reply)
    fn = mapgen.pipeline("preference", subtask, generator=llm, labeller=llm, num_generations=2)
    ds = datasets.Dataset.from_dict({"input": ["q1", "q2"]}).map(fn, batched=True)
    assert ds["generations"] == [["answer 0", "answer 1"]] * 2
    assert ds["rating"] == [[4.0, 2.0]] * 2
    assert ds["labelling_error"] == [None, None]
    expected = {"text-quality": "overall-quality"}.get(subtask, subtask)
    assert fn.label.task.aspect == expected


def test_unknown_subtask_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"text-quality.*instruction-following"):
        mapgen.pipeline("preference", "quality", generator=FakeLLM(), labeller=FakeLLM())
    with pytest.raises(ValueError, match="preference"):
        mapgen.pipeline("sft", "text-quality", generator=FakeLLM(), labeller=FakeLLM())


def test_labeller_kwargs_are_routed_to_the_task_and_label():
    llm = FakeLLM(logprob_support=True)
    fn = mapgen.pipeline(
        "preference", "honesty", generator=llm, labeller=llm, per_generation=True, weighted_ratings=True
    )
    assert fn.label.task.per_generation and fn.label.weighted_ratings
    with pytest.raises(TypeError, match="temperature"):
        mapgen.pipeline("preference", "honesty", generator=llm, labeller=llm, temperature=0.0)


def test_default_labeller_is_openai_gpt_4o_mini(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fn = mapgen.pipeline("preference", "text-quality", generator=FakeLLM())
    assert type(fn.label.llm).__name__ == "OpenAILLM"
    assert fn.label.llm.model == DEFAULT_LABELLER_MODEL == "gpt-4o-mini"
    assert fn.label.llm.temperature == 0.0


def test_pipeline_is_fingerprinted_by_both_steps():
    a = mapgen.pipeline("preference", "honesty", generator=FakeLLM(), labeller=FakeLLM())
    b = mapgen.pipeline("preference", "helpfulness", generator=FakeLLM(), labeller=FakeLLM())
    assert mapgen.fingerprint(a) != mapgen.fingerprint(b)
    assert mapgen.fingerprint(a) == mapgen.fingerprint(
        mapgen.pipeline("preference", "honesty", generator=FakeLLM(), labeller=FakeLLM())
    )
