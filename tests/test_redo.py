"""Re-asking only what fell short: generate(..., redo=(...)) over a dataset that holds earlier answers, on
the OpenAI test server (tests/servers/fault_server.py), which cuts a reply at max_tokens as a server does."""

import re

import datasets
import pytest

import mapgen
from mapgen.cli import main
from mapgen.mapping.provenance import describe

LONG = " ".join(f"word{i}" for i in range(20))  # 20 words: cut at max_new_tokens=8, whole at 64
PROMPTS = [f"long {i}" if i in (1, 4, 7) else f"short {i}" for i in range(10)]
PRICE = (1.0, 2.0)


def llm_on(server, max_new_tokens: int) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM(
        "m",
        base_url=server.base_url,
        api_key=server.api_key,
        max_new_tokens=max_new_tokens,
        price_per_million=PRICE,
    )


def serve(server, **settings) -> None:
    server.configure(
        api_key=server.api_key,
        cut_at_max_tokens=True,
        replies=[{"contains": "long", "reply": LONG}],
        **settings,
    )


@pytest.fixture
def first_pass(fault_server):
    """10 answers at max_new_tokens=8: the 3 long ones cut ("length"), the 7 echoes whole."""
    serve(fault_server)
    ds = datasets.Dataset.from_dict({"input": PROMPTS}).map(
        mapgen.generate(llm_on(fault_server, 8)), batched=True
    )
    reasons = [meta[0]["finish_reason"] for meta in ds["generation_metadata"]]
    assert [i for i, reason in enumerate(reasons) if reason == "length"] == [1, 4, 7]
    assert fault_server.stats()["total"] == 10
    return ds


def test_redo_length_sends_only_the_cut_answers_and_keeps_the_others_as_they_were(fault_server, first_pass):
    fn = mapgen.generate(llm_on(fault_server, 64), redo=("length",))
    redone = first_pass.map(fn, batched=True, batch_size=4)
    assert fault_server.stats()["total"] == 10 + 3
    assert redone["generation_redone"][:] == [[i in (1, 4, 7)] for i in range(10)]
    for i in range(10):
        before, after = first_pass[i], redone[i]
        if i in (1, 4, 7):
            assert after["generations"] == [LONG]  # whole this time
            assert after["generation_metadata"][0]["finish_reason"] == "stop"
            assert after["generation_metadata"][0]["provenance"] == fn.provenance
        else:  # every column of the kept answer as it was
            assert {k: v for k, v in after.items() if k != "generation_redone"} == before
    # Sent with the new limit: the redone requests asked 64 tokens.
    assert [body["max_tokens"] for body in fault_server.requests()[10:]] == [64, 64, 64]

    # The same redo again, in memory (no datasets cache): the store answers; nothing is sent.
    again = datasets.Dataset.from_dict(first_pass.to_dict()).map(fn, batched=True)
    assert fault_server.stats()["total"] == 10 + 3
    assert again["generations"] == redone["generations"]

    # The card lists both steps: the first pass with its 7 answers kept, the redo with the 3 it asked again.
    card = mapgen.dataset_card(redone).text
    assert "- asked again: 3 answer(s) of an earlier generate map that were `length`" in card
    assert f"map function `{fn.provenance}`" in card


def test_redone_answers_carry_what_the_cut_ones_cost(fault_server, first_pass):
    before = mapgen.counters.snapshot()
    redone = first_pass.map(mapgen.generate(llm_on(fault_server, 64), redo="length"), batched=True)
    spent = mapgen.counters.snapshot()
    sent_tokens = (spent["prompt_tokens"] - before["prompt_tokens"]) + (
        spent["completion_tokens"] - before["completion_tokens"]
    )
    assert sent_tokens > 0
    # The dataset's totals: the first pass's 10 answers and the 3 asked again, each paid once.
    assert mapgen.summary(redone).tokens == mapgen.summary(first_pass).tokens + sent_tokens
    assert mapgen.summary(redone).truncated == 0


def test_redo_takes_failure_kinds_and_leaves_other_failures(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"contains": "bad", "status": 400, "message": "bad request"},
            {"contains": "busy", "status": 503, "message": "overloaded"},
        ],
        retry_after="0",
    )
    prompts = ["a", "bad 1", "b", "busy 1", "bad 2"]
    llm = mapgen.OpenAILLM("m", base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0)
    ds = datasets.Dataset.from_dict({"input": prompts}).map(mapgen.generate(llm), batched=True)
    kinds = [mapgen.errors.error_kind(e[0]) for e in ds["generation_errors"]]
    assert kinds == [None, "http_400", None, "http_503", "http_400"]
    assert fault_server.stats()["total"] == 5

    fault_server.configure(api_key=fault_server.api_key)  # answers everything now; its counters start again
    redone = ds.map(mapgen.generate(llm, redo=["http_400"]), batched=True)
    assert fault_server.stats()["total"] == 2  # the two 400s alone
    assert redone["generations"][:] == [["echo: a"], ["echo: bad 1"], ["echo: b"], [None], ["echo: bad 2"]]
    assert redone["generation_errors"][3] == ds["generation_errors"][3]  # a 503 is not a 400: kept
    assert redone["generation_redone"][:] == [[False], [True], [False], [False], [True]]


def test_redo_asks_only_the_generations_that_fell_short_of_a_row(fault_server):
    # n=2 per row: the server's reply list gives choice 0 a long text and choice 1 a short one.
    fault_server.configure(
        api_key=fault_server.api_key, cut_at_max_tokens=True, replies=[{"reply": [LONG, "short"]}]
    )
    ds = datasets.Dataset.from_dict({"input": ["x", "y"]}).map(
        mapgen.generate(llm_on(fault_server, 8), num_generations=2), batched=True
    )
    assert [[m["finish_reason"] for m in metas] for metas in ds["generation_metadata"]] == [
        ["length", "stop"]
    ] * 2
    fault_server.configure(api_key=fault_server.api_key, cut_at_max_tokens=True, replies=[{"reply": LONG}])
    redone = ds.map(mapgen.generate(llm_on(fault_server, 64), num_generations=2, redo="length"), batched=True)
    bodies = fault_server.requests()
    assert len(bodies) == 2 and all((body.get("n") or 1) == 1 for body in bodies)  # one answer a row
    assert redone["generations"][:] == [[LONG, "short"]] * 2
    assert redone["generation_redone"][:] == [[True, False]] * 2


def test_redo_refuses_what_cannot_work_before_sending(fault_server):
    serve(fault_server)
    llm = llm_on(fault_server, 64)
    with pytest.raises(ValueError, match="redo takes the kinds"):
        mapgen.generate(llm, redo=("lenght",))
    plain = datasets.Dataset.from_dict({"input": ["a", "b"]})
    with pytest.raises(mapgen.MissingColumnError, match="no column"):
        plain.map(mapgen.generate(llm, redo="length"), batched=True)
    two = plain.map(mapgen.generate(llm, num_generations=2), batched=True)
    sent = fault_server.stats()["total"]
    with pytest.raises(ValueError, match="num_generations=2"):
        two.map(mapgen.generate(llm, redo="length"), batched=True)
    assert fault_server.stats()["total"] == sent


def test_redo_is_recorded_and_changes_the_fingerprint_but_not_with_its_order(fault_server):
    llm = llm_on(fault_server, 64)
    both = mapgen.generate(llm, redo=("length", "invalid_output"))
    assert mapgen.fingerprint(both) == mapgen.fingerprint(
        mapgen.generate(llm, redo=["invalid_output", "length"])
    )
    assert mapgen.fingerprint(both) != mapgen.fingerprint(mapgen.generate(llm, redo="length"))
    assert mapgen.fingerprint(mapgen.generate(llm)) != mapgen.fingerprint(mapgen.generate(llm, redo="length"))
    assert describe(both)["options"]["redo"] == ["invalid_output", "length"]


def test_an_estimate_of_a_redo_counts_only_what_it_would_send(fault_server, first_pass):
    guess = mapgen.estimate(first_pass, mapgen.generate(llm_on(fault_server, 64), redo="length"), pilot=0)
    assert (guess.rows, guess.requests) == (10, 3)


def test_the_cli_redoes_the_cut_answers_of_its_own_output(fault_server, tmp_path, monkeypatch, capsys):
    serve(fault_server)
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(f'{{"input": "{p}"}}\n' for p in PROMPTS))
    common = ["--llm", "openai:m", "--base-url", fault_server.base_url, "--temperature", "0"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert (
        main(["generate", "--dataset", str(source), *common, "--max-new-tokens", "8", "--output", str(first)])
        == 0
    )
    assert fault_server.stats()["total"] == 10
    assert "--redo length and a larger --max-new-tokens" in capsys.readouterr().out  # how to re-ask them
    argv = ["generate", "--dataset", str(first), *common, "--max-new-tokens", "64", "--redo", "length"]
    assert main([*argv, "--output", str(second)]) == 0
    assert fault_server.stats()["total"] == 13
    assert re.search(
        r"asked again +3 answer\(s\) of kind length; 7 kept as they were", capsys.readouterr().out
    )
    assert main(["generate", *common, "--redo", "length"]) == 2  # no earlier run to redo: said, nothing sent
    assert "--redo re-asks answers of an earlier run: pass --dataset" in capsys.readouterr().err
    assert fault_server.stats()["total"] == 13
    out = datasets.load_from_disk(str(second))
    assert sum(flag for flags in out["generation_redone"] for flag in flags) == 3


def test_redo_refuses_a_dataset_with_columns_computed_from_its_answers(fault_server, first_pass):
    # verify's verdicts (and a label step's ratings) describe the answers: after a redo they would not.
    verified = first_pass.add_column("verified", [[False]] * 10).add_column(
        "verification_errors", [[None]] * 10
    )
    with pytest.raises(ValueError, match=r"\['verified', 'verification_errors'\].*remove_columns"):
        verified.map(mapgen.generate(llm_on(fault_server, 64), redo="length"), batched=True)
    labelled = first_pass.add_column("rating", [[3.0]] * 10).add_column("labelling_metadata", [None] * 10)
    with pytest.raises(
        ValueError, match=r"\['labelling_metadata', 'rating'\]|\['rating', 'labelling_metadata'\]"
    ):
        labelled.map(mapgen.generate(llm_on(fault_server, 64), redo="length"), batched=True)
    assert fault_server.stats()["total"] == 10  # the first pass's alone


def test_a_redo_with_the_first_passs_config_sends_nothing_and_claims_nothing(fault_server, first_pass):
    # The same max_new_tokens: the store holds the cut answers under the same keys.
    with pytest.warns(mapgen.MapgenWarning, match="unchanged from the response store"):
        same = first_pass.map(mapgen.generate(llm_on(fault_server, 8), redo="length"), batched=True)
    assert fault_server.stats()["total"] == 10
    assert same["generation_redone"][:] == [[False]] * 10
    assert same["generation_metadata"][:] == first_pass["generation_metadata"][:]


def test_a_plain_generate_after_a_redo_clears_its_flags_and_the_card_lists_the_redo_second(
    fault_server, first_pass
):
    fn = mapgen.generate(llm_on(fault_server, 64), redo="length")
    redone = first_pass.map(fn, batched=True)
    # Row 0's answer redone, row 1's kept: the rows show the redo's answers first, the card the first pass.
    text = mapgen.dataset_card(redone.select([1, 0])).text
    steps = [line for line in text.splitlines() if line.startswith("### ")]
    assert len(steps) == 2 and fn.provenance in steps[1]  # the first pass, then the redo of it
    fresh = redone.map(mapgen.generate(llm_on(fault_server, 32)), batched=True)
    assert fresh["generation_redone"][:] == [[False]] * 10


def test_redo_says_what_is_wrong_with_a_flattened_or_empty_row(fault_server, first_pass):
    holes = datasets.Dataset.from_dict(
        {**first_pass[:2], "generations": [None, first_pass[1]["generations"]]}, features=first_pass.features
    )
    with pytest.raises(ValueError, match=r"row 0 of the batch holds None in 'generations', not a list"):
        holes.map(mapgen.generate(llm_on(fault_server, 64), redo="length"), batched=True)
