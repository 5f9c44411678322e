"""mapgen.estimate: the dry run's counts against what the real map then sends, on the fault test server
(usage counted as tests/servers/tokens.py says) and on the embedded model's own tokenizer."""

import random

import datasets
import pytest

import mapgen
from tests.servers.tokens import END_TOKENS, count_tokens, openai_prompt_tokens

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "cats",
    "sleep",
    "under",
    "warm",
    "summer",
    "light",
]


def prompts(count, seed=0):
    """Instructions of 3 to 60 words: lengths spread wide, so that a pilot that sampled badly would show."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 60))) + f" ({i})" for i in range(count)]


def api_llm(server, **options):
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **options)


def sent_usage(ds, column="generation_metadata"):
    """Input and output tokens the server reported for the answers this map requested (not reused)."""
    fresh = [m for row in ds[column] for m in row if m["prompt_tokens"] is not None and not m["from_store"]]
    return sum(m["prompt_tokens"] for m in fresh), sum(m["completion_tokens"] for m in fresh)


def within(estimated, actual, tolerance=0.10):
    return abs(estimated - actual) <= tolerance * actual


def test_estimate_of_1000_rows_is_within_10_percent_of_the_real_map(fault_server):
    rows = prompts(1000)
    rows[17] = rows[400] = "  "  # invalid inputs: nothing is sent for them
    rows[900] = rows[901]  # a repeat: sent once
    ds = datasets.Dataset.from_dict({"input": rows})
    llm = api_llm(fault_server, seed=0, max_new_tokens=200, price_per_million=(0.15, 0.60))
    fn = mapgen.generate(llm, num_generations=1)
    ds.select(range(100, 150)).map(fn, batched=True)  # 50 answers already in the store

    guess = mapgen.estimate(ds, fn, pilot=8)
    assert fault_server.stats()["total"] == 50 + 8  # the dry run sent its pilot only
    assert (guess.rows, guess.invalid_rows, guess.answers_asked) == (1000, 2, 998)
    assert (guess.stored, guess.repeated, guess.pilot_requests) == (58, 1, 8)
    assert (guess.input_method, guess.output_method) == ("pilot", "pilot")

    fault_server.configure(api_key=fault_server.api_key)  # counters from zero: the real map's only
    done = ds.map(fn, batched=True, batch_size=250)
    sent = fault_server.stats()["total"]
    input_tokens, output_tokens = sent_usage(done)
    assert guess.requests == sent == 998 - 58 - 1, (guess.requests, sent)
    assert within(guess.input_tokens, input_tokens), (
        f"dry run said {guess.input_tokens} input tokens, the map used {input_tokens}: more than 10% apart"
    )
    assert within(guess.output_tokens, output_tokens), (
        f"dry run said {guess.output_tokens} output tokens, the map used {output_tokens}: more than 10% apart"
    )
    cost = sum(
        m["cost"] for row in done["generation_metadata"] for m in row if m["cost"] and not m["from_store"]
    )
    assert cost > 0 and within(guess.cost, cost), (guess.cost, cost)


def test_without_a_pilot_nothing_is_sent_and_the_estimate_says_how_it_guessed(fault_server):
    ds = datasets.Dataset.from_dict({"input": prompts(20)})
    llm = api_llm(fault_server, seed=0, max_new_tokens=50, max_concurrency=4, rpm=60)
    guess = mapgen.estimate(ds, mapgen.generate(llm, num_generations=2), pilot=0)
    assert fault_server.stats()["total"] == 0
    assert (guess.answers, guess.requests) == (40, 40)  # a seed: one request per generation
    assert (guess.input_method, guess.output_method) == ("rule of thumb", "max_new_tokens")
    assert guess.output_tokens == 40 * 50
    assert (guess.seconds, guess.time_method) == (40.0, "rpm")  # 40 requests at 60 a minute
    text = str(guess)
    assert "at most 2,000 (max_new_tokens per answer, the upper bound)" in text
    assert "4 characters per token" in text and "~40.0 s (rpm)" in text


def test_generations_without_a_seed_share_one_request_and_its_input_tokens(fault_server):
    ds = datasets.Dataset.from_dict({"input": prompts(30, seed=1)})
    fn = mapgen.generate(api_llm(fault_server, max_new_tokens=200), num_generations=3)
    guess = mapgen.estimate(ds, fn, pilot=4)
    assert (guess.answers_asked, guess.pilot_requests) == (90, 4)
    assert (guess.answers, guess.requests) == (78, 26)  # n=3 per request; the pilot's 4 are stored
    fault_server.configure(api_key=fault_server.api_key)
    done = ds.map(fn, batched=True)
    assert fault_server.stats()["total"] == guess.requests
    bodies = fault_server.requests()
    assert all(body["n"] == 3 for body in bodies)
    # The server's usage, as tests/servers/tokens.py counts it: a request's input once for its n answers.
    input_tokens = sum(openai_prompt_tokens(body["messages"]) for body in bodies)
    fresh = [
        g
        for row, meta in zip(done["generations"], done["generation_metadata"], strict=True)
        for g, m in zip(row, meta, strict=True)
        if not m["from_store"]
    ]
    output_tokens = sum(count_tokens(text) + END_TOKENS for text in fresh)
    assert within(guess.input_tokens, input_tokens), (guess.input_tokens, input_tokens)
    assert within(guess.output_tokens, output_tokens), (guess.output_tokens, output_tokens)


def test_anthropic_generations_are_one_request_each_as_the_backend_sends_them(anthropic_server):
    """The Messages API has no ``n``: the estimate counts calls by the backend's own rule, one per answer."""
    ds = datasets.Dataset.from_dict({"input": prompts(30, seed=2)})
    llm = mapgen.AnthropicLLM(
        "claude-test",
        base_url=anthropic_server.base_url,
        api_key=anthropic_server.api_key,
        max_new_tokens=200,
    )
    fn = mapgen.generate(llm, num_generations=3)
    guess = mapgen.estimate(ds, fn, pilot=4)
    assert (guess.answers_asked, guess.pilot_requests) == (90, 4)
    assert (guess.answers, guess.requests) == (86, 86)  # no n: one request per generation
    anthropic_server.configure(api_key=anthropic_server.api_key)
    done = ds.map(fn, batched=True)
    assert anthropic_server.stats()["total"] == guess.requests
    input_tokens, output_tokens = sent_usage(done)
    assert within(guess.input_tokens, input_tokens), (guess.input_tokens, input_tokens)
    assert within(guess.output_tokens, output_tokens), (guess.output_tokens, output_tokens)


def test_label_estimate_counts_one_request_per_row_and_rows_without_texts_apart(fault_server):
    ds = datasets.Dataset.from_dict(
        {"input": ["What is 2 + 2?", "Name a fruit.", "Say hi."], "generations": [["4", "5"], [None], ["hi"]]}
    )
    fn = mapgen.label(api_llm(fault_server, seed=0), mapgen.UltraFeedbackTask.for_overall_quality())
    guess = mapgen.estimate(ds, fn, pilot=1)
    assert (guess.rows, guess.invalid_rows, guess.answers_asked) == (3, 1, 2)
    assert (guess.stored, guess.requests, guess.pilot_requests) == (1, 1, 1)
    fault_server.configure(api_key=fault_server.api_key)
    ds.map(fn, batched=True)
    assert fault_server.stats()["total"] == guess.requests


def test_without_the_store_every_request_is_sent_the_pilot_again_too(fault_server):
    ds = datasets.Dataset.from_dict({"input": ["Say hi.", "Say hi.", "Name a fruit."]})
    fn = mapgen.generate(api_llm(fault_server, seed=0), cache=False)
    guess = mapgen.estimate(ds, fn, pilot=1)
    assert (guess.repeated, guess.stored, guess.requests) == (0, 0, 3)
    assert any("cache=False" in note for note in guess.notes)


def test_a_missing_key_raises_before_the_pilot_and_a_dry_run_without_pilot_needs_none(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ds = datasets.Dataset.from_dict({"input": ["Say hi."]})
    fn = mapgen.generate(mapgen.OpenAILLM("gpt-4o-mini"))
    with pytest.raises(ValueError, match="API key"):
        mapgen.estimate(ds, fn)
    assert mapgen.estimate(ds, fn, pilot=0).requests == 1


def test_what_cannot_be_estimated_is_refused():
    ds = datasets.Dataset.from_dict({"id": [0]})
    llm = mapgen.LlamaCppLLM(max_new_tokens=8)
    with pytest.raises(TypeError, match="several rounds"):
        mapgen.estimate(ds, mapgen.generate(llm, mapgen.MagpieTask()))
    with pytest.raises(TypeError, match=r"fn\.generate"):
        mapgen.estimate(ds, mapgen.pipeline("preference", "text-quality", generator=llm, labeller=llm))
    with pytest.raises(mapgen.MissingColumnError, match="Columns present"):
        mapgen.estimate(ds, mapgen.generate(llm))
    with pytest.raises(ValueError, match="pilot"):
        mapgen.estimate(ds, mapgen.generate(llm), pilot=-1)


@pytest.mark.llamacpp
def test_the_embedded_models_tokenizer_counts_what_the_engine_reports():
    ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Explain what a hash table is, briefly."]})
    task = mapgen.TextGenerationTask(system_prompt="You answer in one sentence.")
    fn = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=4, seed=0), task)
    guess = mapgen.estimate(ds, fn, pilot=1)
    assert (guess.input_method, guess.output_method, guess.time_method) == (
        "tokenizer",
        "pilot",
        "pilot tokens/s",
    )
    assert guess.requests == 1 and guess.seconds is not None
    done = ds.map(fn, batched=True)
    [sent] = [m for [m] in done["generation_metadata"] if not m["from_store"]]  # the pilot sent the other
    assert guess.input_tokens == sent["prompt_tokens"]  # exact: the engine's own tokens
    assert guess.output_tokens == 4  # the pilot's answer ran to max_new_tokens


def test_cli_dry_run_prints_the_estimate_sends_only_the_pilot_and_writes_nothing(
    fault_server, monkeypatch, capsys, tmp_path
):
    from mapgen.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    command = ["generate", "--llm", "openai:fault", "--base-url", fault_server.base_url, "--seed", "0"]
    output = tmp_path / "out.jsonl"
    assert main([*command, "--dry-run", "--pilot", "2", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert fault_server.stats()["total"] == 2 and not output.exists()
    assert "requests       2 (pilot: 2 sent)" in printed  # the 4 example prompts, 2 of them piloted
    assert "from the pilot's usage" in printed and "dry run: nothing written" in printed
    # the advice names the flag a shell user sets, not the Python argument (issue 22)
    assert "no price known for fault: pass --price-per-million IN,OUT" in printed
    assert "price_per_million" not in printed
    assert main([*command, "--pilot", "2"]) == 2
    assert "--pilot sets the requests a dry run sends" in capsys.readouterr().err


def test_a_table_price_is_applied_per_request_not_to_the_whole_maps_tokens(fault_server, monkeypatch):
    from mapgen.core import prices

    monkeypatch.setitem(prices.PROVIDER_HOSTS, "127.0.0.1", "anthropic")  # billed as Anthropic's own host
    llm = mapgen.OpenAILLM("claude-sonnet-4-5", base_url=fault_server.base_url, api_key=fault_server.api_key)
    ds = datasets.Dataset.from_dict({"input": [f"{'word ' * 150}({i})" for i in range(2000)]})
    guess = mapgen.estimate(ds, mapgen.generate(llm, cache=False), pilot=0)
    assert guess.input_tokens > 200_000  # together past the long-context tier, each request far below it
    below_the_tier = (guess.input_tokens * 3.0 + guess.output_tokens * 15.0) / 1e6
    assert guess.cost == pytest.approx(below_the_tier, rel=1e-3)
