"""mapgen.Jury: each member rates, the row gets every member's ratings, their aggregate and agreement.

The judges are real :class:`mapgen.OpenAILLM` configs with different model names on the fault server,
whose rules answer each model with its own scripted ratings (a rule's ``"model"``).
"""

import datasets
import pytest

import mapgen
from mapgen.mapping.jury import aggregate, aggregated, agreement, jury_row, kendall_w, ranks
from tests.test_label import blocks, texts

MODELS = ["judge-a", "judge-b", "judge-c"]
ROWS = {"input": ["q1", "q2"], "generations": [["x", "y", "z"], ["p", "q"]]}
# Row 1: a and c order x, y, z oppositely, b mostly as a; row 2: all three rate q above p.
RATINGS = {
    "judge-a": {texts("x", "y", "z"): [5, 3, 1], texts("p", "q"): [2, 4]},
    "judge-b": {texts("x", "y", "z"): [4, 2, 2], texts("p", "q"): [1, 5]},
    "judge-c": {texts("x", "y", "z"): [1, 3, 5], texts("p", "q"): [2, 5]},
}


def scripted(server, *extra, **kwargs):
    """The three judges on the fault server, each rating by ``RATINGS`` (after the ``extra`` rules)."""
    rules = [
        {"model": model, "contains": shown, "reply": blocks(ratings)}
        for model, rows in RATINGS.items()
        for shown, ratings in rows.items()
    ]
    server.configure(api_key=server.api_key, replies=[*extra, *rules])
    return [mapgen.OpenAILLM(m, base_url=server.base_url, api_key=server.api_key, **kwargs) for m in MODELS]


def run(fn, data=ROWS, **kwargs):
    return datasets.Dataset.from_dict(data).map(fn, batched=True, batch_size=10, **kwargs)


def test_a_jury_writes_each_judges_ratings_their_mean_and_their_agreement(fault_server):
    fn = mapgen.label(mapgen.Jury(scripted(fault_server)), mapgen.UltraFeedbackTask())
    ds = run(fn)
    first, second = ds[0], ds[1]
    assert first["labelling_model"] == MODELS  # aligned with the per-judge columns
    assert first["ratings_by_judge"] == [[5.0, 3.0, 1.0], [4.0, 2.0, 2.0], [1.0, 3.0, 5.0]]
    assert first["rating"] == pytest.approx([10 / 3, 8 / 3, 8 / 3])
    assert first["rationale_by_judge"] == [["r1", "r2", "r3"]] * 3
    # Kendall's W by hand. Ranks: a (3, 2, 1), b (3, 1.5, 1.5), c (1, 2, 3); rank sums 7, 5.5, 5.5 about
    # their mean 3 * 4 / 2 = 6: S = 1 + 0.25 + 0.25 = 1.5. b's tie of two: T = 2^3 - 2 = 6.
    # W = 12 S / (m^2 (n^3 - n) - m T) = 18 / (9 * 24 - 3 * 6) = 18 / 198 = 1 / 11.
    assert first["jury_agreement"] == pytest.approx(1 / 11)
    assert second["ratings_by_judge"] == [[2.0, 4.0], [1.0, 5.0], [2.0, 5.0]]
    assert second["rating"] == pytest.approx([5 / 3, 14 / 3])
    assert second["jury_agreement"] == 1.0  # every judge puts q above p
    assert ds["labelling_error"] == [None, None]
    assert first["labelling_error_by_judge"] == [None, None, None]
    assert [len(first[c]) for c in ("raw_labelling_response", "labelling_prompt", "labelling_metadata")] == [
        3
    ] * 3
    assert first["raw_labelling_response"][1] == blocks([4, 2, 2])
    # Each member's answer refers to the jury's map function, whose record names the members.
    assert {m["provenance"] for m in first["labelling_metadata"]} == {mapgen.fingerprint(fn)}
    assert sorted(body["model"] for body in fault_server.requests()) == sorted(MODELS * 2)
    assert ds.features["rating"] == datasets.List(datasets.Value("float64"))
    assert ds.features["ratings_by_judge"] == datasets.List(datasets.List(datasets.Value("float64")))


def test_a_failed_member_leaves_the_others_aggregate_and_all_failing_is_the_rows_error(fault_server):
    broken = {"model": "judge-c", "status": 500}
    jury = mapgen.Jury(scripted(fault_server, broken, max_retries=0))
    row = run(mapgen.label(jury, mapgen.UltraFeedbackTask()))[0]
    assert row["ratings_by_judge"][2] == [None, None, None]
    assert row["rating"] == pytest.approx([4.5, 2.5, 1.5])  # a and b only
    assert row["labelling_error"] is None
    assert row["labelling_error_by_judge"][:2] == [None, None]
    assert row["labelling_error_by_judge"][2].startswith("http_500: ")
    # W of a and b: rank sums 6, 3.5, 2.5 about 4: S = 4 + 0.25 + 2.25 = 6.5; T = 6 (b's tie):
    # W = 12 * 6.5 / (4 * 24 - 2 * 6) = 78 / 84.
    assert row["jury_agreement"] == pytest.approx(78 / 84)

    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[{"model": "judge-b", "reply": "I like them all."}, {"status": 500}],
    )
    llms = [
        mapgen.OpenAILLM(m, base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0)
        for m in MODELS
    ]
    ds = run(mapgen.label(mapgen.Jury(llms), mapgen.UltraFeedbackTask(), cache=False))
    row = ds[0]
    assert row["rating"] == [None, None, None]
    assert row["jury_agreement"] is None
    parts = row["labelling_error"].split("; ")
    assert parts[0].startswith("http_500: judge 'judge-a': HTTP 500")
    assert parts[1].startswith("parse: judge 'judge-b': ")
    assert parts[2].startswith("http_500: judge 'judge-c': HTTP 500")
    assert mapgen.error_kind(row["labelling_error"]) == "http_500"


def test_a_text_one_member_missed_has_no_aggregate_and_the_row_says_why(fault_server):
    """Both judges rate q above p; the strict one gave no rating for p. Its mean over the lenient judge
    alone (4.0, above q's 3.5) would reverse the order both share: p gets none, and the row the error."""
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"model": "judge-a", "contains": texts("p", "q"), "reply": "Text 2\nRating: 2\nRationale: r2"},
            {"model": "judge-b", "contains": texts("p", "q"), "reply": blocks([4, 5])},
        ],
    )
    llms = [
        mapgen.OpenAILLM(m, base_url=fault_server.base_url, api_key=fault_server.api_key, max_retries=0)
        for m in MODELS[:2]
    ]
    fn = mapgen.label(mapgen.Jury(llms), mapgen.UltraFeedbackTask(), max_reasks=0, cache=False)
    row = run(fn, {"input": ["q2"], "generations": [["p", "q"]]})[0]
    assert row["ratings_by_judge"] == [[None, 2.0], [4.0, 5.0]]
    assert row["rating"] == [None, 3.5]
    assert row["labelling_error_by_judge"][1] is None
    strict = row["labelling_error_by_judge"][0]
    assert strict.startswith("parse: ")
    assert row["labelling_error"] == "parse: judge 'judge-a': " + strict.removeprefix("parse: ")
    assert row["jury_agreement"] is None  # one text both rated: no order to compare


def test_a_rerun_is_served_from_the_store_and_members_share_their_answers(fault_server):
    task = mapgen.UltraFeedbackTask()
    first = run(mapgen.label(mapgen.Jury(scripted(fault_server)), task))
    sent = len(fault_server.requests())
    again = run(mapgen.label(mapgen.Jury(scripted(fault_server)), task))  # a new function, same config
    assert len(fault_server.requests()) == 0  # configure() cleared them: nothing new was sent
    assert again["rating"] == first["rating"] and again["jury_agreement"] == first["jury_agreement"]
    assert all(m["from_store"] for row in again["labelling_metadata"] for m in row)
    assert sent == 6
    # A member's requests are keyed by its own config: a plain label() with it reuses them.
    alone = run(mapgen.label(scripted(fault_server)[1], task))
    assert alone["rating"] == [[4.0, 2.0, 2.0], [1.0, 5.0]]
    assert fault_server.requests() == []


def test_a_jury_runs_under_num_proc(fault_server):
    data = {"input": ROWS["input"] * 2, "generations": ROWS["generations"] * 2}
    ds = run(mapgen.label(mapgen.Jury(scripted(fault_server)), mapgen.UltraFeedbackTask()), data, num_proc=2)
    assert ds["jury_agreement"] == pytest.approx([1 / 11, 1.0] * 2)
    assert ds["ratings_by_judge"][2] == [[5.0, 3.0, 1.0], [4.0, 2.0, 2.0], [1.0, 3.0, 5.0]]
    assert len(fault_server.requests()) == 6  # the repeated rows' requests are sent once


def test_flatten_keeps_the_aggregate_per_generation_and_usage_counts_each_member(fault_server):
    data = {**ROWS, "generation_model": [["judge-a", "m", "judge-c"], ["m", "judge-b"]]}
    ds = run(mapgen.label(mapgen.Jury(scripted(fault_server)), mapgen.UltraFeedbackTask()), data)
    flat = mapgen.flatten(ds, columns=["generations", "generation_model", "rating"])
    assert flat.num_rows == 5 and flat[0]["rating"] == pytest.approx(10 / 3)
    flat = mapgen.flatten(ds.remove_columns("generation_model"))  # from the jury's provenance record
    assert flat["rating"] == pytest.approx([10 / 3, 8 / 3, 8 / 3, 5 / 3, 14 / 3])
    assert flat[1]["ratings_by_judge"] == ds[0]["ratings_by_judge"]  # per member: repeated on each
    usage = mapgen.usage(ds)
    assert {model: totals.requests for model, totals in usage.models.items()} == dict.fromkeys(MODELS, 2)
    card = str(mapgen.dataset_card(ds))
    assert "mapgen.llms.jury.Jury" in card and all(model in card for model in MODELS)


def test_a_jury_is_a_config_of_its_members():
    a, b = mapgen.OpenAILLM("a"), mapgen.OpenAILLM("b", max_concurrency=4)
    assert mapgen.Jury([a, b]).fingerprint() == {
        "type": "mapgen.llms.jury.Jury",
        "members": [a.fingerprint(), mapgen.OpenAILLM("b").fingerprint()],  # speed knobs left out
    }
    same = mapgen.fingerprint(
        mapgen.label(mapgen.Jury([a, mapgen.OpenAILLM("b")]), mapgen.UltraFeedbackTask())
    )
    assert mapgen.fingerprint(mapgen.label(mapgen.Jury([a, b]), mapgen.UltraFeedbackTask())) == same
    swapped = mapgen.label(mapgen.Jury([b, a]), mapgen.UltraFeedbackTask())  # the columns' order changes
    assert mapgen.fingerprint(swapped) != same
    assert mapgen.Jury([a, b]).model_name == "jury(a, b)"
    with pytest.raises(TypeError, match="did you mean 'members'"):
        mapgen.Jury(member=[a, b])
    with pytest.raises(ValueError, match="at least two members"):
        mapgen.Jury([a])
    with pytest.raises(ValueError, match="must differ"):
        mapgen.Jury([a, mapgen.OpenAILLM("a", timeout=5)])
    with pytest.raises(ValueError, match="set them on its members"):
        mapgen.Jury([a, b], temperature=0.0)
    with pytest.raises(TypeError, match="not pools or juries"):
        mapgen.Jury([a, mapgen.LLMPool([a, b])])
    with pytest.raises(ValueError, match="weighted_ratings=True needs log-probabilities"):
        no_logprobs = mapgen.AnthropicLLM("claude-sonnet-4-5")
        mapgen.label(mapgen.Jury([a, no_logprobs]), mapgen.UltraFeedbackTask(), weighted_ratings=True)


def test_a_jury_cannot_generate_and_is_estimated_by_member(fault_server):
    jury = mapgen.Jury(scripted(fault_server))
    with pytest.raises(TypeError, match=r"pass it to mapgen.label\(jury, task\)"):
        mapgen.generate(jury)  # refused where it is built, before any dataset is read
    fn = mapgen.label(jury, mapgen.UltraFeedbackTask())
    with pytest.raises(TypeError, match="estimate a jury's members"):
        mapgen.estimate(datasets.Dataset.from_dict(ROWS), fn)
    guesses = [mapgen.estimate(datasets.Dataset.from_dict(ROWS), judge, pilot=0) for judge in fn.judges]
    assert [guess.requests for guess in guesses] == [2, 2, 2]
    assert fault_server.requests() == []


def test_aggregates_and_agreement_of_known_tables():
    assert aggregate([4, None, 2]) == 3.0 and aggregate([None, None]) is None
    assert aggregate(["A", "B", "A"]) == "A" and aggregate(["A", "B"]) is None  # a tie has no majority
    assert ranks([2.0, 2.0, 1.0, 5.0]) == [2.5, 2.5, 1.0, 4.0]
    assert kendall_w([[1, 2, 3], [3, 2, 1]]) == 0.0  # opposite orders
    assert kendall_w([[3, 3], [5, 5]]) == 1.0  # both rate both equal: the same order
    assert kendall_w([[1, 2]]) is None and kendall_w([[1], [2]]) is None
    # Categorical: per text, the share of member pairs agreeing (Fleiss' P_i), averaged: (1/3 + 1) / 2.
    assert agreement([["A", "B"], ["A", "B"], ["B", "B"]]) == pytest.approx(2 / 3)
    assert agreement([[1, 2], None, [None, None]]) is None  # one member rated: no agreement to measure
    # Numbers: only the texts every member that rated the row rated; one that rated nothing is left out.
    assert aggregated([[None, 2.0], [4.0, 5.0]]) == [None, 3.5]
    assert aggregated([[5.0, 3.0, 1.0], [4.0, 2.0, 2.0], [None] * 3]) == [4.5, 2.5, 1.5]
    assert aggregated([None, [4.0, 5.0]]) == [4.0, 5.0]
    assert aggregated([["A", None], ["B", "B"], ["A", "B"]]) == ["A", "B"]  # labels: a vote per text


def member(model, rating, error=None):
    return {"labelling_model": model, "rating": rating, "labelling_error": error}


def test_the_rows_error_names_the_members_that_rated_part_of_it():
    strict = member("strict", [None, 2.0, 1.0], "parse: no rating for text(s) [1] of 3")
    row = jury_row([strict, member("lenient", [4.0, 5.0, 3.0])], ["rating"], "jury")
    assert row["rating"] == [None, 3.5, 2.0]
    assert row["labelling_error"] == "parse: judge 'strict': no rating for text(s) [1] of 3"
    assert row["jury_agreement"] == 1.0  # over texts 2 and 3, which both order alike
    # A member that failed the whole row is left out, and the others' ratings stand: no row error.
    failed = member("down", None, "http_500: HTTP 500")
    row = jury_row([failed, member("lenient", [4.0, 5.0, 3.0])], ["rating"], "jury")
    assert (row["rating"], row["labelling_error"]) == ([4.0, 5.0, 3.0], None)


def test_kendall_w_agrees_with_mean_spearman():
    # Without ties, the mean Spearman correlation over judge pairs is (m W - 1) / (m - 1).
    scipy = pytest.importorskip("scipy.stats")
    table = [[1, 4, 2, 5, 3], [2, 5, 1, 4, 3], [1, 3, 2, 4, 5], [5, 4, 3, 1, 2]]
    m = len(table)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    mean_rho = sum(scipy.spearmanr(table[i], table[j]).statistic for i, j in pairs) / len(pairs)
    assert (m * kendall_w(table) - 1) / (m - 1) == pytest.approx(mean_rho, abs=1e-12)


def test_a_jury_with_swaps_keeps_each_members_consistency(fault_server):
    # a and b rate by content, whatever the order: the reversed prompt gets the reversed ratings. On row 1
    # c favours the first place: it rates z, y, x as 1, 3, 5 too, which put back reads 5, 3, 1.
    position_biased = {"model": "judge-c", "contains": texts("z", "y", "x"), "reply": blocks([1, 3, 5])}
    reversed_rules = [
        {"model": m, "contains": texts(*reversed(shown)), "reply": blocks(rows[texts(*shown)][::-1])}
        for m, rows in RATINGS.items()
        for shown in (("x", "y", "z"), ("p", "q"))
    ]
    jury = mapgen.Jury(scripted(fault_server, position_biased, *reversed_rules))
    ds = run(mapgen.label(jury, mapgen.UltraFeedbackTask(), swap=True))
    # c's rating per text is the mean of its two verdicts: (1 + 5) / 2, (3 + 3) / 2, (5 + 1) / 2.
    assert ds[0]["ratings_by_judge"] == [[5.0, 3.0, 1.0], [4.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
    assert ds[0]["rating"] == pytest.approx([12 / 3, 8 / 3, 6 / 3])
    assert ds["rating_consistency_by_judge"] == [[True, True, False], [True, True, True]]
    assert ds["rating_consistency"] == [False, True]  # the jury's held where every member's did
    assert [len(prompts) for prompts in ds[0]["labelling_prompt"]] == [2, 2, 2]  # both orders, per member
    assert len(fault_server.requests()) == 12
    with pytest.warns(mapgen.MapgenWarning, match="1 inconsistent"):
        pairs = mapgen.to_preference(ds)  # consistent_only=True: row 1's pair is dropped
    assert pairs["chosen"] == ["q"] and pairs["rejected"] == ["p"]


def test_a_pairwise_jury_takes_the_majority_verdict(fault_server):
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"model": "judge-c", "reply": "B is right.\n\n[[B]]"},
            {"reply": "A is right.\n\n[[A]]"},
        ],
    )
    llms = [mapgen.OpenAILLM(m, base_url=fault_server.base_url, api_key=fault_server.api_key) for m in MODELS]
    ds = run(
        mapgen.label(mapgen.Jury(llms), mapgen.PairwiseJudgeTask()),
        {"input": ["q"], "generations": [["1", "2"]]},
    )
    assert ds[0]["preference"] == "a"
    assert ds[0]["preference_by_judge"] == ["a", "a", "b"]
    assert ds[0]["jury_agreement"] == pytest.approx(1 / 3)  # of the pairs (a, b), (a, c), (b, c), one agrees
    assert ds[0]["rationale_by_judge"] == ["A is right.", "A is right.", "B is right."]


def test_a_jury_averages_the_weighted_ratings_too(fault_server):
    # Without scripted log-probabilities, the server sends each word of the answer as a certain token:
    # each judge's weighted rating is its rating, and the jury's their mean.
    fn = mapgen.label(mapgen.Jury(scripted(fault_server)), mapgen.UltraFeedbackTask(), weighted_ratings=True)
    row = run(fn)[0]
    assert row["weighted_rating_by_judge"] == row["ratings_by_judge"]
    assert row["weighted_rating"] == pytest.approx([10 / 3, 8 / 3, 8 / 3])
