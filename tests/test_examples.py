"""Every script in examples/ runs, on the embedded model, with few rows and short answers."""

import importlib.util
import random
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


def test_dry_run(fault_server):
    guess, sent, (input_tokens, output_tokens) = load("dry_run").main(
        base_url=fault_server.base_url, model="fault", api_key=fault_server.api_key, rows=40, pilot=4
    )
    assert (guess.pilot_requests, guess.requests, sent) == (4, 36, 36)
    assert abs(guess.input_tokens - input_tokens) <= 0.1 * input_tokens, (guess.input_tokens, input_tokens)
    assert abs(guess.output_tokens - output_tokens) <= 0.1 * output_tokens, (
        guess.output_tokens,
        output_tokens,
    )


@pytest.mark.llamacpp
def test_dry_run_on_the_embedded_model():
    guess, sent, (input_tokens, _) = load("dry_run").main(rows=3, max_new_tokens=8, pilot=1)
    assert (guess.input_method, guess.requests, sent) == ("tokenizer", 2, 2)
    assert guess.input_tokens == input_tokens  # counted with the model's own tokenizer: exact


def test_anthropic_generation(anthropic_server):
    record = {"answer": "Sunlight scatters off air.", "confidence": 4}
    anthropic_server.configure(
        api_key=anthropic_server.api_key,
        replies=[{"contains": "as a record", "tool_use": {"name": "Answer", "input": record}}],
    )
    answers, records = load("anthropic_generation").main(
        model="claude-test", base_url=anthropic_server.base_url, api_key=anthropic_server.api_key
    )
    assert answers["generations"][0] == ["echo: Why is the sky blue?"] * 2
    assert records["answer"] == [["Sunlight scatters off air."]] * 3 and records["confidence"] == [[4]] * 3
    bodies = anthropic_server.requests()
    assert len(bodies) == 9  # 3 rows x 2 generations, one request each, then 3 records
    assert all(b["system"][0]["cache_control"] == {"type": "ephemeral"} for b in bodies[:6])


def test_wire_formats():
    seen = load("wire_formats").main()
    (openai_body, openai_answer), (anthropic_body, anthropic_answer) = seen["openai"], seen["anthropic"]
    assert openai_body["messages"][0] == {"role": "system", "content": "Answer as JSON."}
    assert openai_body["response_format"]["json_schema"]["strict"] is True
    assert anthropic_body["system"] == "Answer as JSON." and anthropic_body["max_tokens"] == 32
    assert anthropic_body["tool_choice"] == {"type": "tool", "name": "Answer"}
    for answer in (openai_answer, anthropic_answer):
        assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ('{"city": "Paris"}', 21, 6)
    assert "unused" not in repr(seen)  # the keys are in neither body


def test_judge_agreement(fault_server, argilla_server):
    """A scripted writer and judge on the fault server, two scripted reviewers on the real argilla-server:
    the figures the example prints, worked out by hand."""
    import argilla as rg

    from tests.test_swap import by_content, first_wins

    example = load("judge_agreement")
    right = [f"The sum is {a + b}." for a, b in example.SUMS]
    wrong = [f"The sum is {a + b + 1}." for a, b in example.SUMS]
    # Rows 0 to 5 rated by content (right 5, wrong 2), row 6 by position (the first shown wins:
    # inconsistent), row 7 by content but backwards (the wrong answer 4, the right one 2, both ways).
    judged = [rule for row in range(6) for rule in by_content(right[row], wrong[row])]
    judged += first_wins(right[6], wrong[6]) + by_content(wrong[7], right[7])
    written = [  # the right answer first in even rows
        {"model": "writer", "contains": q, "reply": [r, w] if i % 2 == 0 else [w, r]}
        for i, (q, r, w) in enumerate(zip(example.QUESTIONS, right, wrong, strict=True))
    ]
    fault_server.configure(
        api_key=fault_server.api_key, replies=[*written, *({"model": "judge", **r} for r in judged)]
    )

    def llm(model):
        return mapgen.OpenAILLM(model, base_url=fault_server.base_url, api_key=fault_server.api_key)

    client = rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)
    ds, result, pairs = example.main(
        llm("writer"), llm("judge"), client=client, name="example-judge-agreement", sample=6, seed=0
    )
    drawn = sorted(random.Random(0).sample(range(8), 6))  # the rows push_to_argilla(sample=6, seed=0) sends
    assert [row is not None for row in ds["human_rating"]] == [i in drawn for i in range(8)]
    # People: the right answer 5 and 4 (consensus 4.5), the wrong one 1 and 2 (1.5).
    people = [sorted(ratings) for ratings in ds["human_ratings"][drawn[0]]]  # (in the users' id order)
    assert people == ([[4, 5], [1, 2]] if drawn[0] % 2 == 0 else [[1, 2], [4, 5]])
    assert ds["human_rating"][drawn[0]] == ([4.5, 1.5] if drawn[0] % 2 == 0 else [1.5, 4.5])
    assert ds["rating_consistency"] == [True] * 6 + [False, True]
    assert (result.n, result.rows, result.pairs) == (12, 6, 6)
    by_content_rows = sum(row < 6 for row in drawn)  # both answers exactly as people rate them (whole)
    assert result.exact == 2 * by_content_rows / 12
    assert result.pairwise_accuracy == (6 - (7 in drawn)) / 6  # row 7 backwards
    assert result.annotators_n == 12

    # Pairs: row 6 inconsistent, dropped; row 7's is kept (consistent, by a margin of 2) though wrong.
    assert pairs["prompt"] == [q for i, q in enumerate(example.QUESTIONS) if i != 6]
    assert pairs["chosen"] == [*right[:6], wrong[7]] and pairs["rejected"] == [*wrong[:6], right[7]]

    card = mapgen.dataset_card(ds).text
    assert "| n | 12 | answers rated by `rating` and `human_rating`, in 6 rows |" in card
    assert f"| exact | {result.exact:.3f} |" in card
    assert "Position consistency: 0.875 (7 of 8 rows kept the judge's ranking" in card
