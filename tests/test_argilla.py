"""Argilla export: every task's data as an Argilla v2 dataset, pushed to a real argilla-server and read back.

The data is made by mapgen itself (``generate``/``label`` with a canned backend whose answers are in each
task's format), so the columns are the ones users have. The server tests use the ``argilla_server``
fixture (tests/servers/argilla_fixtures.py): argilla-server 2.8.0 in its own venv, SQLite, Redis and an
in-memory search engine.
"""

from __future__ import annotations

import enum
import logging
import subprocess
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import datasets
import pyarrow as pa
import pydantic
import pytest

import mapgen
from mapgen.core.request import Completion, Request
from mapgen.integrations.argilla import argilla_spec
from tests.docs_examples import run_examples

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, kw_only=True)
class CannedLLM(mapgen.LLM):
    """Answers every request with ``answer``; its name is ``name``."""

    answer: str = ""
    name: str = "canned-judge"

    @property
    def model_name(self) -> str:
        return self.name

    def load_engine(self, rank: int | None) -> Any:
        return None

    def complete(self, requests: Sequence[Request], *, rank=None, on_complete=None) -> list[Completion]:
        answers = []
        for i, _ in enumerate(requests):
            completion = Completion(text=self.answer, finish_reason="stop")
            if on_complete:
                on_complete(i, completion)
            answers.append(completion)
        return answers


ROWS = {
    "input": ["What is 2 + 2?", "Name a primary colour.", "Capital of France?"],
    "generations": [["4", "5"], ["Red.", None], ["Paris.", "Lyon."]],
    "generation_model": [["gen-a", "gen-b"], ["gen-a", "gen-b"], ["gen-a", "gen-a"]],
    "ref_completion": ["4", "Red, yellow or blue.", "Paris."],
}

ULTRAJUDGE = "\n".join(
    [
        "Answer 1",
        "- Practical Accuracy: 8 - right",
        "- Clarity & Transparency: 7 - clear",
        "- Authenticity & Reliability: 9 - sound",
        "- Compliance with Intent: 8 - on task",
        "Answer 2",
        "- Practical Accuracy: 3 - wrong",
        "- Clarity & Transparency: 6 - clear",
        "- Authenticity & Reliability: 2 - invented",
        "- Compliance with Intent: 5 - partly",
        "Final scores: 8 3",
    ]
)

LABELLING = {
    "ultrafeedback": (
        mapgen.UltraFeedbackTask.for_overall_quality(),
        "Text 1\nRating: 4\nRationale: Right.\n\nText 2\nRating: 2\nRationale: Wrong.",
    ),
    "judgelm": (mapgen.JudgeLMTask(), "8 3\nThe first answer is right; the second is not."),
    "ultrajudge": (mapgen.UltraJudgeTask(), ULTRAJUDGE),
    "quality_scorer": (mapgen.QualityScorerTask(), "[1] Score: 8\n[2] Score: 3"),
    "ultracm": (mapgen.UltraCMTask(), "Critique: Correct but terse.\nOverall score: 7"),
    "prometheus": (
        mapgen.PrometheusTask(
            criteria="Is the answer correct?",
            score_descriptions=("Wrong.", "Mostly wrong.", "Half right.", "Mostly right.", "Right."),
        ),
        "Feedback: Matches the reference. [RESULT] 4",
    ),
}

GENERATION = {
    "text_generation": (mapgen.TextGenerationTask(), "An answer."),
    "evol_quality": (mapgen.EvolQualityTask(), "A better answer, with details."),
    "self_instruct": (
        mapgen.SelfInstructTask(num_instructions=2),
        "1. Suggest a dinner with lentils.\n2. Explain how yeast makes bread rise.",
    ),
    "evol_instruct": (mapgen.EvolInstructTask(), "Write a four-line poem about tea, rhyming AABB."),
    "evol_complexity": (mapgen.EvolComplexityTask(), "Explain, step by step, why 2 + 2 = 4 in base 10."),
}

INSTRUCTION_TASKS = {"self_instruct", "evol_instruct", "evol_complexity", "complexity_scorer"}


def make_dataset(kind: str, answer: str | None = None) -> tuple[datasets.Dataset, Any]:
    """The dataset a user would have after the task ``kind``, and the callable that made it."""
    base = datasets.Dataset.from_dict(ROWS)
    if kind in LABELLING:
        task, canned = LABELLING[kind]
        fn = mapgen.label(CannedLLM(answer=answer or canned), task)
    elif kind == "complexity_scorer":
        instructions = datasets.Dataset.from_dict(
            {"instructions": [["Add 2 and 2.", "Prove Fermat's last theorem."]]}
        )
        fn = mapgen.label(
            CannedLLM(answer=answer or "[1] Score: 2\n[2] Score: 9"), mapgen.ComplexityScorerTask()
        )
        return instructions.map(fn, batched=True), fn
    else:
        task, canned = GENERATION[kind]
        if kind == "evol_quality":
            base = base.map(lambda row: {"generation": row["generations"][0]})
        fn = mapgen.generate(
            CannedLLM(answer=answer or canned, name="canned-writer"), task, num_generations=2
        )
    return base.map(fn, batched=True), fn


ALL_KINDS = [*LABELLING, "complexity_scorer", *GENERATION]


def expected_suggestions(kind: str, ds: datasets.Dataset, task: mapgen.Task) -> list[dict[str, int]]:
    """Per record, the rating suggestions the data calls for, computed from the columns."""
    if kind not in LABELLING and kind != "complexity_scorer":
        return []
    score = task.score_output
    if kind == "complexity_scorer":
        return [{"rating": round(r)} for row in ds for r in row[score] if r is not None]
    return [
        {f"generation-{i + 1}-rating": round(r) for i, r in enumerate(row[score]) if r is not None}
        for row in ds
    ]


def test_importing_mapgen_imports_neither_argilla_nor_ray():
    code = "import sys, mapgen; print('argilla' in sys.modules, 'ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_task_has_an_argilla_layout(kind):
    ds, fn = make_dataset(kind)
    spec = argilla_spec(ds, fn)
    fields = [f.name for f in spec.fields]
    questions = {q.name: q for q in spec.questions}
    assert any(q.required for q in spec.questions), "Argilla needs one required question"
    for record in spec.records:
        assert set(record.fields) <= set(fields)
        assert all(isinstance(v, str) and v for v in record.fields.values())
        assert set(record.suggestions) <= set(questions)
        for name, value in record.suggestions.items():
            if questions[name].kind == "rating":
                assert value in questions[name].values
        assert set(record.metadata) <= {m.name for m in spec.metadata}
    assert len({r.id for r in spec.records}) == len(spec.records)
    if kind in INSTRUCTION_TASKS:
        assert "instruction" in fields
        column = ds["instructions"]
        flat = [
            i for entry in column for value in entry for i in (value if isinstance(value, list) else [value])
        ]
        assert [r.fields["instruction"] for r in spec.records] == [i for i in flat if i]
    else:
        assert fields[0] == "input"
        assert "generation-1" in fields and "generation-2" in fields
        assert len(spec.records) == len(ds)
        assert [r.fields["input"] for r in spec.records] == ds["input"]
    rated = [{k: v for k, v in r.suggestions.items() if questions[k].kind == "rating"} for r in spec.records]
    expected = expected_suggestions(kind, ds, fn.task)
    if expected:
        assert rated == expected
        assert all(r.agent == "canned-judge" for r in spec.records)
    else:
        assert not any(rated)


def test_argilla_spec_keeps_generations_aligned_and_measures_the_gap():
    ds, fn = make_dataset("ultrafeedback")
    spec = argilla_spec(ds, fn)
    second = spec.records[1]  # its generation 2 is None: no field, no rating, no length
    assert "generation-2" not in second.fields
    assert "generation-2-rating" not in second.suggestions
    assert "generation-2-length" not in second.metadata
    assert second.suggestions["rationale"] == "Generation 1: Right."
    first = spec.records[0]
    assert first.metadata["rating_gap"] == 2.0 and "rating_gap" not in second.metadata
    assert first.metadata["generation_model"] == ["gen-a", "gen-b"]
    assert first.metadata["generation-2-length"] == 1 and first.metadata["input_length"] == len(
        ROWS["input"][0]
    )
    assert first.metadata["labelling_model"] == "canned-judge"
    assert argilla_spec(ds, fn).records == spec.records, "ids and content are stable"


def test_ultrajudge_rationale_lists_areas():
    ds, fn = make_dataset("ultrajudge")
    record = argilla_spec(ds, fn).records[0]
    assert record.suggestions["generation-1-rating"] == 8 and record.suggestions["generation-2-rating"] == 3
    assert "Practical Accuracy 8 (right)" in record.suggestions["rationale"]
    assert "Generation 2: Practical Accuracy 3 (wrong)" in record.suggestions["rationale"]


def test_to_argilla_needs_the_sdk_only_when_called(monkeypatch):
    monkeypatch.setitem(sys.modules, "argilla", None)
    ds, fn = make_dataset("judgelm")
    with pytest.raises(ImportError, match=r"mapgen\[argilla\]"):
        mapgen.to_argilla(ds, fn)


# --- against a real argilla-server ---------------------------------------------------------------------


@pytest.fixture
def rg_client(argilla_server):
    import argilla as rg

    return rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)


def read_back(client, name, workspace):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = client.datasets(name=name, workspace=workspace)
    assert dataset is not None, f"dataset {name} not on the server"
    return dataset, list(dataset.records(with_suggestions=True))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_push_every_task_and_read_back(kind, argilla_server, rg_client):
    ds, fn = make_dataset(kind)
    spec = argilla_spec(ds, fn)
    name = f"push-{kind.replace('_', '-')}"
    pushed = mapgen.push_to_argilla(ds, fn, name=name, workspace=argilla_server.workspace, client=rg_client)
    dataset, records = read_back(rg_client, name, argilla_server.workspace)
    assert dataset.id == pushed.id
    assert [f.name for f in dataset.settings.fields] == [f.name for f in spec.fields]
    assert [q.name for q in dataset.settings.questions] == [q.name for q in spec.questions]
    for question, wanted in zip(dataset.settings.questions, spec.questions, strict=True):
        if wanted.kind == "rating":
            assert sorted(question.values) == list(wanted.values)
    assert {m.name for m in dataset.settings.metadata} == {m.name for m in spec.metadata}
    by_id = {str(r.id): r for r in records}
    assert set(by_id) == {r.id for r in spec.records}
    for wanted in spec.records:
        got = by_id[wanted.id]
        assert got.fields == wanted.fields
        assert got.metadata == wanted.metadata
        suggestions = {s.question_name: (s.value, s.agent) for s in got.suggestions}
        assert suggestions == {q: (v, wanted.agent) for q, v in wanted.suggestions.items()}


def test_push_again_updates_in_place(argilla_server, rg_client):
    name, workspace = "ultrafeedback-review", argilla_server.workspace
    ds, fn = make_dataset("ultrafeedback")
    mapgen.push_to_argilla(ds, fn, name=name, workspace=workspace, client=rg_client)
    _, first = read_back(rg_client, name, workspace)
    assert len(first) == 3
    ratings = {str(r.id): r.suggestions["generation-1-rating"].value for r in first}
    assert set(ratings.values()) == {4}

    relabelled, fn2 = make_dataset(
        "ultrafeedback",
        answer="Text 1\nRating: 1\nRationale: Now wrong.\n\nText 2\nRating: 5\nRationale: Fine.",
    )
    mapgen.push_to_argilla(relabelled, fn2, name=name, workspace=workspace, client=rg_client)
    _, second = read_back(rg_client, name, workspace)
    assert sorted(str(r.id) for r in second) == sorted(ratings), "same records, not copies"
    for record in second:
        assert record.suggestions["generation-1-rating"].value == 1
        assert record.suggestions["rationale"].value.startswith("Generation 1: Now wrong.")
        two = "generation-2" in record.fields
        assert record.metadata.get("rating_gap") == (4.0 if two else None)

    grown = datasets.concatenate_datasets(
        [relabelled, relabelled.select([0]).map(lambda row: {"input": "What is 3 + 3?"})]
    )
    mapgen.push_to_argilla(grown, fn2, name=name, workspace=workspace, client=rg_client)
    _, third = read_back(rg_client, name, workspace)
    assert len(third) == 4


def test_push_refuses_a_dataset_with_other_fields(argilla_server, rg_client):
    name, workspace = "judgelm-review", argilla_server.workspace
    ds, fn = make_dataset("judgelm")
    mapgen.push_to_argilla(
        ds.select([1]).map(lambda r: {"generations": r["generations"][:1]}),
        fn,
        name=name,
        workspace=workspace,
        client=rg_client,
    )
    with pytest.raises(ValueError, match="generation-2"):
        mapgen.push_to_argilla(ds, fn, name=name, workspace=workspace, client=rg_client)


@pytest.mark.llamacpp
def test_argilla_docs_examples_run(argilla_server, monkeypatch):
    """docs/argilla.md's examples, against the test server (the docs test skips the ones that need it)."""
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    assert run_examples(ROOT / "docs" / "argilla.md", runner="tests/test_argilla.py") > 0


# A task's review layout is its own declaration (mapgen.core.review), with a default for tasks that make none


@dataclass(frozen=True, kw_only=True)
class Headline(mapgen.Task):
    """A new generation task that declares no review layout."""

    template: str = "Write a headline for: {{ article }}"
    outputs = ("headline",)

    @property
    def inputs(self):
        return ("article",)

    def parse(self, text):
        return {"headline": text.strip()}


@dataclass(frozen=True, kw_only=True)
class Politeness(mapgen.LabellingTask):
    """A new judge with its own score, scale and explanation column."""

    template: str = "Rate the politeness of each answer to {{ input }}: {{ generations | join(' / ') }}"
    outputs: ClassVar[dict] = {"politeness": pa.list_(pa.float64()), "why": pa.list_(pa.string())}
    score_output = "politeness"
    scale = (1, 3)

    def parse(self, text):
        return {"politeness": [float(n) for n in text.split()[:2]], "why": ["Curt.", "Kind."]}


@dataclass(frozen=True, kw_only=True)
class DeclaredPoliteness(Politeness):
    def review(self):
        return (
            super()
            .review()
            .replace(
                rubric="1: rude; 2: neutral; 3: courteous.", explanation="why", text_question=("why", "Why?")
            )
        )


def test_a_new_task_without_a_declaration_gets_a_layout_from_its_inputs_and_outputs():
    ds = datasets.Dataset.from_dict({"article": ["Rain is due.", "Tea prices rose."]})
    fn = mapgen.generate(CannedLLM(answer="Big news", name="writer"), Headline(), num_generations=2)
    spec = argilla_spec(ds.map(fn, batched=True), fn)
    assert Headline().review() == mapgen.ReviewLayout(
        items="headline",
        per_generation=True,
        rubric="Is it clear, self-contained and usable? From 1 (unusable) to 5 (excellent).",
        rating_title="Rate this entry",
    )
    assert [f.name for f in spec.fields] == ["article", "headline"]
    assert [q.name for q in spec.questions] == ["rating", "rationale"]
    assert [r.fields for r in spec.records[:2]] == [{"headline": "Big news", "article": "Rain is due."}] * 2
    assert all(r.suggestions == {} for r in spec.records)
    assert len(spec.records) == 4


def test_a_new_judge_is_reviewed_by_its_declaration_and_else_by_default():
    ds = datasets.Dataset.from_dict(ROWS).select([0])
    default = argilla_spec(
        ds.map(mapgen.label(CannedLLM(answer="1 3"), Politeness()), batched=True), Politeness()
    )
    questions = {q.name: q for q in default.questions}
    assert questions["generation-1-rating"].values == (1, 2, 3)
    assert questions["generation-1-rating"].description == "Overall quality, from 1 (poor) to 3 (excellent)."
    assert default.records[0].suggestions == {"generation-1-rating": 1, "generation-2-rating": 3}

    fn = mapgen.label(CannedLLM(answer="1 3"), DeclaredPoliteness())
    declared = argilla_spec(ds.map(fn, batched=True), fn)
    questions = {q.name: q for q in declared.questions}
    assert questions["generation-2-rating"].description == "1: rude; 2: neutral; 3: courteous."
    assert (questions["why"].title, questions["why"].kind) == ("Why?", "text")
    assert declared.records[0].suggestions == {
        "generation-1-rating": 1,
        "generation-2-rating": 3,
        "why": "Generation 1: Curt.\nGeneration 2: Kind.",
    }


BUILT_IN_TASKS = [
    n
    for n in mapgen.tasks.__all__
    if n.endswith("Task") and n not in ("Task", "LabellingTask", "RoundsTask")  # bases
]


@pytest.mark.parametrize("name", BUILT_IN_TASKS)
def test_every_built_in_task_declares_its_review_layout(name):
    cls = getattr(mapgen, name)
    assert cls.review is not mapgen.Task.review, f"{name} relies on the default layout"


def test_a_conversation_is_reviewed_as_its_transcript():
    chat = [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue."}]
    rows = {"conversation": [[chat]], "generation_model": [["m"]]}
    spec = argilla_spec(datasets.Dataset.from_dict(rows), mapgen.MagpieTask())
    assert [r.fields for r in spec.records] == [{"conversation": "User: Name a color.\n\nAssistant: Blue."}]
    assert [q.name for q in spec.questions] == ["rating", "rationale"]


# --- the task from the dataset's provenance -------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_task_is_read_from_the_provenance(kind):
    ds, fn = make_dataset(kind)
    assert mapgen.integrations.argilla.task_from_provenance(ds) == fn  # or an equal one built earlier
    assert argilla_spec(ds) == argilla_spec(ds, fn)


def test_labelled_data_is_reviewed_by_its_label_step_and_one_task_counts_once():
    generated = datasets.Dataset.from_dict({"input": ROWS["input"]}).map(
        mapgen.generate(CannedLLM(answer="4", name="writer"), num_generations=2), batched=True
    )
    judge = mapgen.label(CannedLLM(answer="[1] Score: 8\n[2] Score: 3"), mapgen.JudgeLMTask())
    labelled = generated.map(judge, batched=True)
    assert mapgen.integrations.argilla.task_from_provenance(labelled) == judge
    # the same judge, another model: two references, one layout
    other = mapgen.label(CannedLLM(answer="[1] Score: 1\n[2] Score: 9", name="judge-2"), mapgen.JudgeLMTask())
    both = datasets.concatenate_datasets([labelled, generated.map(other, batched=True)])
    assert mapgen.integrations.argilla.task_from_provenance(both) in (judge, other)
    assert [q.name for q in argilla_spec(both).questions] == [
        "generation-1-rating",
        "generation-2-rating",
        "rationale",
    ]


def test_two_label_steps_are_ambiguous_and_named():
    feedback, _ = make_dataset("ultrafeedback")
    judged, _ = make_dataset("judgelm")
    both = [*feedback, *judged]  # their columns differ in type: rows, as argilla_spec takes too
    with pytest.raises(ValueError, match="2 different label steps") as caught:
        mapgen.push_to_argilla(both, name="never-pushed", api_url="http://127.0.0.1:1")
    message = str(caught.value)
    assert "UltraFeedbackTask (model 'canned-judge', rating column 'generations'" in message
    assert "JudgeLMTask (model 'canned-judge', rating column 'generations'" in message
    assert "push_to_argilla(ds, task, name=...)" in message


def test_data_without_provenance_asks_for_the_task():
    rows = [{"input": "2 + 2?", "generations": ["4"], "rating": [5.0]}]
    with pytest.raises(ValueError, match="no answer metadata with a provenance"):
        argilla_spec(rows)
    unknown = [{**rows[0], "labelling_metadata": {"provenance": "0123456789abcdef"}}]
    with pytest.raises(ValueError, match=r"map 0123456789abcdef \(its provenance record is not in"):
        argilla_spec(unknown)


def test_a_map_from_another_process_is_named_from_its_record(tmp_path):
    """A dataset saved by another process: its provenance record (in the store) names the task."""
    store, saved = tmp_path / "store.sqlite", tmp_path / "ds"
    code = (
        "import datasets, mapgen\n"
        "from tests.test_argilla import CannedLLM, ROWS\n"
        "llm = CannedLLM(answer='[1] Score: 8\\n[2] Score: 3', name='remote-judge')\n"
        "judge = mapgen.label(llm, mapgen.JudgeLMTask(),"
        f" store={str(store)!r})\n"
        f"datasets.Dataset.from_dict(ROWS).map(judge, batched=True).save_to_disk({str(saved)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    ds = datasets.load_from_disk(str(saved))
    with pytest.raises(
        ValueError, match=r"\(JudgeLMTask \(model 'remote-judge', rating column 'generations'"
    ):
        argilla_spec(ds, store=str(store))
    assert argilla_spec(ds, mapgen.JudgeLMTask()).records, "the task passed again still works"


# --- a server that cannot be reached, and small pushes --------------------------------------------------


def test_a_server_that_is_down_is_named():
    from tests.servers.fixtures import free_port

    ds, fn = make_dataset("judgelm")
    url = f"http://reviewer:pa55word@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConnectionError) as caught:
        mapgen.push_to_argilla(ds, fn, name="down", api_url=url, api_key="argilla-key-s3cret")
    error = caught.value
    assert isinstance(error, mapgen.errors.ArgillaUnreachable)
    message = str(error)
    assert url.replace("pa55word", "***") in message
    assert "Check that the server is running" in message and "ARGILLA_API_URL" in message
    shown = "".join(traceback.format_exception_only(error)) + repr(error)
    assert "pa55word" not in shown and "argilla-key-s3cret" not in shown
    assert error.__cause__ is None and error.__suppress_context__


def test_a_small_push_logs_no_batch_size_warning(argilla_server, rg_client, caplog, capsys, recwarn):
    ds, fn = make_dataset("ultrafeedback")
    caplog.set_level(logging.WARNING)
    mapgen.push_to_argilla(ds, fn, name="small-push", workspace=argilla_server.workspace, client=rg_client)
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    said += capsys.readouterr().out.splitlines()
    assert not [line for line in said if "batch size" in line], said
    _, records = read_back(rg_client, "small-push", argilla_server.workspace)
    assert len(records) == 3


# --- a StructuredTask: a field and a question per output ------------------------------------------------


class Course(str, enum.Enum):
    STARTER = "starter"
    MAIN = "main"
    DESSERT = "dessert"


class Dish(pydantic.BaseModel):
    name: str
    course: Course
    diet: Literal["vegan", "vegetarian", "any"]
    spicy: bool
    stars: int = pydantic.Field(ge=1, le=5)
    calories: int
    note: Optional[str] = None  # noqa: UP045 - the spelling users write


DISH = (
    '{"name": "Green curry", "course": "main", "diet": "vegan", "spicy": true, "stars": 4, '
    '"calories": 450, "note": null}'
)


def test_a_structured_answer_is_reviewed_field_by_field(argilla_server, rg_client):
    import argilla as rg

    task = mapgen.StructuredTask(Dish, template="Suggest a dish from {{ cuisine }} cuisine.")
    fn = mapgen.generate(CannedLLM(answer=DISH, name="chef"), task, num_generations=2)
    ds = datasets.Dataset.from_dict({"cuisine": ["Thai", "Italian"]}).map(fn, batched=True)
    name = "dishes-review"
    mapgen.push_to_argilla(ds, name=name, workspace=argilla_server.workspace, client=rg_client)
    dataset, records = read_back(rg_client, name, argilla_server.workspace)

    fields = ["cuisine", "name", "course", "diet", "spicy", "stars", "calories", "note"]
    assert [f.name for f in dataset.settings.fields] == fields
    questions = {q.name: q for q in dataset.settings.questions}
    assert list(questions) == [
        "name-correction",
        "course-label",
        "diet-label",
        "spicy-label",
        "stars-rating",
        "calories-correction",
        "note-correction",
    ]
    assert isinstance(questions["course-label"], rg.LabelQuestion)
    assert questions["course-label"].labels == ["starter", "main", "dessert"]
    assert questions["diet-label"].labels == ["vegan", "vegetarian", "any"]
    assert questions["spicy-label"].labels == ["true", "false"]
    assert isinstance(questions["stars-rating"], rg.RatingQuestion)
    assert sorted(questions["stars-rating"].values) == [1, 2, 3, 4, 5]
    for text in ("name-correction", "calories-correction", "note-correction"):
        assert isinstance(questions[text], rg.TextQuestion)
    assert not questions["note-correction"].required and questions["diet-label"].required

    assert len(records) == 4  # one per answer: two rows, two generations
    record = next(r for r in records if r.fields["cuisine"] == "Thai")
    assert record.fields == {
        "cuisine": "Thai",
        "name": "Green curry",
        "course": "main",
        "diet": "vegan",
        "spicy": "true",
        "stars": "4",
        "calories": "450",
    }
    suggestions = {s.question_name: (s.value, s.agent) for s in record.suggestions}
    assert suggestions == {
        "name-correction": ("Green curry", "chef"),
        "course-label": ("main", "chef"),
        "diet-label": ("vegan", "chef"),
        "spicy-label": ("true", "chef"),
        "stars-rating": (4, "chef"),
        "calories-correction": ("450", "chef"),
    }


def test_a_structured_answer_that_failed_is_not_a_record():
    task = mapgen.StructuredTask(Dish, template="Suggest a dish from {{ cuisine }} cuisine.")
    fn = mapgen.generate(CannedLLM(answer="no JSON here"), task, max_reasks=0)
    ds = datasets.Dataset.from_dict({"cuisine": ["Thai"]}).map(fn, batched=True)
    assert ds["name"] == [[None]]
    assert argilla_spec(ds).records == []
