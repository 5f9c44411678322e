"""mapgen.pipeline('preference', ...): all five subtasks, clear errors, the default labeller.

Generator and labeller are the real :class:`mapgen.OpenAILLM` against the fault server on 127.0.0.1,
with scripted answers.
"""

import datasets
import pytest

import mapgen
from mapgen.pipeline import DEFAULT_LABELLER_MODEL

SUBTASKS = ["text-quality", "helpfulness", "truthfulness", "honesty", "instruction-following"]

JUDGEMENT = "Text 1\nRating: 4\nRationale: a\nText 2\nRating: 2\nRationale: b"


def fault_llm(server, model="pipeline-llm"):
    return mapgen.OpenAILLM(model, base_url=server.base_url, api_key=server.api_key)


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_every_subtask_generates_then_labels(fault_server, subtask):
    # the labelling prompt lists the texts; a generation prompt gets one answer per choice of its n
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "<text 1>\nanswer 0\n</text 1>\n<text 2>\nanswer 1\n</text 2>", "reply": JUDGEMENT}
        ],
        default_reply=["answer 0", "answer 1"],
    )
    llm = fault_llm(fault_server)
    fn = mapgen.pipeline("preference", subtask, generator=llm, labeller=llm, num_generations=2)
    ds = datasets.Dataset.from_dict({"input": ["q1", "q2"]}).map(fn, batched=True)
    assert ds["generations"] == [["answer 0", "answer 1"]] * 2
    assert ds["rating"] == [[4.0, 2.0]] * 2
    assert ds["labelling_error"] == [None, None]
    expected = {"text-quality": "overall-quality"}.get(subtask, subtask)
    assert fn.label.task.aspect == expected
    sent = fault_server.requests()
    assert sorted(body.get("n", 1) for body in sent) == [1, 1, 2, 2]  # a row's generations share one request


def test_unknown_subtask_lists_the_valid_ones(fault_server):
    llm = fault_llm(fault_server)
    with pytest.raises(ValueError, match=r"text-quality.*instruction-following"):
        mapgen.pipeline("preference", "quality", generator=llm, labeller=llm)
    with pytest.raises(ValueError, match="preference"):
        mapgen.pipeline("sft", "text-quality", generator=llm, labeller=llm)


def test_labeller_kwargs_are_routed_to_the_task_and_label(fault_server):
    llm = fault_llm(fault_server)
    fn = mapgen.pipeline(
        "preference", "honesty", generator=llm, labeller=llm, per_generation=True, weighted_ratings=True
    )
    assert fn.label.task.per_generation and fn.label.weighted_ratings
    with pytest.raises(TypeError, match="temperature"):
        mapgen.pipeline("preference", "honesty", generator=llm, labeller=llm, temperature=0.0)


def test_default_labeller_is_openai_gpt_4o_mini(fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fn = mapgen.pipeline("preference", "text-quality", generator=fault_llm(fault_server))
    assert type(fn.label.llm).__name__ == "OpenAILLM"
    assert fn.label.llm.model == DEFAULT_LABELLER_MODEL == "gpt-4o-mini"
    assert fn.label.llm.temperature == 0.0


def test_pipeline_is_fingerprinted_by_both_steps(fault_server):
    generator, labeller = (
        fault_llm(fault_server, "pipeline-generator"),
        fault_llm(fault_server, "pipeline-labeller"),
    )
    a = mapgen.pipeline("preference", "honesty", generator=generator, labeller=labeller)
    b = mapgen.pipeline("preference", "helpfulness", generator=generator, labeller=labeller)
    c = mapgen.pipeline("preference", "honesty", generator=labeller, labeller=generator)
    assert len({mapgen.fingerprint(a), mapgen.fingerprint(b), mapgen.fingerprint(c)}) == 3
    assert mapgen.fingerprint(a) == mapgen.fingerprint(
        mapgen.pipeline("preference", "honesty", generator=generator, labeller=labeller)
    )
    assert fault_server.requests() == []
