"""label(..., swap=True): each row judged in both orders, position bias measured per row, and the pairs that
held both ways kept (to_preference). PairwiseJudgeTask, MT-Bench's pairwise shape.

The judge is the real :class:`mapgen.OpenAILLM` against the fault server, whose answers are scripted by
rules keyed on how the prompt lists the texts, so a rule answers one order of one row only.
"""

import datasets
import pytest

import mapgen

GOOD = ["Paris is the capital of France.", "A spider has eight legs.", "12 times 3 is 36."]
BAD = ["Lyon is the capital of France.", "A spider has six legs.", "12 times 3 is 32."]
QUESTIONS = ["Capital of France?", "How many legs has a spider?", "What is 12 times 3?"]


def judge(server, *replies, default=None, **kwargs):
    server.configure(api_key=server.api_key, replies=list(replies), default_reply=default)
    return mapgen.OpenAILLM("judge", base_url=server.base_url, api_key=server.api_key, **kwargs)


def texts(*shown):
    """How the UltraFeedback prompt lists ``shown``, in order."""
    return "".join(f"<text {i}>\n{text}\n</text {i}>\n" for i, text in enumerate(shown, 1))


def blocks(*ratings):
    return "\n\n".join(f"Text {i}\nRating: {r}\nRationale: r{i}" for i, r in enumerate(ratings, 1))


def answers(*shown):
    """How the pairwise prompt shows two answers, in order."""
    a, b = shown
    return f"{a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n"


def rows():
    """Each question with its good answer first, then the bad one."""
    return {"input": QUESTIONS, "generations": [[g, b] for g, b in zip(GOOD, BAD, strict=True)]}


def run(fn, data):
    return datasets.Dataset.from_dict(data).map(fn, batched=True, load_from_cache_file=False)


def first_wins(good, bad):
    """A judge that rates by content (good 3, bad 2) and adds 2 to whatever it reads first: the first
    text wins in both orders."""
    return [
        {"contains": texts(good, bad), "reply": blocks(5, 2)},
        {"contains": texts(bad, good), "reply": blocks(4, 3)},
    ]


def by_content(good, bad):
    return [
        {"contains": texts(good, bad), "reply": blocks(5, 2)},
        {"contains": texts(bad, good), "reply": blocks(2, 5)},
    ]


TASK = mapgen.UltraFeedbackTask.for_overall_quality()


def test_a_judge_that_prefers_the_first_text_is_inconsistent_on_every_row(fault_server):
    rules = [rule for g, b in zip(GOOD, BAD, strict=True) for rule in first_wins(g, b)]
    ds = run(mapgen.label(judge(fault_server, *rules), TASK, swap=True), rows())
    assert ds["rating_consistency"] == [False, False, False]
    assert ds["rating"] == [[4.0, 3.0]] * 3  # good: (5 + 3) / 2, bad: (2 + 4) / 2
    assert ds["labelling_error"] == [None] * 3
    sent = fault_server.requests()
    assert len(sent) == 6  # two orders a row
    shown = [body["messages"][-1]["content"] for body in sent]
    for good, bad in zip(GOOD, BAD, strict=True):
        assert sum(texts(good, bad) in s for s in shown) == sum(texts(bad, good) in s for s in shown) == 1
    # per order: the prompt, the raw answer and the metadata of each, the given order first
    row = ds[0]
    assert [len(row[c]) for c in ("labelling_prompt", "raw_labelling_response", "labelling_metadata")] == [
        2
    ] * 3
    assert texts(BAD[0], GOOD[0]) in row["labelling_prompt"][1][-1]["content"]
    assert row["raw_labelling_response"] == [blocks(5, 2), blocks(4, 3)]

    with pytest.warns(mapgen.MapgenWarning) as caught:
        assert mapgen.to_preference(ds, consistent_only=True).num_rows == 0
    assert str(caught[0].message) == (
        "to_preference dropped 3 of 3 pairs: 3 inconsistent (the order of the answers changed the judge's "
        "ranking)"
    )
    kept = mapgen.to_preference(ds, consistent_only=False)
    assert kept["chosen"] == GOOD  # the mean still favours the good answer, by 1: only the swap tells


def test_a_judge_that_rates_by_content_is_consistent_and_its_pairs_are_kept(fault_server):
    rules = [rule for g, b in zip(GOOD, BAD, strict=True) for rule in by_content(g, b)]
    fn = mapgen.label(judge(fault_server, *rules), TASK, swap=True)
    ds = run(fn, rows())
    assert ds["rating_consistency"] == [True, True, True]
    assert ds["rating"] == [[5.0, 2.0]] * 3
    pairs = mapgen.to_preference(ds)
    assert pairs["chosen"] == GOOD and pairs["rejected"] == BAD

    # the same swap map again: both orders of every row come from the response store
    before = len(fault_server.requests())
    again = run(fn, rows())
    assert len(fault_server.requests()) == before
    assert again["rating"] == ds["rating"] and again["rating_consistency"] == ds["rating_consistency"]
    assert all(meta["from_store"] for metas in again["labelling_metadata"] for meta in metas)


def test_the_given_order_is_the_unswapped_request_and_reuses_its_answer(fault_server):
    rules = by_content(GOOD[0], BAD[0])
    llm = judge(fault_server, *rules)
    data = {"input": QUESTIONS[:1], "generations": [[GOOD[0], BAD[0]]]}
    run(mapgen.label(llm, TASK), data)
    assert len(fault_server.requests()) == 1
    ds = run(mapgen.label(llm, TASK, swap=True), data)
    assert len(fault_server.requests()) == 2  # only the reversed order was sent
    assert [m["from_store"] for m in ds[0]["labelling_metadata"]] == [True, False]


def test_weighted_ratings_are_the_mean_of_both_orders_too(fault_server):
    # the fault server gives each token all the probability: a weighted rating is then its digit
    llm = judge(fault_server, *first_wins(GOOD[0], BAD[0]))
    assert llm.supports_logprobs
    fn = mapgen.label(llm, TASK, swap=True, weighted_ratings=True)
    row = run(fn, {"input": ["q"], "generations": [[GOOD[0], BAD[0]]]})[0]
    assert row["weighted_rating"] == row["rating"] == [4.0, 3.0]


def test_swap_changes_the_fingerprint_and_leaves_the_old_one_alone(fault_server):
    llm = judge(fault_server)
    plain = mapgen.label(llm, TASK)
    assert mapgen.fingerprint(mapgen.label(llm, TASK, swap=False)) == mapgen.fingerprint(plain)
    assert mapgen.fingerprint(mapgen.label(llm, TASK, swap=True)) != mapgen.fingerprint(plain)
    assert "swap" not in mapgen.label(llm, TASK).fingerprint()  # fingerprints from before swap still hold


def test_none_generations_keep_their_place_across_the_swap(fault_server):
    a, b, c = "aaa", "bbbbbb", "c"
    llm = judge(
        fault_server,
        {"contains": texts(a, b, c), "reply": blocks(4, 5, 1)},
        {"contains": texts(c, b, a), "reply": blocks(2, 5, 4)},
    )
    ds = run(mapgen.label(llm, TASK, swap=True), {"input": ["q"], "generations": [[a, None, b, c]]})
    # c: (1 + 2) / 2; b: 5 both ways; a: 4 both ways. Both orders rank b > a > c.
    assert ds[0]["rating"] == [4.0, None, 5.0, 1.5]
    assert ds[0]["rating_consistency"] is True
    assert ds[0]["rationale"] == ["r1", None, "r2", "r3"]  # the given order's


def test_a_failed_order_is_data_and_the_error_says_which(fault_server):
    good, bad = GOOD[0], BAD[0]
    llm = judge(
        fault_server,
        {"contains": texts(good, bad), "reply": blocks(5, 2)},
        {"contains": texts(bad, good), "reply": "Both are fine, I think."},
        {"contains": texts(GOOD[1], BAD[1]), "status": 500},
        {"contains": texts(BAD[1], GOOD[1]), "reply": blocks(2, 5)},
        max_retries=0,
    )
    ds = run(
        mapgen.label(llm, TASK, swap=True), {"input": QUESTIONS[:2], "generations": rows()["generations"][:2]}
    )
    assert ds[0]["labelling_error"].startswith(
        "parse: reversed order (texts numbered as in the row): found no"
    )
    assert ds[1]["labelling_error"].startswith("http_500: given order: HTTP 500")
    assert ds["rating"] == [[None, None], [None, None]]  # a mean needs both verdicts
    assert ds["rating_consistency"] == [None, None]
    assert ds[0]["raw_labelling_response"] == [blocks(5, 2), "Both are fine, I think."]
    assert mapgen.to_preference(ds).num_rows == 0


def test_a_reversed_verdict_that_misses_a_text_names_it_in_the_row_order(fault_server):
    good, bad = GOOD[0], BAD[0]
    llm = judge(
        fault_server,
        {"contains": texts(good, bad), "reply": blocks(5, 2)},
        {"contains": texts(bad, good), "reply": "Text 1\nRating: 4\nRationale: r1"},  # rates bad only
    )
    row = run(mapgen.label(llm, TASK, swap=True), {"input": ["q"], "generations": [[good, bad]]})[0]
    assert row["labelling_error"] == (
        "parse: reversed order (texts numbered as in the row): no rating for text(s) [1] of 2"
    )
    assert row["rating"] == [None, 3.0]  # bad: (2 + 4) / 2; good: rated in one order only
    assert row["rating_consistency"] is None


def test_one_text_to_rate_sends_one_request(fault_server):
    llm = judge(fault_server, default=blocks(4))
    ds = run(mapgen.label(llm, TASK, swap=True), {"input": ["q"], "generations": [["only", None]]})
    assert ds[0]["rating"] == [4.0, None]
    assert ds[0]["rating_consistency"] is None  # no order to swap
    assert len(ds[0]["raw_labelling_response"]) == 1
    assert len(fault_server.requests()) == 1


def test_per_generation_tasks_are_refused_before_anything_is_sent(fault_server):
    llm = judge(fault_server)
    for task in (mapgen.UltraFeedbackTask.for_small_models(), mapgen.UltraCMTask()):
        with pytest.raises(ValueError, match="order has no meaning"):
            mapgen.label(llm, task, swap=True)
    assert fault_server.requests() == []


def test_flatten_keeps_the_two_orders_per_row(fault_server):
    rules = [rule for g, b in zip(GOOD, BAD, strict=True) for rule in by_content(g, b)]
    ds = run(mapgen.label(judge(fault_server, *rules), TASK, swap=True), rows())
    flat = mapgen.flatten(ds)  # which columns are per generation: from the label step's record
    assert flat.num_rows == 6
    assert flat["rating"] == [5.0, 2.0] * 3
    assert flat["generations"][:2] == [GOOD[0], BAD[0]]
    assert len(flat[0]["labelling_metadata"]) == 2 and flat[1]["labelling_metadata"] is None
    assert mapgen.usage(ds).models["judge"].requests == 6
    card = mapgen.dataset_card(ds).text
    assert "judge" in card


# -- PairwiseJudgeTask --------------------------------------------------------------------------------------


def verdict(letter):
    return f"One answer is right and the other is not.\n\n[[{letter}]]"


def test_pairwise_writes_a_b_tie_and_inconsistent(fault_server):
    (g0, g1, g2, g3), (b0, b1, b2, b3) = [*GOOD, "Water boils at 100 C."], [*BAD, "Water boils at 90 C."]
    llm = judge(
        fault_server,
        # row 0, good answer first: A both ways (it is A, then B) -> a
        {"contains": answers(g0, b0), "reply": verdict("A")},
        {"contains": answers(b0, g0), "reply": verdict("B")},
        # row 1, good answer second: B, then A -> b
        {"contains": answers(b1, g1), "reply": verdict("B")},
        {"contains": answers(g1, b1), "reply": verdict("A")},
        # row 2: a tie both ways
        {"contains": answers(g2, b2), "reply": verdict("C")},
        {"contains": answers(b2, g2), "reply": verdict("C")},
        # row 3: the first answer wins in both orders -> inconsistent
        {"contains": answers(g3, b3), "reply": verdict("A")},
        {"contains": answers(b3, g3), "reply": verdict("A")},
    )
    data = {"input": ["q0", "q1", "q2", "q3"], "generations": [[g0, b0], [b1, g1], [g2, b2], [g3, b3]]}
    task = mapgen.PairwiseJudgeTask()
    ds = run(mapgen.label(llm, task, swap=True), data)
    assert ds["preference"] == ["a", "b", "tie", "inconsistent"]
    assert ds["rating_consistency"] == [True, True, True, False]
    assert ds["rationale"] == ["One answer is right and the other is not."] * 4
    assert ds["labelling_error"] == [None] * 4
    assert len(fault_server.requests()) == 8

    plain = run(mapgen.label(llm, task), data)  # the given orders, from the store
    assert plain["preference"] == ["a", "b", "tie", "a"]
    assert len(fault_server.requests()) == 8

    with pytest.warns(mapgen.MapgenWarning, match=r"dropped 2 of 4 pairs: 1 inconsistent \(.*\), 1 tied$"):
        pairs = mapgen.to_preference(ds)  # the tie and the inconsistent row give no pair
    assert pairs["chosen"] == [g0, g1] and pairs["rejected"] == [b0, b1]
    assert pairs["prompt"] == ["q0", "q1"]
    assert mapgen.to_preference(plain)["chosen"] == [g0, g1, g3]


def test_pairwise_rows_without_exactly_two_answers_are_input_errors(fault_server):
    llm = judge(fault_server, default=verdict("A"))
    data = {"input": ["q", "q", "q"], "generations": [["x", "y", "z"], ["x", None], ["x", "y"]]}
    ds = run(mapgen.label(llm, mapgen.PairwiseJudgeTask(), swap=True), data)
    assert ds["preference"] == [None, None, "inconsistent"]  # the last: A in both orders
    assert ds[0]["labelling_error"] == (
        "input: PairwiseJudgeTask compares exactly 2 generations, none of them None or empty; column "
        "'generations' holds 3 of 3"
    )
    assert ds[1]["labelling_error"].endswith("holds 1 of 2")
    assert len(fault_server.requests()) == 2  # the last row only, both orders


def test_pairwise_sends_mt_bench_shape_and_its_schema(fault_server):
    llm = judge(fault_server, default=verdict("B"))
    run(mapgen.label(llm, mapgen.PairwiseJudgeTask()), {"input": ["q"], "generations": [["x", "y"]]})
    [body] = fault_server.requests()
    assert '"[[A]]" if assistant A is better' in body["messages"][0]["content"]
    assert "[The Start of Assistant A's Answer]\nx\n" in body["messages"][-1]["content"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == ["A", "B", "C"]
    with pytest.raises(ValueError, match="writes none"):
        mapgen.label(judge(fault_server), mapgen.PairwiseJudgeTask(), weighted_ratings=True)


@pytest.mark.parametrize(
    ("answer", "preference", "rationale"),
    [
        ("A is right.\n\nFinal verdict: [[A]]", "a", "A is right."),
        ("B explains it; A does not. My final verdict is: **[[B]]**", "b", "B explains it; A does not."),
        ("Both are equally good. [[C]]", "tie", "Both are equally good."),
        ("Same quality.\n[[ tie ]]", "tie", "Same quality."),
        # the format echoed first, the verdict last
        ('I must answer "[[A]]", "[[B]]" or "[[C]]". B is better.\n[[B]]', "b", None),
        ("Assistant B is closer.\nVerdict: Assistant B", "b", "Assistant B is closer."),
        ("A is better [A]", "a", "A is better"),
        ('{"explanation": "A is right.", "verdict": "A"}', "a", "A is right."),
        ('```json\n{"explanation": "Tie.", "verdict": "C"}\n```', "tie", "Tie."),
        # "a tie" is a tie, not the letter A; the choice ends its line
        (
            "Both answers are correct and equally clear.\nVerdict: a tie.",
            "tie",
            "Both answers are correct and equally clear.",
        ),
        ("Close.\nFinal verdict - Assistant A", "a", "Close."),
        ("Neither is better.\nWinner: tie", "tie", "Neither is better."),
    ],
)
def test_pairwise_parser_is_tolerant(answer, preference, rationale):
    parsed = mapgen.PairwiseJudgeTask().parse(answer)
    assert parsed["preference"] == preference
    if rationale is not None:
        assert parsed["rationale"] == rationale


@pytest.mark.parametrize(
    "answer",
    [
        "Both are fine.",
        '{"explanation": "x", "verdict": "D"}',
        "",
        # the article "a" is no verdict for A
        "Final verdict: a close call, but Assistant B is more precise.",
        "Decision: A draw between them.",
    ],
)
def test_pairwise_parser_refuses_what_has_no_verdict(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.PairwiseJudgeTask().parse(answer)


def test_the_preference_pipeline_passes_swap_to_label(fault_server):
    fault_server.configure(api_key=fault_server.api_key, default_reply=["answer 0", "answer 1"])
    llm = mapgen.OpenAILLM("pipeline-llm", base_url=fault_server.base_url, api_key=fault_server.api_key)
    fn = mapgen.pipeline("preference", "honesty", generator=llm, labeller=llm, swap=True)
    assert fn.label.swap
    assert mapgen.fingerprint(fn) != mapgen.fingerprint(
        mapgen.pipeline("preference", "honesty", generator=llm, labeller=llm)
    )
