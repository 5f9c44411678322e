"""Every script in examples/ runs, on the embedded model, with few rows and short answers."""

import importlib.util
from pathlib import Path

import pytest

import mapgen

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.llamacpp
def test_generator_only():
    ds = load("generator_only").main(max_new_tokens=12)
    assert [len(g) for g in ds["generations"]] == [2, 2]


@pytest.mark.llamacpp
def test_labeller_only():
    ds = load("labeller_only").main()
    assert [len(r) for r in ds["rating"]] == [2, 2]
    assert ds["rating"][1][1] is None  # the None generation
    assert all(r is not None for r in [*ds["rating"][0], ds["rating"][1][0]])


@pytest.mark.llamacpp
def test_generator_and_labeller():
    ds = load("generator_and_labeller").main(max_new_tokens=12)
    assert "weighted_rating" in ds.column_names
    assert sum(r is not None for row in ds["rating"] for r in row) >= 3


@pytest.mark.llamacpp
def test_preference_pipeline():
    ds = load("preference_pipeline").main(max_new_tokens=12)
    assert {"generations", "rating", "rationale", "labelling_error"} <= set(ds.column_names)
    assert [len(r) for r in ds["rating"]] == [2, 2]


@pytest.mark.llamacpp
def test_custom_task():
    ds = load("custom_task").main(max_new_tokens=24)
    assert len(ds[0]["rating"]) == 2
    assert all(r is not None for r in ds[0]["rating"])


@pytest.mark.llamacpp
def test_chat_generation():
    ds = load("chat_generation").main(max_new_tokens=12)
    assert [g[0] is not None for g in ds["generations"]] == [True, True, False]
    assert ds["generation_errors"][2][0].startswith("input: column 'messages'")
    assert ds["generation_prompt"][1][0][0] == {"role": "system", "content": "You answer in one sentence."}


@pytest.mark.llamacpp
def test_magpie():
    chats, talks = load("magpie").main(num_rows=2, max_new_tokens=12)
    roles = ["user", "assistant", "user", "assistant"]
    assert [[m["role"] for m in c[0]] for c in chats["conversation"]] == [roles, roles], chats[
        "generation_errors"
    ]
    assert len({c[0][0]["content"] for c in chats["conversation"]}) == 2
    assert [[m["role"] for m in c[0]] for c in talks["conversation"]] == [["system", *roles]] * 2


@pytest.mark.llamacpp
def test_sampling_parameters():
    short, varied = load("sampling_parameters").main(max_new_tokens=32)
    # stop=["."]: the answer ends before the first full stop, and says it stopped there
    assert all(g and "." not in g for [g] in short["generations"])
    assert all(m[0]["finish_reason"] == "stop" for m in short["generation_metadata"])
    assert [len(g) for g in varied["generations"]] == [2, 2]
    assert all(g[0] != g[1] for g in varied["generations"])  # seeds 0 and 1: two samples, not one twice


@pytest.mark.llamacpp
def test_structured_output():
    ds = load("structured_output").main(rows=3)
    # typed columns, every record valid (the grammar constrains; validation would re-ask otherwise)
    assert str(ds.features["stars"].feature) == "Value('int64')"
    assert str(ds.features["would_recommend"].feature) == "Value('bool')"
    assert [errors for errors in ds["generation_errors"]] == [[None]] * 3
    assert all(s in ("positive", "negative", "neutral") for [s] in ds["sentiment"])
    assert all(1 <= stars <= 5 for [stars] in ds["stars"])


@pytest.mark.llamacpp
def test_costs():
    first, again = load("costs").main(max_new_tokens=8)
    price = mapgen.Price(*load("costs").PRICE)
    metas = [meta for row in first["generation_metadata"] for meta in row]
    assert all(m["cost"] == price.cost(m["prompt_tokens"], m["completion_tokens"]) for m in metas)
    spent, reused = mapgen.usage(first).total, mapgen.usage(again).total
    assert (spent.requests, spent.reused, reused.requests, reused.reused) == (4, 0, 0, 4)
    assert spent.cost > 0 and reused.saved == pytest.approx(spent.cost) and reused.cost is None
