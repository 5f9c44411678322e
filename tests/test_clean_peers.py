"""Peers' bug reports about deduplication, decontamination and answer verification, replayed on mapgen.clean.

Each test names the report it replays; the inputs are the reports' own, or the smallest that show the kind.
"""

import datasets
import pytest

import mapgen

pytest.importorskip("math_verify")

TEXT = datasets.Features({"text": datasets.Value("string")})
THIRTEEN = "one two three four five six seven eight nine ten eleven twelve thirteen"


def test_distinct_texts_shorter_than_a_shingle_are_kept():
    # OpenDCAI/DataFlow#526: with ngram=5, ["cat", "dog", "cat"] became ["cat"] (no shingle, one signature).
    # data-juicer#1051: a text with no shingle at all raised on the empty minimum.
    ds = datasets.Dataset.from_dict({"text": ["cat", "dog", "cat", "a cat", "dog!"]})
    kept, report = mapgen.dedup(ds, "text")
    assert kept["text"][:] == ["cat", "dog", "a cat"]
    assert (report.removed, report.exact) == (2, 2)


def test_an_empty_dataset_or_one_with_no_text_is_returned_as_it_is():
    # The empty input every batch pipeline meets once (a filter that kept nothing).
    empty = datasets.Dataset.from_dict({"text": []}, features=TEXT)
    kept, report = mapgen.dedup(empty, "text")
    assert (len(kept), report.rows, report.removed, report.clusters) == (0, 0, 0, 0)
    marked, _ = mapgen.dedup(empty, "text", keep_column="dup")
    assert marked.column_names == ["text", "dup"]
    nothing = datasets.Dataset.from_dict({"text": [None, None]}, features=TEXT)
    assert len(mapgen.dedup(nothing, "text")[0]) == 2  # no text is never a duplicate
    flagged, report = mapgen.decontaminate(empty, "text", against={"bench": [THIRTEEN]})
    assert (len(flagged), report.flagged) == (0, 0) and "contaminated_by" in flagged.column_names


def test_a_benchmark_with_missing_texts_is_read_around_them():
    # A benchmark column with None (an optional field): the others still count, the None ones match nothing.
    ds = datasets.Dataset.from_dict({"text": [f"so {THIRTEEN} then", "clean text"]})
    flagged, report = mapgen.decontaminate(ds, "text", against={"bench": [None, THIRTEEN]})
    assert flagged["contaminated_by"][:] == [["bench"], []]
    assert report.benchmarks["bench"].flagged == 1


def test_an_empty_dataset_gets_the_verified_columns_too():
    # A later to_sft(verified_only=True) must not say "verify first" because a filter left no rows.
    features = datasets.Features(
        {"generations": datasets.List(datasets.Value("string")), "answer": datasets.Value("string")}
    )
    empty = datasets.Dataset.from_dict({"generations": [], "answer": []}, features=features)
    checked = mapgen.verify(empty)
    assert {"verified", "verification_errors"} <= set(checked.column_names)


@pytest.mark.parametrize(
    ("generation", "reference", "expected"),
    [
        ("\\frac{2}{3}", "2/3", True),  # Math-Verify#1: a plain "2/3" gold read as 2
        ("$\\text{13}$", "13", True),  # Math-Verify#37: a number in \text{}
        ("Thus it is **73**.\n\nFinal Answer: **73**", "73", True),  # Math-Verify#76: Markdown bold
        ("$4\\sqrt{2}$", "4", False),  # Math-Verify#41: a product is no match for its factor
        ("$\\frac{1}{2006!}$", "\\frac{1}{2004!}", False),  # Math-Verify#14: tiny exact values, apart
        ("$\\frac{1}{2^{98}}$", "\\frac{1}{2^{99}}", False),  # Math-Verify#14: a factor of 2 apart
        ("$\\frac{2}{4}$", "\\frac{1}{2}", True),  # the same exact number, written otherwise
    ],
)
def test_math_verify_reports(generation, reference, expected):
    ds = datasets.Dataset.from_dict({"generations": [[generation]], "answer": [reference]})
    assert mapgen.verify(ds)["verified"][0] == [expected]


@pytest.mark.parametrize(
    ("generations", "reference", "error"),
    [
        # A new user's tries: "Paris" read as math is P*a*r*i*s, so an anagram matched and "Paris" did not.
        (["Paris", "\\boxed{Pairs}"], "Paris", "parse: the reference 'Paris' is text, not a math expression"),
        (["yes", "$sey$"], "yes", "parse: the reference 'yes' is text"),
        (["4"], ["4", "four"], "input: the reference \"['4', 'four']\" is a list, not one answer"),
    ],
)
def test_a_reference_that_is_no_math_is_none_with_the_reason(generations, reference, error):
    ds = datasets.Dataset.from_dict({"generations": [generations], "answer": [reference]})
    checked = mapgen.verify(ds)
    assert checked["verified"][0] == [None] * len(generations)
    assert all(e.startswith(error) for e in checked["verification_errors"][0])


def test_a_one_letter_reference_is_still_math():
    ds = datasets.Dataset.from_dict({"generations": [["\\boxed{A}", "\\boxed{B}"]], "answer": ["A"]})
    assert mapgen.verify(ds)["verified"][0] == [True, False]
