"""Golden tests: every built-in task's rendered prompt is pinned, so a template edit is a visible diff.

Regenerate after an intended change with ``MAPGEN_UPDATE_GOLDEN=1 pytest tests/test_tasks_golden.py``.
"""

import os
from pathlib import Path

import pytest

import mapgen
from mapgen.tasks.labelling import LabellingTask

GOLDEN = Path(__file__).parent / "golden" / "prompts"

ROW = {
    "input": "How do I boil an egg?",
    "generations": ["Put it in boiling water for 8 minutes.", "Eggs are laid by hens."],
    "instructions": ["Name a color.", "Prove that there are infinitely many primes."],
    "generation": "Put it in boiling water for 8 minutes.",
    "ref_completion": "Simmer the egg in boiling water for 7 to 9 minutes, then cool it in cold water.",
}

RUBRIC = {
    "criteria": "Is the answer factually correct and complete?",
    "score_descriptions": ("Wrong.", "Mostly wrong.", "Half right.", "Mostly right.", "Right and complete."),
}

TASKS = {
    "ultrafeedback_overall_quality": mapgen.UltraFeedbackTask.for_overall_quality(),
    "ultrafeedback_helpfulness": mapgen.UltraFeedbackTask.for_helpfulness(),
    "ultrafeedback_truthfulness": mapgen.UltraFeedbackTask.for_truthfulness(),
    "ultrafeedback_honesty": mapgen.UltraFeedbackTask.for_honesty(),
    "ultrafeedback_instruction_following": mapgen.UltraFeedbackTask.for_instruction_following(),
    "ultrafeedback_small_models": mapgen.UltraFeedbackTask.for_small_models(),
    "judgelm": mapgen.JudgeLMTask(),
    "pairwise": mapgen.PairwiseJudgeTask(),
    "ultrajudge": mapgen.UltraJudgeTask(),
    "quality_scorer": mapgen.QualityScorerTask(),
    "complexity_scorer": mapgen.ComplexityScorerTask(),
    "ultracm": mapgen.UltraCMTask(),
    "prometheus": mapgen.PrometheusTask(**RUBRIC),
    "self_instruct": mapgen.SelfInstructTask(
        application_description="A kitchen assistant.", num_instructions=3
    ),
    "evol_instruct_breadth": mapgen.EvolInstructTask(methods=("breadth",)),
    "evol_instruct_reasoning": mapgen.EvolInstructTask(methods=("reasoning",)),
    "evol_complexity": mapgen.EvolComplexityTask(methods=("constraints",)),
    "evol_quality": mapgen.EvolQualityTask(methods=("depth",)),
}


def render(task) -> str:
    row = {name: ROW[name] for name in task.inputs}
    if isinstance(task, LabellingTask) and task.one_request_per_item:
        row[task.item] = row[task.items][0]
    prompt = task.prompt(row)
    return f"=== system\n{prompt.system}\n=== user\n{prompt.user}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_rendered_prompt_matches_golden(name):
    text = render(TASKS[name])
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("MAPGEN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file for {name}; run with MAPGEN_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_every_task_of_the_reference_is_pinned():
    names = {type(task).__name__ for task in TASKS.values()}
    assert names == {
        "UltraFeedbackTask",
        "JudgeLMTask",
        "PairwiseJudgeTask",
        "UltraJudgeTask",
        "QualityScorerTask",
        "ComplexityScorerTask",
        "UltraCMTask",
        "PrometheusTask",
        "SelfInstructTask",
        "EvolInstructTask",
        "EvolComplexityTask",
        "EvolQualityTask",
    }


def test_ultrafeedback_aspects_carry_the_reference_scale_labels():
    labels = {name: task.labels for name, task in TASKS.items() if name.startswith("ultrafeedback_")}
    assert labels["ultrafeedback_overall_quality"] == (
        "Low Quality", "Moderate Quality", "Good", "Very Good", "Excellent",
    )  # fmt: skip
    assert labels["ultrafeedback_helpfulness"] == (
        "Severely Incorrect", "Partially Incorrect", "Correct", "Highly Informative", "Outstandingly Helpful",
    )  # fmt: skip
    assert labels["ultrafeedback_truthfulness"] == (
        "Completely Hallucinated", "Severe Hallucination", "Partial Hallucination / Misunderstanding",
        "Insignificant Hallucination", "No Hallucination",
    )  # fmt: skip
    assert labels["ultrafeedback_honesty"] == (
        "Confidently Incorrect",
        "Confident with Significant Mistakes / Unconfident Incorrect",
        "Uncertain / 'I Don't Know' / Subtle Mistakes",
        "Correct but Uncertain / Expressed Subtle Mistakes",
        "Correct and Confident / Precisely Express Uncertainty",
    )
    assert labels["ultrafeedback_instruction_following"] == (
        "Irrelevant", "Partial Focus", "Partial Compliance", "Almost There", "Comprehensive Compliance",
    )  # fmt: skip
    for name, task in TASKS.items():
        if name.startswith("ultrafeedback_") and name != "ultrafeedback_small_models":
            for label in task.labels:
                assert label in render(task)


def test_ultrajudge_shows_the_instruction():
    assert ROW["input"] in render(TASKS["ultrajudge"])


def test_each_task_reads_only_its_inputs():
    for task in TASKS.values():
        assert set(task.inputs) <= set(ROW), type(task).__name__


PLAIN_TEMPLATES = [
    "{{ input }}",
    "Q: {{input}}\n",
    "{{- a -}}  \n {{ b }}",
    "{# note #}x{{ a }}{% raw %}{{ y }}{% endraw %}",
    "{{ a }}{{ a }} and {{ b }}",
    "",
]


@pytest.mark.parametrize("source", PLAIN_TEMPLATES)
def test_a_plain_template_renders_as_jinja_renders_it(source):
    import jinja2

    from mapgen.tasks.base import Substitution, compile_template

    jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    fast = compile_template(source)
    assert isinstance(fast, Substitution)  # the fast path is taken, and agrees with Jinja
    for values in ({"input": "hi", "a": [1, None], "b": None}, {"input": 3, "a": "é", "b": {"k": 1.5}}):
        assert fast.render(**values) == jinja.from_string(source).render(**values)
    if "{{" in source.replace("{% raw %}{{", ""):
        with pytest.raises(jinja2.UndefinedError) as fast_error:
            fast.render()
        with pytest.raises(jinja2.UndefinedError) as jinja_error:
            jinja.from_string(source).render()
        assert str(fast_error.value) == str(jinja_error.value)


def test_a_template_naming_one_of_jinjas_globals_is_left_to_jinja():
    from mapgen.tasks.base import _JINJA, Substitution, compile_template

    template = compile_template("{{ range }} {{ input }}")  # Jinja renders `range` when no value is given
    assert not isinstance(template, Substitution)
    assert template.render(input="x") == f"{_JINJA.globals['range']} x"  # the sandbox's own range
