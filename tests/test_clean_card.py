"""Cleaning steps on the dataset card: dedup, decontaminate and verify record their parameters and what they
did in the dataset they return (mapgen.mapping.steps), and mapgen.dataset_card shows them in order."""

import datasets
import pytest

import mapgen
from mapgen.mapping.steps import recorded_steps

pytest.importorskip("math_verify")

TEXT = "the quick brown fox jumps over the lazy dog near the river bank on a sunny day in june"
BENCH = (
    "a farmer has twelve cows and buys seven more cows at the market then sells three of them to a neighbour"
)


def planted() -> datasets.Dataset:
    """6 rows: row 1 repeats row 0 (exact after normalisation), row 3 holds a benchmark 13-gram; each row has
    two generations, checked against its answer."""
    texts = [
        TEXT,
        TEXT.upper() + "!",
        "cats sleep all day long",
        BENCH + " and asks how many",
        "hello",
        "bye",
    ]
    return datasets.Dataset.from_dict(
        {
            "text": texts,
            "generations": [
                ["$4$", "5"],
                ["4", "4"],
                ["\\frac{1}{2}", "0.5"],
                ["1", None],
                ["7", "7"],
                ["2", "3"],
            ],
            "answer": ["4", "4", "0.5", "2", "7", "3"],
        }
    )


def test_each_step_is_on_the_card_in_order_with_what_it_did():
    ds = planted()
    ds.info.description = "My own words about this data."
    kept, report = mapgen.dedup(ds, "text")
    assert report.removed == 1
    bench = datasets.Dataset.from_dict({"question": [BENCH]})
    clean, found = mapgen.decontaminate(kept, "text", against={"cows": bench}, remove=True)
    assert found.removed == 1
    checked = mapgen.verify(clean, "generations", reference="answer")
    assert [r["step"] for r in recorded_steps(checked)] == ["dedup", "decontaminate", "verify"]
    assert recorded_steps(ds) == [] and ds.info.description == "My own words about this data."

    text = mapgen.dataset_card(checked).text
    assert "## How the data was cleaned" in text
    lines = [line for line in text.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert lines[0].startswith("1. `dedup`: 1 of 6 rows removed as near or exact duplicates")
    assert "1 exact copies" in lines[0]
    assert lines[1].startswith(
        "2. `decontaminate`: 1 of 5 rows share an n-gram with a benchmark (cows 1): 1 removed"
    )
    # 4 rows left, 8 generations: "$4$" right and "5" wrong (4), both right (0.5, 7), "2" wrong and "3" right
    assert lines[2].startswith(
        "3. `verify`: 6 of 8 answers verified (75.0% of those checked), 2 rejected, 0 not"
    )
    assert '"threshold": 0.8' in text and '"n": 13' in text and '"kind": "math"' in text
    assert "My own words about this data." in checked.info.description  # the user's words stay

    # Through datasets' transforms and the disk, the records travel with the rows.
    card = mapgen.dataset_card(checked.filter(lambda row: row["text"] != "hello").select([0, 1]))
    assert card.text.count("`dedup`: 1 of 6 rows removed") == 1
    assert [step["step"] for step in card.data.mapgen["cleaning"]] == ["dedup", "decontaminate", "verify"]


def test_records_survive_save_and_load_and_concatenation(tmp_path):
    marked, _ = mapgen.dedup(planted(), "text", keep_column="dup_cluster")
    marked.save_to_disk(str(tmp_path / "marked"))
    loaded = datasets.load_from_disk(str(tmp_path / "marked"))
    assert "2 of 6 rows" not in mapgen.dataset_card(loaded).text
    assert (
        "1 of 6 rows marked as near or exact duplicates of an earlier row in `dup_cluster`, none removed"
        in (mapgen.dataset_card(loaded).text)
    )
    # Two datasets cleaned apart, then joined: each one's steps are kept.
    first = mapgen.verify(mapgen.dedup(planted(), "text")[0], reference="answer")
    second = mapgen.verify(planted(), reference="answer")
    both = datasets.concatenate_datasets([first, second])
    assert [r["step"] for r in recorded_steps(both)] == ["dedup", "verify", "verify"]


def test_a_dataset_with_no_mapgen_step_still_has_no_card():
    with pytest.raises(ValueError, match="no cleaning step"):
        mapgen.dataset_card(planted())
