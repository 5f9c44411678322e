"""Every parser against a corpus of well-formed and malformed answers, with the results pinned."""

import pytest

import mapgen
from mapgen.tasks.evol import check_rewrite
from mapgen.tasks.parsing import (
    AmbiguousScore,
    labelled_field,
    list_items,
    load_json,
    numbered_blocks,
    parse_score,
)

N = None

ULTRAFEEDBACK = [
    # well-formed text
    (
        "Text 1\nRating: 4\nRationale: Clear.\n\nText 2\nRating: 2\nRationale: Vague.",
        [4, 2],
        ["Clear.", "Vague."],
    ),
    # the seed's own markdown headers, bold labels, extra blank lines
    (
        "#### Output for Text 1\n**Rating**: 4\n**Rationale**: good one\n\n\n\n#### Output for Text 2\n"
        "Rating: 5\nRationale: best",
        [4, 5],
        ["good one", "best"],
    ),
    # `Rating: 4/5`, `N/A`
    ("Text 1\nRating: 4/5\nRationale: a\nText 2\nRating: N/A\nRationale: empty", [4, N], ["a", "empty"]),
    # reordered blocks
    ("Text 2:\nRating: 3\nRationale: meh\nText 1:\nRating: 5\nRationale: great", [5, 3], ["great", "meh"]),
    # fewer blocks than texts, with a gap: missing ones are None in place
    (
        "**Text 1**\n\nRating: 5\n\nRationale: a\n\n**Text 3**\nRating: 1\nRationale: c",
        [5, N, 1],
        ["a", N, "c"],
    ),
    # no headers at all, one Rating line per text
    ("Rating: 4\nRationale: fine\nRating: 2\nRationale: bad", [4, 2], ["fine", "bad"]),
    # compact one-line blocks
    ("Text 1: 4 - good\nText 2: 3 - ok", [4, 3], ["good", "ok"]),
    # multi-line rationale
    ("Text 1\nRating: 3\nRationale: first line\nsecond line", [3], ["first line\nsecond line"]),
    # JSON (constrained backends), fenced JSON, JSON after prose, JSON cut off by the token limit
    (
        '{"ratings": [{"rating": 4, "rationale": "ok"}, {"rating": 2, "rationale": "no"}]}',
        [4, 2],
        ["ok", "no"],
    ),
    ('```json\n{"ratings": [{"rating": 4, "rationale": "ok"}]}\n```', [4], ["ok"]),
    ('Here you go: {"ratings": [{"rating": "5", "rationale": "x"}]}', [5], ["x"]),
    (
        '{"ratings": [{"rating": 4, "rationale": "ok"}, {"rating": 2, "rationale": "cut of',
        [4, 2],
        ["ok", "cut of"],
    ),
    ('{"ratings": [{"rating": 4, "rationale": "ok"}, {"rat', [4], ["ok"]),
    # an out-of-scale rating is None, the others survive
    ("Text 1\nRating: 9\nRationale: a\nText 2\nRating: 3\nRationale: b", [N, 3], ["a", "b"]),
]


@pytest.mark.parametrize(("answer", "ratings", "rationales"), ULTRAFEEDBACK)
def test_ultrafeedback_parser(answer, ratings, rationales):
    parsed = mapgen.UltraFeedbackTask().parse(answer)
    assert parsed["rating"] == [None if r is None else float(r) for r in ratings]
    assert parsed["rationale"] == rationales


@pytest.mark.parametrize(
    "answer", ["I think both texts are fine.", "", "Text 1\nThis one is nice.", '{"ratings": []}']
)
def test_ultrafeedback_parser_failures_are_parse_errors(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.UltraFeedbackTask().parse(answer)


def test_ultrafeedback_per_generation_parses_one_answer():
    task = mapgen.UltraFeedbackTask.for_small_models()
    assert task.parse('{ "rating": 4, "rationale": "fine" }') == {"rating": 4.0, "rationale": "fine"}
    assert task.parse("Rating: **5**\nRationale: great") == {"rating": 5.0, "rationale": "great"}


JUDGELM = [
    ("8 6\nThe first is right.", [8, 6], "The first is right."),
    ("**8 6**\n\nThe first answer is correct.", [8, 6], "The first answer is correct."),
    ("Scores: 8/10, 7/10\nBoth ok", [8, 7], "Both ok"),
    ("\n\n9, 3\n\nExplanation: second is wrong", [9, 3], "Explanation: second is wrong"),
    ("Assistant 1: 9\nAssistant 2: 3\nReason: x", [9, 3], "Reason: x"),
    ("N/A 8\nfirst is empty", [N, 8], "first is empty"),
    ("8 12\nsecond out of range", [8, N], "second out of range"),
    ('{"scores": [7, 5], "explanation": "fine"}', [7, 5], "fine"),
    ("7.5 6", [7.5, 6], None),
]


@pytest.mark.parametrize(("answer", "ratings", "rationale"), JUDGELM)
def test_judgelm_parser(answer, ratings, rationale):
    parsed = mapgen.JudgeLMTask().parse(answer)
    assert parsed == {"rating": [None if r is None else float(r) for r in ratings], "rationale": rationale}


@pytest.mark.parametrize("answer", ["No idea.", "", "   \n  "])
def test_judgelm_parser_failures(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.JudgeLMTask().parse(answer)


ULTRAJUDGE_FULL = (
    "**Answer 1**\n- **Practical Accuracy**: 8/10 - right\n\n- Clarity & Transparency: 7 - clear\n"
    "- Authenticity & Reliability: 9 - sourced\n- Compliance with Intent: 8 - on task\n\n"
    "**Answer 2**\n- Practical Accuracy: 3 - wrong\n- Clarity and Transparency: 5 - ok\n\nFinal Scores: 8 4"
)


def test_ultrajudge_parser_well_formed_and_partial():
    parsed = mapgen.UltraJudgeTask().parse(ULTRAJUDGE_FULL)
    assert parsed["rating"] == [8.0, 4.0]
    assert parsed["areas"][0] == {
        "Practical Accuracy": {"rating": 8.0, "rationale": "right"},
        "Clarity & Transparency": {"rating": 7.0, "rationale": "clear"},
        "Authenticity & Reliability": {"rating": 9.0, "rationale": "sourced"},
        "Compliance with Intent": {"rating": 8.0, "rationale": "on task"},
    }
    assert parsed["areas"][1]["Authenticity & Reliability"] == {"rating": None, "rationale": None}


def test_ultrajudge_without_final_scores_has_no_rating():
    # it used to write the mean of the areas, 7.0: a score the judge never gave
    parsed = mapgen.UltraJudgeTask().parse(
        "Answer 1\n- Practical Accuracy: 6 - ok\n- Compliance with Intent: 8 - yes"
    )
    assert parsed["rating"] == [None]
    assert parsed["areas"][0]["Compliance with Intent"] == {"rating": 8.0, "rationale": "yes"}


def test_ultrajudge_json():
    entry = {name: {"rating": 7, "rationale": "r"} for name in mapgen.tasks.ultrajudge.AREAS_NAMES}
    parsed = mapgen.UltraJudgeTask().parse(
        __import__("json").dumps({"answers": [{**entry, "final_score": 6}, {**entry, "final_score": 11}]})
    )
    assert parsed["rating"] == [6.0, None]  # an out-of-range final score is none, not the area mean (7.0)
    assert parsed["areas"][0]["Compliance with Intent"] == {"rating": 7.0, "rationale": "r"}


@pytest.mark.parametrize("answer", ["Both are fine.", "Answer 1\nLooks good to me."])
def test_ultrajudge_failures(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.UltraJudgeTask().parse(answer)


SCORES = [
    ("[1] Score: 8\n[2] Score: 3", [8, 3]),
    ("[1] Score: 8\n\n\n[2] Score: 3\n", [8, 3]),  # the seed crashed on blank lines
    ("**[1] Score:** 8\n**[2] Score:** N/A", [8, N]),
    ("[1] Score: 7\n[3] Score: 4/10", [7, N, 4]),
    ("[2] Score: 4\n[1] Score: 9", [9, 4]),
    ("1. 8\n2. 5", [8, 5]),
    ("Response 1: 6\nResponse 2: 9", [6, 9]),
    ("Score: 4\nScore: 6", [4, 6]),
    ('{"scores": [3, 4]}', [3, 4]),
    ("Sure!\n[1] Score: 10\n[2] Score: 0", [10, N]),
]


@pytest.mark.parametrize("task", [mapgen.QualityScorerTask(), mapgen.ComplexityScorerTask()])
@pytest.mark.parametrize(("answer", "ratings"), SCORES)
def test_scorer_parsers(task, answer, ratings):
    assert task.parse(answer) == {"rating": [None if r is None else float(r) for r in ratings]}


@pytest.mark.parametrize("answer", ["These are good.", ""])
def test_scorer_failures(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.QualityScorerTask().parse(answer)


ULTRACM = [
    ("Critique: Correct but terse.\nOverall score: 7", "Correct but terse.", 7),
    ("**Critique:** Correct but terse.\n\nOverall score: 7/10", "Correct but terse.", 7),
    ("The answer is ok but misses X.\n\nScore: 6", "The answer is ok but misses X.", 6),
    ("It is great. 9/10", "It is great. 9/10", 9),
    ('{"critique": "meh", "score": 4}', "meh", 4),
    ("Overall score: 8\nCritique: solid", "solid", 8),
]


@pytest.mark.parametrize(("answer", "critique", "score"), ULTRACM)
def test_ultracm_parser(answer, critique, score):
    assert mapgen.UltraCMTask().parse(answer) == {"critique": critique, "score": float(score)}


@pytest.mark.parametrize("answer", ["Nothing to say", "Overall score: 11", ""])
def test_ultracm_failures(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.UltraCMTask().parse(answer)


PROMETHEUS_TASK = mapgen.PrometheusTask(criteria="Correct?", score_descriptions=("a", "b", "c", "d", "e"))
PROMETHEUS = [
    ("Feedback: The date is off by a year. [RESULT] 3", "The date is off by a year.", 3),
    ("The answer is right.\n\n**[RESULT]** 5", "The answer is right.", 5),
    ("Feedback: ok\n[RESULT]: 4/5", "ok", 4),
    ("Feedback: x\nScore: 2", "x", 2),
    ('{"feedback": "f", "result": 5}', "f", 5),
    ("Feedback: mentions [RESULT] 2 early. Final: [RESULT] 4", "mentions [RESULT] 2 early. Final:", 4),
]


@pytest.mark.parametrize(("answer", "critique", "score"), PROMETHEUS)
def test_prometheus_parser(answer, critique, score):
    assert PROMETHEUS_TASK.parse(answer) == {"critique": critique, "score": float(score)}


@pytest.mark.parametrize("answer", ["Feedback: [RESULT] 7", "good", ""])
def test_prometheus_failures(answer):
    with pytest.raises(mapgen.ParseError):
        PROMETHEUS_TASK.parse(answer)


def test_prometheus_rubric_is_checked():
    with pytest.raises(ValueError, match="five strings"):
        mapgen.PrometheusTask(criteria="x", score_descriptions=("a", "b"))


SELF_INSTRUCT = [
    ("1. A one\n2. B two\n3. C three", ["A one", "B two", "C three"]),
    ("Sure! Here are 3 instructions:\n\n1. A\n2) B\n- C\n4. D", ["A", "B", "C"]),
    ("**1.** Bold one\n\n\n**2.** Bold two", ["Bold one", "Bold two"]),
    ("1. Same\n2. Same\n3. Other", ["Same", "Other"]),
    ('{"instructions": ["x is long", "y is long"]}', ["x is long", "y is long"]),
]


@pytest.mark.parametrize(("answer", "instructions"), SELF_INSTRUCT)
def test_self_instruct_parser(answer, instructions):
    assert mapgen.SelfInstructTask(num_instructions=3).parse(answer) == {"instructions": instructions}


def test_self_instruct_failure():
    with pytest.raises(mapgen.ParseError):
        mapgen.SelfInstructTask().parse("Here are some instructions:\n\n")


EVOL_OK = [
    ("List three prime numbers above 100.", "List three prime numbers above 100."),
    ("**Rewritten instruction:** List three primes.", "List three primes."),
    ("New instruction - Explain tides to a child.", "Explain tides to a child."),
]
EVOL_BAD = [
    ("I'm sorry, but I can't help with that.", "refused"),
    ("As an AI language model, I cannot rewrite this.", "refused"),
    ("Rewritten Instruction: #Given Prompt# write a poem", "leaks"),
    ("Here is the rewritten prompt: write a poem", "leaks"),
    ("   ", "empty"),
]


@pytest.mark.parametrize(("answer", "expected"), EVOL_OK)
def test_evol_parser_keeps_rewrites(answer, expected):
    assert mapgen.EvolInstructTask().parse(answer) == {"instructions": expected}
    assert mapgen.EvolQualityTask().parse(answer) == {"generations": expected}


@pytest.mark.parametrize(("answer", "reason"), EVOL_BAD)
def test_evol_parser_drops_refusals_and_leaks(answer, reason):
    with pytest.raises(mapgen.ParseError, match=reason):
        check_rewrite(answer)


def test_evol_method_is_stable_and_spread():
    task = mapgen.EvolInstructTask()
    methods = {task.method_for({"input": f"instruction {i}"}) for i in range(50)}
    assert methods == set(task.methods)
    assert task.method_for({"input": "x"}) == task.method_for({"input": "x"})
    with pytest.raises(ValueError, match="subset"):
        mapgen.EvolInstructTask(methods=("nope",))


def test_parsing_helpers():
    assert parse_score("**4/5**", 1, 5) == 4.0
    assert parse_score("4 out of 5", 1, 5) == 4.0
    with pytest.raises(AmbiguousScore, match="another scale"):
        parse_score("8/10", 1, 5)  # was 4.2, rescaled: a number the judge never wrote
    assert parse_score("n/a", 1, 5) is None
    assert parse_score(3, 1, 5) == 3.0
    with pytest.raises(mapgen.ParseError):
        parse_score("six", 1, 5)
    assert load_json('prose {"a": 1} more') == {"a": 1}
    assert load_json("no json") is None
    assert numbered_blocks("no headers") == {}
    assert labelled_field("Score = 3", ("score",)) == "3"
    assert list_items("- a\n* b\n(3) c") == ["a", "b", "c"]


# Issue 10, items 6 and 7: a score is read only where the format puts it; numbers in the judge's reasoning
# never are, an ambiguous answer is a ParseError, and nothing is written that the judge did not write.

ISSUE_6 = (
    "Reasoning:\n1. 4 facts are listed and all are correct.\n2. 2 of its claims are wrong.\n\n"
    "[1] Score: 9\n[2] Score: 3"
)

SCORES_IN_REASONING = [
    (ISSUE_6, [9, 3]),
    # reasoning lines that start with the response's own label
    ("Response 1: 3 errors, so weak.\nResponse 2: solid.\n[1] Score: 4\n[2] Score: 8", [4, 8]),
    # a restated score that agrees is fine
    ("[1] Score: 6\n[2] Score: 2\n\nSo: [1] Score: 6", [6, 2]),
]


@pytest.mark.parametrize("task", [mapgen.QualityScorerTask(), mapgen.ComplexityScorerTask()])
@pytest.mark.parametrize(("answer", "ratings"), SCORES_IN_REASONING)
def test_scorers_never_read_reasoning_as_scores(task, answer, ratings):
    assert task.parse(answer) == {"rating": [float(r) for r in ratings]}


@pytest.mark.parametrize(
    "answer",
    [
        "1. 4 facts are listed and all are correct.\n2. 2 of its claims are wrong.",  # reasoning only
        "[1] 2 major errors, score 3\n[2] fine, score 8",  # no score where the format puts it
        "[1] Score: 9\n[2] Score: 3\n\nOn reflection:\n[1] Score: 7",  # two scores for response 1
    ],
)
def test_scorers_flag_ambiguous_answers(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.QualityScorerTask().parse(answer)


def test_judgelm_reads_the_first_line_not_the_explanation():
    answer = "8 6\nAssistant 1: 3 steps, all correct.\nAssistant 2: 2 steps missing."
    assert mapgen.JudgeLMTask().parse(answer) == {
        "rating": [8.0, 6.0],
        "rationale": "Assistant 1: 3 steps, all correct.\nAssistant 2: 2 steps missing.",
    }
    labelled = mapgen.JudgeLMTask().parse("Assistant 1: 8, Assistant 2: 6\nBoth fine.")
    assert labelled == {"rating": [8.0, 6.0], "rationale": "Both fine."}


@pytest.mark.parametrize(
    "answer",
    [
        "Assistant 1 is better with 3 examples.\nAssistant 2 lacks detail.",  # was [1.0, 3.0]
        "8 6\nAssistant 1: 7\nAssistant 2: 6",  # two different scores for assistant 1
    ],
)
def test_judgelm_flags_ambiguous_answers(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.JudgeLMTask().parse(answer)


SEED_LAYOUT = """\
#### Response 1
- Practical Accuracy - 8
  The steps are right.
- Clarity & Transparency - 7
  Easy to follow.
- Authenticity & Reliability - 9
  Nothing invented.
- Compliance with Intent - 0
  Ignores the question.

#### Response 2
- Practical Accuracy - 3
  Wrong time.

Final Scores: 0 4"""


def test_ultrajudge_seed_layout_keeps_rationales_and_invents_no_score():
    parsed = mapgen.UltraJudgeTask().parse(SEED_LAYOUT)
    assert parsed["rating"] == [None, 4.0]  # a final 0 is out of scale: none, not the area mean 8.0
    assert parsed["areas"][0] == {
        "Practical Accuracy": {"rating": 8.0, "rationale": "The steps are right."},
        "Clarity & Transparency": {"rating": 7.0, "rationale": "Easy to follow."},
        "Authenticity & Reliability": {"rating": 9.0, "rationale": "Nothing invented."},
        "Compliance with Intent": {"rating": None, "rationale": "Ignores the question."},
    }
    assert parsed["areas"][1]["Practical Accuracy"] == {"rating": 3.0, "rationale": "Wrong time."}


@pytest.mark.parametrize(
    "final",
    [
        "Final scores: Answer 1: 8, Answer 2: 5",  # was [1.0, 8.0]: the answers' numbers read as scores
        "Final scores:\nAnswer 1: 8\nAnswer 2: 5",
        "Final scores: 8 5",
    ],
)
def test_ultrajudge_final_scores(final):
    answer = f"Answer 1\n- Practical Accuracy: 8 - ok\n\nAnswer 2\n- Practical Accuracy: 4 - bad\n\n{final}"
    assert mapgen.UltraJudgeTask().parse(answer)["rating"] == [8.0, 5.0]


def test_ultrajudge_final_score_in_each_block():
    answer = (
        "Answer 1\n- Practical Accuracy: 8 - ok\nFinal score: 8\n\n"
        "Answer 2\n- Practical Accuracy: 4 - bad\nFinal score: 4"
    )
    parsed = mapgen.UltraJudgeTask().parse(answer)
    assert parsed["rating"] == [8.0, 4.0]  # was [8.0]: answer 2 was lost
    assert parsed["areas"][1]["Practical Accuracy"] == {"rating": 4.0, "rationale": "bad"}


@pytest.mark.parametrize(
    "answer",
    [
        "Answer 1\n- Practical Accuracy: 8 - ok\nFinal scores: answer 1 is better, 8 vs 6",
        "Answer 1\n- Practical Accuracy: 8 - ok\n- Practical Accuracy: 3 - on second look, wrong",
    ],
)
def test_ultrajudge_flags_ambiguous_answers(answer):
    with pytest.raises(mapgen.ParseError):
        mapgen.UltraJudgeTask().parse(answer)


ULTRACM_NATIVE = [
    # UltraCM's own layout: the critique follows the score line
    (
        "### Feedback\nOverall Score: 7\nThe answer is correct but skips the cooling step.",
        "The answer is correct but skips the cooling step.",
        7,
    ),
    # a count in the critique is not the score
    ("The answer scores 3 of 5 points. Overall, 8/10", "The answer scores 3 of 5 points. Overall, 8/10", 8),
    (
        "Critique: It gets 3 of 5 steps.\nRating: 2 of them matter\nOverall score: 6",
        "It gets 3 of 5 steps.\nRating: 2 of them matter",
        6,
    ),
    ("Overall score: 7 - clear but terse", "clear but terse", 7),
]


@pytest.mark.parametrize(("answer", "critique", "score"), ULTRACM_NATIVE)
def test_ultracm_reads_the_score_marker_and_keeps_the_critique(answer, critique, score):
    assert mapgen.UltraCMTask().parse(answer) == {"critique": critique, "score": float(score)}


def test_ultracm_flags_two_overall_scores():
    with pytest.raises(mapgen.ParseError, match="two different scores"):
        mapgen.UltraCMTask().parse("Critique: fine.\nOverall score: 7\n\nOverall score: 4")


def test_prometheus_keeps_the_feedback_it_was_given():
    parsed = PROMETHEUS_TASK.parse("Feedback loops are explained well. [RESULT] 4")
    assert parsed == {"critique": "Feedback loops are explained well.", "score": 4.0}
    parsed = PROMETHEUS_TASK.parse("### Feedback\nThe answer is right.\n[RESULT] 5")
    assert parsed == {"critique": "The answer is right.", "score": 5.0}


def test_prometheus_flags_results_that_disagree():
    with pytest.raises(mapgen.ParseError, match="two different scores"):
        PROMETHEUS_TASK.parse(
            "Feedback: x [RESULT] 3\nOn reflection [RESULT] 4 is fairer because it is right"
        )


def test_prometheus_weighted_position_is_the_result_it_reads():
    answer = "Feedback: mentions [RESULT] 2 early. Final: [RESULT] 4"
    [position] = PROMETHEUS_TASK.score_positions(answer)
    assert answer[position] == "4" and PROMETHEUS_TASK.parse(answer)["score"] == 4.0


ULTRAFEEDBACK_REASONING = [
    # a count at the start of a block is reasoning, not a rating ("Rating" mid-line is not the marker)
    ("Text 1\n3 facts are wrong, so Rating: 2\n\nText 2\nRating: 4\nRationale: ok", [N, 4], [N, "ok"]),
    # a rationale line that starts with "Text 2 ..." does not open text 2's block
    (
        "Text 1\nRating: 4\nRationale: Clear, unlike\nText 2 which invents 3 facts.\n\n"
        "Text 2\nRating: 2\nRationale: Invented facts.",
        [4, 2],
        ["Clear, unlike\nText 2 which invents 3 facts.", "Invented facts."],
    ),
    # a first pass of remarks, then the rated blocks
    ("Text 1: 3 facts are wrong.\n\nText 1\nRating: 2\nRationale: a", [2], ["a"]),
]


@pytest.mark.parametrize(("answer", "ratings", "rationales"), ULTRAFEEDBACK_REASONING)
def test_ultrafeedback_never_reads_reasoning_as_ratings(answer, ratings, rationales):
    parsed = mapgen.UltraFeedbackTask().parse(answer)
    assert parsed["rating"] == [None if r is None else float(r) for r in ratings]
    assert parsed["rationale"] == rationales


@pytest.mark.parametrize(
    ("task", "answer"),
    [
        (mapgen.UltraFeedbackTask(), "Text 1\nRating: 4\nRationale: a\nText 2\nRating: 2\n\nText 1: 5"),
        (mapgen.UltraFeedbackTask(), "Text 1\nRating: 4\nRationale: a\nRating: 2"),
        (mapgen.UltraFeedbackTask(), "Text 1\nRating: The text has 3 errors, so 2\nRationale: a"),
        (mapgen.UltraFeedbackTask.for_small_models(), "Rating: 4\nRationale: fine\nRating: 2"),
    ],
)
def test_ultrafeedback_flags_ambiguous_answers(task, answer):
    with pytest.raises(mapgen.ParseError):
        task.parse(answer)


def test_ultrafeedback_weighted_positions_follow_the_text_numbers():
    answer = "Text 2:\n**Rating**: 3\nRationale: meh\nText 1:\nRating: 5\nRationale: great"
    task = mapgen.UltraFeedbackTask()
    assert [answer[p] for p in task.score_positions(answer)] == ["5", "3"]  # was ["3", "5"]
    assert task.parse(answer)["rating"] == [5.0, 3.0]


@pytest.mark.parametrize(
    ("value", "score"), [("Rating: 4 (3 facts checked)", 4.0), ("- 4", 4.0), ("4 - clear", 4.0)]
)
def test_parse_score_reads_the_leading_number(value, score):
    assert parse_score(value, 1, 5) == score


@pytest.mark.parametrize("value", ["The text has 3 errors, so 2", "4-5", "4 or 5", "-1"])
def test_parse_score_refuses_numbers_that_are_not_the_score(value):
    with pytest.raises(mapgen.ParseError):
        parse_score(value, 1, 5)


# Issue 10: a score is read on the task's own scale or not at all. A score written with its scale ("x/N",
# "x out of N") is read only when N is the scale's top; a range or an either/or is not read as its first
# number. Either fails the whole answer (AmbiguousScore), in every task, through parse_score.

QUALITY = mapgen.QualityScorerTask()
COMPLEXITY = mapgen.ComplexityScorerTask()

OTHER_SCALE = [
    (mapgen.UltraFeedbackTask.for_overall_quality(), "Text 1\nRating: 5/10\nRationale: r"),  # was [5.0]
    (mapgen.UltraFeedbackTask.for_overall_quality(), "Text 1\nRating: 6/10\nRationale: r"),  # was [3.4]
    (mapgen.UltraFeedbackTask(), "Text 1: 6/10 - r\nText 2: 4 - ok"),
    (mapgen.UltraFeedbackTask(), '{"ratings": [{"rating": "4/10", "rationale": "x"}]}'),
    (mapgen.UltraFeedbackTask(), "Text 1\nRating: 80%\nRationale: r"),
    (QUALITY, "[1] Score: 4/5"),  # was [4.0] on 1 to 10
    (QUALITY, "[1] Score: 9/100\n[2] Score: 7"),  # was [9.0, 7.0]
    (COMPLEXITY, "1. 3 out of 5\n2. 8"),
    (mapgen.UltraCMTask(), "Critique: c\nOverall score: 5/5"),  # was 5.0 out of 10
    (PROMETHEUS_TASK, "Feedback: ok [RESULT] 8/10"),  # was 4.2, rescaled
    (mapgen.JudgeLMTask(), "Scores: 4/5, 3/5\nBoth fine"),
    (
        mapgen.UltraJudgeTask(),
        "Answer 1\n- Practical Accuracy: 4/5 - ok\nFinal scores: 8",
    ),  # was 4.0, "5 - ok"
    (mapgen.UltraJudgeTask(), "Answer 1\n- Practical Accuracy: 8 - ok\nFinal scores: 4/5"),
]


@pytest.mark.parametrize(("task", "answer"), OTHER_SCALE)
def test_a_score_on_another_scale_is_a_parse_error(task, answer):
    with pytest.raises(AmbiguousScore, match=r"another scale|percentage"):
        task.parse(answer)


SAME_SCALE = [
    (
        mapgen.UltraFeedbackTask(),
        "Text 1: 4/5 - good\nText 2\nRating: 3 out of 5\nRationale: ok",
        {"rating": [4.0, 3.0], "rationale": ["good", "ok"]},
    ),
    (QUALITY, "[1] Score: 9 out of 10\n[2] Score: 7/10", {"rating": [9.0, 7.0]}),
    (
        mapgen.UltraCMTask(),
        "Critique: c\nOverall score: 7 out of 10 - terse",
        {"critique": "c\nterse", "score": 7.0},
    ),
    (PROMETHEUS_TASK, "Feedback: ok [RESULT] 4 out of 5", {"critique": "ok", "score": 4.0}),
]


@pytest.mark.parametrize(("task", "answer", "parsed"), SAME_SCALE)
def test_a_score_out_of_the_scales_top_is_read_as_written(task, answer, parsed):
    assert task.parse(answer) == parsed


def test_ultrajudge_area_rationale_does_not_start_with_the_scale():
    answer = (
        "Answer 1\n- Practical Accuracy: 10/10 - ok\n- Clarity & Transparency: 8 out of 10: clear\n"
        "Final scores: 8/10"
    )
    parsed = mapgen.UltraJudgeTask().parse(answer)
    assert parsed["rating"] == [8.0]
    assert parsed["areas"][0]["Practical Accuracy"] == {"rating": 10.0, "rationale": "ok"}
    assert parsed["areas"][0]["Clarity & Transparency"] == {"rating": 8.0, "rationale": "clear"}


RANGES = [
    (QUALITY, "[1] Score: 3-4\n[2] Score: 8"),  # was [3.0, 8.0]
    (QUALITY, "[1] Score: 7 or 8"),  # was [7.0]
    (COMPLEXITY, "1. 7 - 8\n2. 6"),
    (QUALITY, '{"scores": [8, "7 or 8"]}'),
    (mapgen.UltraFeedbackTask(), "Text 1\nRating: 4 or 5\nText 2\nRating: 3"),  # was [None, 3.0]
    (mapgen.UltraFeedbackTask(), "Text 1: 4-5 - good\nText 2: 2 - bad"),
    (mapgen.JudgeLMTask(), "Assistant 1: 8 or 9\nAssistant 2: 6"),
    (mapgen.UltraJudgeTask(), "Answer 1\n- Practical Accuracy: 7 to 8 - ok\nFinal scores: 8"),
    (mapgen.UltraCMTask(), "Critique: c\nOverall score: 6~7"),  # was 6.0
    (PROMETHEUS_TASK, "Feedback: ok [RESULT] 3-4"),
]


@pytest.mark.parametrize(("task", "answer"), RANGES)
def test_a_range_or_an_either_or_is_a_parse_error(task, answer):
    with pytest.raises(AmbiguousScore, match="range or an either/or"):
        task.parse(answer)


def test_a_count_after_a_spaced_dash_is_a_comment_not_a_range():
    assert parse_score("4 - 3 facts are wrong", 1, 5) == 4.0
    parsed = mapgen.UltraFeedbackTask().parse("Text 1: 4 - 3 facts are wrong")
    assert parsed == {"rating": [4.0], "rationale": ["3 facts are wrong"]}


def test_ultracm_flags_a_score_line_beside_the_overall_score():
    with pytest.raises(mapgen.ParseError, match="two different scores"):  # was 8
        mapgen.UltraCMTask().parse("Feedback: fine\nScore: 7\nOverall rating: 8")
    agreeing = mapgen.UltraCMTask().parse("Feedback: fine\nScore: 8\nOverall rating: 8")
    assert agreeing == {"critique": "fine", "score": 8.0}


@pytest.mark.parametrize(
    ("answer", "critique"),
    [
        ("[RESULT] 4\nFeedback: The date is off.", "The date is off."),  # was None
        ("[RESULT] 4 - mostly right\nThe date is off.", "mostly right\nThe date is off."),
    ],
)
def test_prometheus_keeps_feedback_written_after_the_result(answer, critique):
    assert PROMETHEUS_TASK.parse(answer) == {"critique": critique, "score": 4.0}


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ("8\n6\nexplanation", {"rating": [8.0, 6.0], "rationale": "explanation"}),  # was [8.0], "6\n..."
        ("8\n\n6 steps are missing", {"rating": [8.0], "rationale": "6 steps are missing"}),
    ],
)
def test_judgelm_reads_one_score_per_line_before_the_explanation(answer, parsed):
    assert mapgen.JudgeLMTask().parse(answer) == parsed
