"""mapgen.to_preference: DPO pairs, with ties, None ratings and None generations handled on purpose."""

import datasets
import pytest

import mapgen

DATA = {
    "input": ["a", "b", "c", "d", "e"],
    "generations": [["x", "y", "z"], ["t1", "t2"], ["n1", None], [None, None], ["p", "q", "r"]],
    "rating": [[2.0, 5.0, 3.0], [4.0, 4.0], [5.0, 1.0], [None, None], [None, 1.0, 3.0]],
}


def pairs(**kwargs):
    return mapgen.to_preference(datasets.Dataset.from_dict(DATA), **kwargs)


def test_best_worst_default():
    ds = pairs()
    # a: y(5) > x(2); b: tie dropped; c: n1 has a rating but its rival is a None generation; d: all None;
    # e: the unrated p is left out, r(3) > q(1)
    assert ds["prompt"] == ["a", "e"]
    assert ds["chosen"] == ["y", "r"]
    assert ds["rejected"] == ["x", "q"]
    assert ds["chosen_rating"] == [5.0, 3.0]
    assert ds["rejected_rating"] == [2.0, 1.0]


def test_ties_can_be_kept():
    ds = pairs(ties="keep")
    assert ("b", "t1", "t2") in zip(ds["prompt"], ds["chosen"], ds["rejected"], strict=True)


def test_best_rest_and_all():
    assert pairs(pairs="best-rest")["rejected"] == ["z", "x", "q"]
    ds = pairs(pairs="all")
    assert list(zip(ds["chosen"], ds["rejected"], strict=True)) == [
        ("y", "z"),
        ("y", "x"),
        ("z", "x"),
        ("r", "q"),
    ]


def test_min_margin():
    ds = pairs(pairs="all", min_margin=1.5)  # z(3) vs x(2) is within the margin
    assert list(zip(ds["chosen"], ds["rejected"], strict=True)) == [("y", "z"), ("y", "x"), ("r", "q")]


def test_chat_format_and_keep_columns():
    data = {**DATA, "labelling_model": ["m"] * 5}
    ds = mapgen.to_preference(
        datasets.Dataset.from_dict(data), format="chat", keep_columns=["labelling_model"]
    )
    assert ds[0]["prompt"] == [{"role": "user", "content": "a"}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "y"}]
    assert ds["labelling_model"] == ["m", "m"]


def test_other_rating_columns():
    data = {"input": ["a"], "generations": [["x", "y"]], "weighted_rating": [[1.7, 2.1]]}
    ds = mapgen.to_preference(datasets.Dataset.from_dict(data), rating_column="weighted_rating")
    assert ds["chosen"] == ["y"]


def test_clear_errors():
    with pytest.raises(ValueError, match="rating"):
        mapgen.to_preference(datasets.Dataset.from_dict({"input": ["a"], "generations": [["x"]]}))
    with pytest.raises(ValueError, match="pairs must be"):
        pairs(pairs="random")
