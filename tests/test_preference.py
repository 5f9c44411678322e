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
    with pytest.warns(mapgen.MapgenWarning, match="1 within min_margin=1.5"):
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


def dropped(**kwargs):
    """The pairs and what to_preference said it dropped (its warning, when it gave one)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = mapgen.to_preference(datasets.Dataset.from_dict(kwargs.pop("data", DATA)), **kwargs)
    said = [str(w.message) for w in caught if issubclass(w.category, mapgen.MapgenWarning)]
    return ds, said


CLOSE = {
    "input": ["a", "b", "c", "d", "e"],
    "generations": [["x", "y"]] * 5,
    # margins 0.5, 1.0, 1.5, 0 (a tie), 3.0
    "rating": [[3.0, 3.5], [2.0, 3.0], [4.5, 3.0], [2.0, 2.0], [1.0, 4.0]],
}


def test_min_margin_drops_exactly_the_close_pairs_and_says_how_many():
    ds, said = dropped(data=CLOSE, min_margin=1.0)
    assert ds["prompt"] == ["b", "c", "e"]  # a margin of exactly 1.0 is kept: at least the margin
    assert said == ["to_preference dropped 2 of 5 pairs: 1 tied, 1 within min_margin=1.0"]
    ds, said = dropped(data=CLOSE, min_margin=1.5)
    assert ds["prompt"] == ["c", "e"]
    assert said == ["to_preference dropped 3 of 5 pairs: 1 tied, 2 within min_margin=1.5"]
    ds, said = dropped(data=CLOSE)  # ties alone are dropped as ever, without a warning
    assert ds["prompt"] == ["a", "b", "c", "e"] and said == []


def test_all_pairs_are_counted_one_by_one():
    ds, said = dropped(pairs="all", min_margin=1.5)
    # a: y-z 2 kept, y-x 3 kept, z-x 1 dropped; b: tied; e: r-q 2 kept
    assert ds.num_rows == 3
    assert said == ["to_preference dropped 2 of 5 pairs: 1 tied, 1 within min_margin=1.5"]


SWAPPED = {
    "input": ["a", "b", "c", "d"],
    "generations": [["x", "y"], ["x", "y"], ["x", "y", "z"], ["x", "y"]],
    "rating": [[4.0, 2.0], [3.5, 3.0], [5.0, 3.0, 1.0], [None, None]],
    "rating_consistency": [True, False, False, None],
}


def test_consistent_only_keeps_the_rows_whose_order_held():
    ds, said = dropped(data=SWAPPED, pairs="best-rest")
    assert ds["prompt"] == ["a"]
    assert said == [
        "to_preference dropped 3 of 4 pairs: 3 inconsistent (the order of the answers changed the judge's "
        "ranking)"
    ]
    ds, said = dropped(data=SWAPPED, pairs="best-rest", consistent_only=False)
    assert ds["prompt"] == ["a", "b", "c", "c"] and said == []
    ds, _ = dropped(data=SWAPPED, min_margin=1.0, consistent_only=False)
    assert ds["prompt"] == ["a", "c"]


PAIRWISE = {
    "input": ["a", "b", "c", "d", "e"],
    "generations": [["x", "y"], ["x", "y"], ["x", "y"], ["x", "y"], ["x", None]],
    "preference": ["a", "b", "tie", "inconsistent", None],
}


def test_pairwise_preferences_become_pairs():
    ds, said = dropped(data=PAIRWISE)
    assert list(zip(ds["prompt"], ds["chosen"], ds["rejected"], strict=True)) == [
        ("a", "x", "y"),
        ("b", "y", "x"),
    ]
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert said == [
        "to_preference dropped 2 of 4 pairs: 1 inconsistent (the order of the answers changed the judge's "
        "ranking), 1 tied"
    ]
    ds, _ = dropped(data=PAIRWISE, ties="keep", format="chat")
    assert ds["prompt"][2] == [{"role": "user", "content": "c"}]
    assert ds["chosen"][2] == [{"role": "assistant", "content": "x"}]
    with pytest.raises(ValueError, match="min_margin"):
        dropped(data=PAIRWISE, min_margin=1.0)


def test_nothing_kept_is_still_a_dataset_of_pairs():
    ds = datasets.Dataset.from_dict(
        {"input": ["a"], "generations": [["x", "y"]], "rating": [[5, 1]], "rating_consistency": [False]}
    )
    with pytest.warns(mapgen.MapgenWarning, match="1 inconsistent"):
        pairs = mapgen.to_preference(ds)
    assert pairs.num_rows == 0
    assert pairs.column_names == ["prompt", "chosen", "rejected", "chosen_rating", "rejected_rating"]
    chat = mapgen.to_preference(ds.remove_columns("rating_consistency"), format="chat")
    with pytest.warns(mapgen.MapgenWarning):
        empty_chat = mapgen.to_preference(ds, format="chat")
    assert empty_chat.features == chat.features  # the same columns and types as when pairs are kept


def test_a_row_without_a_verdict_in_both_orders_is_said_unchecked_not_inconsistent():
    ds = datasets.Dataset.from_dict(
        {
            "input": ["a", "b", "c"],
            "generations": [["x", "y"]] * 3,
            "rating": [[5, 1]] * 3,
            "rating_consistency": [True, False, None],
        }
    )
    with pytest.warns(mapgen.MapgenWarning, match=r"dropped 2 of 3 pairs: 1 inconsistent .*, 1 unchecked"):
        assert mapgen.to_preference(ds)["prompt"] == ["a"]
