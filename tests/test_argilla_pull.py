"""Human labels back from Argilla: push (whole or a sample), two annotators submit through the Argilla SDK,
pull, and the columns line up with the generations. Against the real argilla-server of
tests/servers/argilla_fixtures.py (the ``argilla_server`` fixture, shared with tests/test_argilla.py)."""

from __future__ import annotations

import random
import warnings
from typing import Any

import datasets
import pytest

import mapgen
from mapgen.integrations.argilla import argilla_spec
from tests.test_argilla import DISH, CannedLLM, Dish, make_dataset

INPUTS = [f"What is {n} + {n}?" for n in range(6)]
JUDGE = "Text 1\nRating: 4\nRationale: Right.\n\nText 2\nRating: 2\nRationale: Wrong."


def rated_dataset() -> tuple[datasets.Dataset, object]:
    """Six prompts, two answers each (row 1's second is missing), rated by a canned judge."""
    generations: list[list[str | None]] = [[str(2 * n), str(2 * n + 1)] for n in range(6)]
    generations[1][1] = None
    ds = datasets.Dataset.from_dict({"input": INPUTS, "generations": generations})
    judge = mapgen.label(CannedLLM(answer=JUDGE), mapgen.UltraFeedbackTask.for_overall_quality())
    return ds.map(judge, batched=True), judge


@pytest.fixture(scope="module")
def client(argilla_server):
    import argilla as rg

    return rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)


@pytest.fixture(scope="module")
def annotators(argilla_server, client):
    """Two annotators of the workspace, ordered by user id (the order of ``human_ratings``)."""
    import argilla as rg

    workspace = client.workspaces(argilla_server.workspace)
    users = []
    for name in ("reviewer-ann", "reviewer-bob"):
        user = rg.User(username=name, password="password-" + name, role="annotator", client=client).create()
        user.add_to_workspace(workspace)
        users.append(user)
    return sorted(users, key=lambda user: str(user.id))


def records_by_row(client, name, workspace):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = client.datasets(name=name, workspace=workspace)
    return dataset, {r.metadata["row_index"]: r for r in dataset.records(with_responses=True)}


def submit(dataset, record, user, status="submitted", **ratings):
    """What an annotator's review in the UI sends: their ratings of a record's generations."""
    import argilla as rg

    for question, value in ratings.items():
        question = question.replace("_", "-")
        record.responses.add(rg.Response(question, value, user_id=user.id, status=status))
    dataset.records.log([record])


def test_push_a_sample_review_it_as_two_annotators_and_pull(argilla_server, client, annotators):
    ann, bob = annotators
    ds, judge = rated_dataset()
    name, workspace = "pull-round-trip", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client, sample=4, seed=7)
    dataset, records = records_by_row(client, name, workspace)
    drawn = sorted(random.Random(7).sample(range(6), 4))
    assert sorted(records) == drawn, "the sample's rows, each record with its row index"
    first, second, third = [r for r in drawn if r != 1][:3]

    submit(dataset, records[first], ann, generation_1_rating=4, generation_2_rating=2)
    submit(dataset, records[first], bob, generation_1_rating=5, generation_2_rating=2)
    submit(dataset, records[second], ann, generation_1_rating=1, generation_2_rating=3)
    submit(dataset, records[second], bob, generation_1_rating=2, generation_2_rating=5)
    submit(dataset, records[1], ann, generation_1_rating=3)  # its second generation is missing
    submit(dataset, records[third], bob, status="draft", generation_1_rating=1, generation_2_rating=1)

    pulled = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)
    expected = {
        first: ([4.5, 2.0], [[4, 5], [2, 2]], [2, 2]),
        second: ([1.5, 4.0], [[1, 2], [3, 5]], [2, 2]),
        1: ([3.0, None], [[3], None], [1, 0]),
    }
    for row in range(6):
        got = (pulled[row]["human_rating"], pulled[row]["human_ratings"], pulled[row]["human_annotators"])
        assert got == expected.get(row, (None, None, None)), row  # a draft is no review
    assert pulled["rating"] == ds["rating"] and pulled["input"] == INPUTS

    again = mapgen.pull_from_argilla(pulled, name=name, workspace=workspace, client=client)
    assert again.column_names == pulled.column_names
    assert again.to_list() == pulled.to_list() and again.features == pulled.features
    rows = mapgen.pull_from_argilla(ds.to_list(), judge, name=name, workspace=workspace, client=client)
    assert rows == pulled.to_list()

    result = mapgen.agreement(pulled, judge="rating", human="human_rating", resamples=0)
    # the judge said 4 and 2 everywhere (row 1: 4 only): 3 of the 5 answers people rated are within one
    assert (result.n, result.rows, result.within_one) == (5, 3, 3 / 5)
    assert result.annotators_n == 4, "the answers two annotators rated"


def test_pull_from_a_dataset_never_pushed(argilla_server, client):
    ds, _ = rated_dataset()
    with pytest.raises(ValueError, match=r"no Argilla dataset 'never-pushed' in workspace 'argilla' on http"):
        mapgen.pull_from_argilla(ds, name="never-pushed", workspace=argilla_server.workspace, client=client)


def test_pull_names_what_changed_since_the_push(argilla_server, client):
    ds, judge = rated_dataset()
    name, workspace = "pull-changed", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client)
    kwargs = {"name": name, "workspace": workspace, "client": client}

    edited = ds.map(lambda row, i: {"input": "Changed?" if i == 2 else row["input"]}, with_indices=True)
    with pytest.raises(ValueError, match="changed since it was pushed") as caught:
        mapgen.pull_from_argilla(edited, judge, **kwargs)
    assert "row 2 differs: 'input' is 'What is 2 + 2?' there and 'Changed?' here" in str(caught.value)

    with pytest.raises(ValueError, match=r"holds a record of row [345], and the data has 3 rows"):
        mapgen.pull_from_argilla(ds.select(range(3)), **kwargs)
    with pytest.raises(
        ValueError, match=r"record of row (0 there is row 5|5 there is row 0) here \(were rows filtered"
    ):
        mapgen.pull_from_argilla(ds.select([5, 1, 2, 3, 4, 0]), **kwargs)
    with pytest.raises(ValueError, match="not made from this data and task: its questions are"):
        mapgen.pull_from_argilla(ds, mapgen.UltraCMTask(), **kwargs)  # a critique, no rationale
    assert mapgen.pull_from_argilla(ds, **kwargs)["human_rating"] == [None] * 6, "nobody reviewed it"


def test_sample_must_be_a_number_of_rows():
    ds, _ = rated_dataset()
    samples: list[Any] = [0, -1, 2.5, True]
    for sample in samples:
        with pytest.raises(ValueError, match="sample must be a positive int"):
            mapgen.push_to_argilla(ds, name="x", api_url="http://127.0.0.1:1", sample=sample)


def test_a_review_per_instruction_is_pulled_in_the_shape_of_the_instructions(
    argilla_server, client, annotators
):
    """Self-Instruct: a list of instructions per generation, one record (and one rating) for each."""
    ann, bob = annotators
    ds, _ = make_dataset("self_instruct")  # 3 rows, 2 generations of 2 instructions each
    name, workspace = "pull-self-instruct", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = client.datasets(name=name, workspace=workspace)
    positions = {r.id: r.position for r in argilla_spec(ds).records}  # what the push declared
    records = {positions[r.id]: r for r in dataset.records(with_responses=True)}
    for (row, generation, entry), record in records.items():
        assert record.fields["instruction"] == ds[row]["instructions"][generation][entry]
        assert record.metadata["row_index"] == row
    records = {position[1:]: r for position, r in records.items() if position[0] == 2}
    assert sorted(records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    submit(dataset, records[0, 0], ann, rating=5)
    submit(dataset, records[0, 0], bob, rating=2)
    submit(dataset, records[1, 1], bob, rating=1)
    pulled = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)
    assert pulled["human_rating"] == [None, None, [[3.5, None], [None, 1.0]]]
    # each list one rating per person who reviewed the row, in user-id order: bob left (0, 0) to ann alone
    assert pulled["human_ratings"][2] == [[[5, 2], None], [None, [None, 1]]]
    assert pulled["human_annotators"][2] == [[2, 0], [0, 1]]


def test_a_failed_generation_of_instructions_is_none_in_every_column(argilla_server, client, annotators):
    """A Self-Instruct row whose second generation failed (``None``): its reviewed sibling is pulled, and
    the failed one is ``None`` where a bare value would not fit the list-of-lists column."""
    ann, _ = annotators
    ds, _ = make_dataset("self_instruct")
    rows = ds.to_list()
    rows[2]["instructions"][1] = None
    ds = datasets.Dataset.from_list(rows, features=ds.features)
    name, workspace = "pull-self-instruct-failed", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = client.datasets(name=name, workspace=workspace)
    positions = {r.id: r.position for r in argilla_spec(ds).records}
    records = {positions[r.id]: r for r in dataset.records(with_responses=True)}
    assert sorted(p for p in records if p[0] == 2) == [(2, 0, 0), (2, 0, 1)], (
        "nothing to review in the failed one"
    )
    submit(dataset, records[2, 0, 0], ann, rating=5)
    pulled = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)
    assert pulled["human_rating"][2] == [[5.0, None], None]
    assert pulled["human_ratings"][2] == [[[5], None], None]
    assert pulled["human_annotators"][2] == [[1, 0], None]
    assert pulled["human_rating"][:2] == [None, None]


def test_each_position_of_human_ratings_is_one_annotator_for_the_whole_row(
    argilla_server, client, annotators
):
    ann, bob = annotators
    ds, _ = rated_dataset()
    name, workspace = "pull-positions", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client)
    dataset, records = records_by_row(client, name, workspace)
    submit(dataset, records[0], ann, generation_1_rating=1)  # ann leaves generation 2 blank
    submit(dataset, records[0], bob, generation_1_rating=5, generation_2_rating=4)
    pulled = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)
    assert pulled[0]["human_ratings"] == [[1, 5], [None, 4]]  # not [4]: position 0 is ann's throughout
    assert pulled[0]["human_rating"] == [3.0, 4.0] and pulled[0]["human_annotators"] == [2, 2]
    result = mapgen.agreement(pulled, resamples=0)
    assert result.annotators_n == 1, "only generation 1 has two annotators' ratings"


def test_a_structured_answer_is_pulled_field_by_field(argilla_server, client, annotators):
    ann, bob = annotators
    task = mapgen.StructuredTask(Dish, template="Suggest a dish from {{ cuisine }} cuisine.")
    fn = mapgen.generate(CannedLLM(answer=DISH, name="chef"), task)
    ds = datasets.Dataset.from_dict({"cuisine": ["Thai", "Italian"]}).map(fn, batched=True)
    name, workspace = "pull-dishes", argilla_server.workspace
    mapgen.push_to_argilla(ds, name=name, workspace=workspace, client=client)
    dataset, records = records_by_row(client, name, workspace)
    given = {"name-correction": "Green curry", "diet-label": "vegan", "spicy-label": "true"}
    given |= {"calories-correction": "450"}
    submit(dataset, records[1], ann, **given, course_label="main", stars_rating=4)
    submit(dataset, records[1], bob, **given, course_label="starter", stars_rating=5)
    pulled = mapgen.pull_from_argilla(ds, name=name, workspace=workspace, client=client)
    assert pulled["human_stars"] == [None, [4.5]] and pulled["human_stars_responses"][1] == [[4, 5]]
    assert pulled["human_course"] == [None, [None]], "a tie is no majority"
    assert pulled["human_course_responses"][1] == [["main", "starter"]]
    assert pulled["human_diet"][1] == ["vegan"] and pulled["human_note"][1] == [None]
    assert pulled["human_annotators"] == [None, [2]]


def test_pull_from_a_server_that_is_down_names_it():
    from tests.servers.fixtures import free_port

    ds, _ = rated_dataset()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(
        mapgen.errors.ArgillaUnreachable, match=f"could not reach the Argilla server at {url}"
    ):
        mapgen.pull_from_argilla(ds, name="review", api_url=url, api_key="argilla-key-s3cret")
