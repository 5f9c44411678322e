"""Costs: each answer's tokens and USD cost, priced from price_per_million or the genai-prices table, summed
by mapgen.usage(ds), shown by the Requests bar and the CLI summary. Usage comes from the fault server,
counted as tests/servers/tokens.py says, and is recomputed here from the requests it received."""

import re

import datasets
import genai_prices
import pytest

import mapgen
from mapgen.core import prices as costs
from mapgen.runtime.progress import request_progress
from mapgen.store.keys import store_identity
from tests.servers.tokens import END_TOKENS, count_tokens, openai_prompt_tokens
from tests.test_cli import run_main, summary


def prompts(n):
    return datasets.Dataset.from_dict({"input": [f"question number {i}" for i in range(n)]})


def llm_on(server, model="fault", **fields):
    return mapgen.OpenAILLM(model, base_url=server.base_url, api_key=server.api_key, **fields)


def served_usage(server):
    """(prompt tokens, completion tokens) of each request the server answered, from its request log."""
    return [
        (
            openai_prompt_tokens(body["messages"]),
            count_tokens(f"echo: {body['messages'][-1]['content']}") + END_TOKENS,
        )
        for body in server.requests()
    ]


def test_price_per_million_prices_each_answer_from_the_usage_the_server_reported(fault_server):
    ds = prompts(3).map(mapgen.generate(llm_on(fault_server, price_per_million=(2.0, 8.0))), batched=True)
    metas = [row[0] for row in ds["generation_metadata"]]
    served = served_usage(fault_server)
    assert sorted((m["prompt_tokens"], m["completion_tokens"]) for m in metas) == sorted(served)
    for meta in metas:
        expected = (meta["prompt_tokens"] * 2.0 + meta["completion_tokens"] * 8.0) / 1e6
        assert meta["cost"] == pytest.approx(expected) and meta["from_store"] is False
    total = mapgen.usage(ds)["fault"]
    assert (total.requests, total.reused, total.unpriced) == (3, 0, 0)
    assert total.prompt_tokens == sum(p for p, _ in served)
    assert total.cost == pytest.approx(sum(p * 2.0 + c * 8.0 for p, c in served) / 1e6)


def test_the_providers_own_host_is_priced_from_the_genai_prices_table(fault_server, monkeypatch):
    # The fault server stands in for api.openai.com: its host is billed as OpenAI's.
    monkeypatch.setitem(costs.PROVIDER_HOSTS, "127.0.0.1", "openai")
    ds = prompts(2).map(mapgen.generate(llm_on(fault_server, "gpt-4o-mini")), batched=True)
    for [meta] in ds["generation_metadata"]:
        usage = genai_prices.Usage(
            input_tokens=meta["prompt_tokens"], output_tokens=meta["completion_tokens"]
        )
        listed = genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price
        assert meta["cost"] == pytest.approx(float(listed))


def test_a_self_hosted_model_named_like_a_providers_has_tokens_and_no_cost(fault_server):
    llm = llm_on(fault_server, "gpt-4o-mini")  # a local server is not billed by OpenAI
    assert mapgen.price_for(llm) is None
    ds = prompts(2).map(mapgen.generate(llm), batched=True)
    assert all(m["cost"] is None and m["prompt_tokens"] > 0 for [m] in ds["generation_metadata"])
    total = mapgen.usage(ds).total
    assert (total.requests, total.cost, total.unpriced) == (2, None, 2)
    assert "unknown" in str(mapgen.usage(ds))


def test_cached_prompt_tokens_are_billed_at_the_cached_rate(fault_server):
    answer = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 2000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 1536},
        },
    }
    fault_server.configure(api_key=fault_server.api_key, replies=[{"body": answer}])
    llm = llm_on(fault_server, price_per_million=(1.0, 4.0, 0.25))
    [[meta]] = prompts(1).map(mapgen.generate(llm), batched=True)["generation_metadata"]
    assert meta["cached_tokens"] == 1536
    assert meta["cost"] == pytest.approx((464 * 1.0 + 1536 * 0.25 + 10 * 4.0) / 1e6)


def test_one_request_answered_n_times_shares_its_cost_among_its_answers(fault_server):
    llm = llm_on(fault_server, price_per_million=(1.0, 3.0), use_n=True)
    ds = prompts(1).map(mapgen.generate(llm, num_generations=3), batched=True)
    [body] = fault_server.requests()
    assert body["n"] == 3
    prompt = openai_prompt_tokens(body["messages"])  # billed once for the three answers
    output = sum(count_tokens(text) + END_TOKENS for text in ds[0]["generations"])
    metas = ds[0]["generation_metadata"]
    assert sum(m["cost"] for m in metas) == pytest.approx((prompt * 1.0 + output * 3.0) / 1e6)
    # Each answer holds an equal share of the request's usage: the shares add up to what was billed.
    assert sum(m["prompt_tokens"] for m in metas) == prompt
    assert sum(m["completion_tokens"] for m in metas) == output
    assert max(m["completion_tokens"] for m in metas) - min(m["completion_tokens"] for m in metas) <= 1
    total = mapgen.usage(ds)["fault"]
    assert (total.prompt_tokens, total.completion_tokens) == (prompt, output)


def test_a_repeated_prompt_is_paid_once_and_its_repeats_count_as_reused(fault_server):
    ds = datasets.Dataset.from_dict({"input": ["same question"] * 3})
    ds = ds.map(mapgen.generate(llm_on(fault_server, price_per_million=(1.0, 3.0))), batched=True)
    [(prompt, output)] = served_usage(fault_server)  # one request for the three rows
    total = mapgen.usage(ds)["fault"]
    assert (total.requests, total.reused, total.prompt_tokens) == (1, 2, prompt)
    assert total.cost == pytest.approx((prompt * 1.0 + output * 3.0) / 1e6)
    assert total.saved == pytest.approx(2 * total.cost)
    assert [row[0]["from_store"] for row in ds["generation_metadata"]] == [False, True, True]


def test_answers_reused_from_the_store_keep_their_cost_and_a_new_price_pays_nothing_again(fault_server):
    ds = prompts(4)  # in memory: datasets re-runs every map, the store answers
    first = ds.map(mapgen.generate(llm_on(fault_server, price_per_million=(1.0, 2.0))), batched=True)
    fault_server.configure(api_key=fault_server.api_key)  # zero its counters
    repriced = mapgen.generate(llm_on(fault_server, price_per_million=(5.0, 9.0)))
    again = ds.map(repriced, batched=True)
    assert fault_server.stats()["total"] == 0  # a price is not part of a store key
    spent, reused = mapgen.usage(first)["fault"], mapgen.usage(again)["fault"]
    assert (reused.requests, reused.reused, reused.cost) == (0, 4, None)
    assert reused.saved == pytest.approx(spent.cost)  # the cost they had when they were paid for
    assert again["generation_metadata"] == [
        [{**m, "from_store": True, "provenance": repriced.provenance} for m in row]
        for row in first["generation_metadata"]
    ]


def test_a_price_changes_the_maps_fingerprint_and_none_keeps_the_old_one(fault_server):
    plain, priced = llm_on(fault_server), llm_on(fault_server, price_per_million=(1.0, 2.0))
    assert "price_per_million" not in plain.fingerprint()  # configs without one keep their caches
    assert mapgen.fingerprint(mapgen.generate(plain)) != mapgen.fingerprint(mapgen.generate(priced))
    assert store_identity(priced.fingerprint()) == plain.fingerprint()


def listed(model, provider, context=None, **usage):
    """genai-prices' own figure for one answer's usage, as a float."""
    found = genai_prices.calc_price(
        genai_prices.Usage(**usage), model, provider_id=provider, price_context=context
    )
    return float(found.total_price)


def test_a_table_price_is_the_libraries_own_calculation_long_context_tier_included():
    # Above 200,000 input tokens Anthropic bills every token of the request at its long-context rate.
    price = costs.table_price("anthropic", "claude-sonnet-4-5")
    assert price.cost(300_000, 1_000) == pytest.approx(1.8225)
    assert price.cost(300_000, 1_000) == pytest.approx(
        listed("claude-sonnet-4-5", "anthropic", input_tokens=300_000, output_tokens=1_000)
    )
    assert price.cost(1_000, 100) == pytest.approx(1_000 * 3 / 1e6 + 100 * 15 / 1e6)  # below the tier


def test_cache_reads_and_writes_are_priced_by_the_table():
    price = costs.table_price("anthropic", "claude-sonnet-4-5")
    usage = {"input_tokens": 250_000, "cache_read_tokens": 200_000, "cache_write_tokens": 10_000}
    assert price.cost(250_000, 500, cached_tokens=200_000, cache_write_tokens=10_000) == pytest.approx(
        listed("claude-sonnet-4-5", "anthropic", output_tokens=500, **usage)
    )
    mini = costs.table_price("openai", "gpt-4o-mini")
    assert mini.cost(2_000, 10, cached_tokens=1_536) == pytest.approx(
        listed("gpt-4o-mini", "openai", input_tokens=2_000, cache_read_tokens=1_536, output_tokens=10)
    )


def test_a_batch_answer_gets_the_tables_batch_rate_else_the_usual_discount():
    batch = {"processing": "batch"}
    price = costs.table_price("anthropic", "claude-sonnet-4-5")
    assert price.cost(300_000, 1_000, batch=True) == pytest.approx(
        listed("claude-sonnet-4-5", "anthropic", batch, input_tokens=300_000, output_tokens=1_000)
    )
    # A model the table has no batch rate for: its standard price at the batch APIs' discount.
    old = costs.table_price("anthropic", "claude-3-haiku")
    standard = listed("claude-3-haiku", "anthropic", input_tokens=10_000, output_tokens=1_000)
    assert old.cost(10_000, 1_000, batch=True) == pytest.approx(standard * costs.BATCH_DISCOUNT)


def test_an_answer_from_the_providers_host_is_priced_through_the_table(fault_server, monkeypatch):
    monkeypatch.setitem(costs.PROVIDER_HOSTS, "127.0.0.1", "anthropic")
    llm = llm_on(fault_server, "claude-sonnet-4-5")
    [done] = costs.priced(llm, [mapgen.Completion("ok", prompt_tokens=300_000, completion_tokens=1_000)])
    assert done.cost == pytest.approx(1.8225)


def test_a_price_given_as_price_per_million_keeps_each_rate_in_its_place():
    server = {"base_url": "http://127.0.0.1:1/v1", "api_key": "k"}
    writes = mapgen.OpenAILLM("m", price_per_million=mapgen.Price(1.0, 2.0, cache_write=1.25), **server)
    assert mapgen.price_for(writes) == mapgen.Price(1.0, 2.0, cached_input=None, cache_write=1.25)
    # A table's price given as one's own is a flat price: its base rates.
    sonnet = costs.table_price("anthropic", "claude-sonnet-4-5")
    flat = mapgen.price_for(mapgen.OpenAILLM("m", price_per_million=sonnet, **server))
    assert flat == mapgen.Price(sonnet.input, sonnet.output, sonnet.cached_input, sonnet.cache_write)


def test_price_checks_and_discounts():
    price = mapgen.Price(2.0, 10.0, cached_input=0.5)
    assert price.cost(1000, 100) == pytest.approx((2000 + 1000) / 1e6)
    assert price.cost(1000, 100, batch=True) == pytest.approx(price.cost(1000, 100) / 2)
    assert price.cost(1000, 0, cached_tokens=5000) == pytest.approx(1000 * 0.5 / 1e6)  # at most every token
    assert mapgen.Price(1.0, 1.0).cost(1000, 0, cached_tokens=1000) == pytest.approx(
        1000 / 1e6
    )  # no discount
    with pytest.raises(ValueError, match="input must be >= 0"):
        mapgen.Price(-1.0, 1.0)
    with pytest.raises(TypeError, match=r"price_per_million must be \(input, output\)"):
        mapgen.OpenAILLM("m", base_url="http://127.0.0.1:1/v1", price_per_million=0.15)
    with pytest.raises(ValueError, match="no price_per_million"):
        mapgen.LLMPool([mapgen.LlamaCppLLM(seed=0)], price_per_million=(1.0, 1.0))
    assert mapgen.price_for(mapgen.OpenAILLM("no-such-model-xyz", api_key="sk-x")) is None


def test_the_requests_bar_shows_tokens_and_cost_so_far(fault_server, capsys):
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.enable_progress_bars()
    try:
        prompts(3).map(
            mapgen.generate(llm_on(fault_server, price_per_million=(1000.0, 1000.0))), batched=True
        )
        request_progress.close()
    finally:
        if not was_enabled:
            datasets.disable_progress_bars()
    tokens = sum(p + c for p, c in served_usage(fault_server))
    bar = capsys.readouterr().err
    shown = re.search(rf"Requests: 100%.*3/3.*tokens={tokens}, cost=\$([0-9.]+)", bar)
    assert shown and float(shown.group(1)) == pytest.approx(tokens / 1000), bar


def test_the_cli_summary_shows_tokens_and_cost(fault_server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fault_server.api_key)
    args = ["generate", "--llm", "openai:m", "--base-url", fault_server.base_url, "--limit", "2"]
    status, out, _ = run_main(capsys, *args, "--price-per-million", "1000,2000")
    assert status == 0
    served = served_usage(fault_server)
    table = summary(out)
    assert table["tokens"] == f"{sum(p for p, _ in served)} prompt + {sum(c for _, c in served)} completion"
    assert table["cost"].startswith("$")
    assert float(table["cost"][1:]) == pytest.approx(sum(p * 1000 + c * 2000 for p, c in served) / 1e6)
    status, out, _ = run_main(capsys, *args, "--temperature", "0.5")  # no price: said so, with the way out
    assert summary(out)["cost"] == "unknown: no price for this model (pass --price-per-million IN,OUT)"
    status, _, err = run_main(capsys, *args, "--price-per-million", "0.15")
    assert status == 2 and "expected IN,OUT" in err


# Answers without usage: counted because they came, priced where they can be


def reply(text, **usage):
    """A chat completion answering ``text``, with ``usage`` (``usage=None``: null) or without it."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return {"choices": [choice], **usage}


NO_USAGE = [
    {"contains": "null", "body": reply("a", usage=None)},
    {"contains": "absent", "body": reply("b")},
    {"contains": "present", "body": reply("c", usage={"prompt_tokens": 100, "completion_tokens": 10})},
]
NO_USAGE_QUESTIONS = ["usage null?", "usage absent?", "usage present?"]


def test_answers_without_usage_are_counted_as_answers_with_an_unknown_cost():
    came = {"finish_reason": "stop", "prompt_tokens": None, "completion_tokens": None, "from_store": False}
    came |= {"cost": None, "cached_tokens": None}
    priced = {**came, "prompt_tokens": 100, "completion_tokens": 10, "cost": 0.5}
    never_sent = {**came, "finish_reason": None}  # an input error, a timeout: nothing came, nothing billed
    metas = [[came], [came], [priced], [never_sent]]
    ds = datasets.Dataset.from_dict({"generation_model": [["m"]] * 4, "generation_metadata": metas})
    total = mapgen.usage(ds)["m"]
    assert (total.requests, total.unpriced, total.cost) == (3, 2, 0.5)
    assert "$0.5000 (+2 unpriced)" in str(mapgen.usage(ds))  # a lower bound, and said so


def test_a_servers_answers_without_usage_count_in_usage_the_card_and_the_run(fault_server):
    from mapgen.report.card import dataset_card

    fault_server.configure(api_key=fault_server.api_key, replies=NO_USAGE)
    llm = llm_on(fault_server, price_per_million=(1000.0, 1000.0))
    ds = datasets.Dataset.from_dict({"input": NO_USAGE_QUESTIONS}).map(mapgen.generate(llm), batched=True)
    assert ds["generations"] == [["a"], ["b"], ["c"]]
    total = mapgen.usage(ds)["fault"]
    assert (total.requests, total.unpriced, total.cost) == (3, 2, pytest.approx(0.11))
    assert "(+2 unpriced)" in str(mapgen.usage(ds))
    card = str(dataset_card(ds))
    assert "| 3 | 0 | 100 | 10 | $0.1100 (+2 unpriced) |" in card  # the step's totals
    assert dict(mapgen.summary(ds).lines())["cost"] == "$0.1100 (+2 unpriced)"


def test_the_answers_of_one_n_request_are_priced_as_the_request_on_a_tiered_table():
    # gpt-5.4's input price rises above 272,000 tokens: two answers' halves of 300,000 are each below it
    from types import SimpleNamespace

    from genai_prices import Usage, calc_price

    llm = SimpleNamespace(billed_by="openai", model="gpt-5.4", price_per_million=None)
    halves = [mapgen.Completion("a", prompt_tokens=150_000, completion_tokens=100) for _ in range(2)]
    answers = costs.priced(llm, halves)
    whole = calc_price(Usage(input_tokens=300_000, output_tokens=200), "gpt-5.4", provider_id="openai")
    assert answers[0].cost == answers[1].cost
    assert sum(a.cost for a in answers) == pytest.approx(float(whole.total_price))
