"""mapgen.dedup: planted near-duplicates found and unique rows kept, exact duplicates after normalisation,
the keep_column mode, a list column's generation, num_proc, and a wrong column refused before any work."""

from __future__ import annotations

import random
from collections import Counter

import datasets
import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, Features, Value

import mapgen
from mapgen.clean.minhash import _find, _roots, _signature_reader
from mapgen.errors import MissingColumnError


def planted(rows: int = 2000, share: float = 0.2, words: int = 100, seed: int = 0) -> Dataset:
    """``rows`` texts of ``words`` words drawn from a seeded 2,000-word vocabulary, ``share`` of them a copy
    of another text with one word changed, shuffled; ``family`` is the index of the text each was made from
    (its own for an original)."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(2000)]
    originals = round(rows * (1 - share))
    texts = [" ".join(rng.choices(vocabulary, k=words)) for _ in range(originals)]
    family = list(range(originals))
    while len(texts) < rows:
        source = rng.randrange(originals)
        changed = texts[source].split()
        position = rng.randrange(words)
        changed[position] = rng.choice([w for w in vocabulary if w != changed[position]])
        texts.append(" ".join(changed))
        family.append(source)
    order = list(range(rows))
    rng.shuffle(order)
    return Dataset.from_dict({"text": [texts[i] for i in order], "family": [family[i] for i in order]})


def test_planted_near_duplicates_are_removed_and_unique_rows_kept():
    """The issue's Done-when: one word changed in 100-word texts, for 20% of 2,000 rows; default settings
    remove at least 90% of the planted copies and under 1% of the unique rows."""
    ds = planted()
    sizes = Counter(ds["family"])
    planted_copies = sum(size - 1 for size in sizes.values())  # one row of each family is the one to keep
    unique = sum(1 for size in sizes.values() if size == 1)
    assert planted_copies == 400 and unique > 1000

    kept, report = mapgen.dedup(ds, "text")

    kept_sizes = Counter(kept["family"])
    copies_removed = sum(sizes[f] - kept_sizes[f] for f in sizes if sizes[f] > 1)
    unique_removed = sum(1 for f in sizes if sizes[f] == 1 and kept_sizes[f] == 0)
    assert copies_removed >= 0.9 * planted_copies, copies_removed
    assert unique_removed < 0.01 * unique, unique_removed
    assert all(kept_sizes[f] >= 1 for f in sizes)  # never a whole family gone: the first of each is kept
    assert report.rows == 2000 and report.removed == 2000 - len(kept) == copies_removed + unique_removed
    assert report.clusters == len(ds) - len(kept) - (report.removed - report.clusters) > 0
    assert report.exact == 0
    assert (report.parameters["bands"], report.parameters["rows_per_band"]) == (14, 9)
    example = report.examples[0]
    assert example["kept"] < example["removed"]
    assert example["kept_text"] == ds[example["kept"]]["text"] != example["removed_text"]


def test_exact_duplicates_after_normalisation():
    """Case, punctuation and whitespace do not matter, for short texts too (fewer words than a shingle)."""
    ds = Dataset.from_dict(
        {
            "text": [
                "Yes.",
                "yes",
                "  YES!!  ",
                "No.",
                "The answer is 42, of course.",
                "the answer is 42 -- of course",
                None,
                None,
                "",
                "",
            ]
        }
    )
    kept, report = mapgen.dedup(ds, "text")
    assert kept["text"] == ["Yes.", "No.", "The answer is 42, of course.", None, None, ""]
    assert (report.removed, report.exact, report.clusters) == (4, 4, 3)


def test_keep_column_marks_clusters_instead_of_removing():
    ds = Dataset.from_dict({"text": ["a b c", "unrelated text here", "A, b; c!", "a b c", "other"]})
    marked, report = mapgen.dedup(ds, "text", keep_column="dup_cluster")
    assert marked["text"] == ds["text"]
    assert marked["dup_cluster"][:] == [0, None, 0, 0, None]
    assert report.removed == 2 and report.clusters == 1


def test_one_generation_of_a_list_column():
    ds = Dataset.from_dict(
        {
            "generations": [
                ["Paris is the capital.", "first answer"],
                ["paris is the capital", "a different second answer"],
                ["Lyon.", "first answer"],
                ["only one"],
            ]
        }
    )
    kept, _ = mapgen.dedup(ds, "generations", generation=0)
    assert [row[0] for row in kept["generations"]] == ["Paris is the capital.", "Lyon.", "only one"]
    second = mapgen.dedup(ds, "generations", generation=1, keep_column="cluster")[0]
    assert second["cluster"][:] == [0, None, 0, None]  # the row with no second generation is no duplicate
    with pytest.raises(MissingColumnError, match="generation=0"):
        mapgen.dedup(ds, "generations")


def test_two_workers_give_the_same_result():
    ds = planted(rows=400, seed=1)
    one = mapgen.dedup(ds, "text", keep_column="cluster")[0]["cluster"][:]
    two = mapgen.dedup(ds, "text", keep_column="cluster", num_proc=2)[0]["cluster"][:]
    assert one == two and any(c is not None for c in one)


def test_character_shingles_find_a_changed_letter():
    base = "the quick brown fox jumps over the lazy dog near the river bank at dawn"
    ds = Dataset.from_dict(
        {"text": [base, base.replace("quick", "quack"), "something else entirely, at noon"]}
    )
    kept, _ = mapgen.dedup(ds, "text", shingle="char")
    assert kept["text"] == [base, "something else entirely, at noon"]


def test_a_wrong_column_or_parameter_is_refused_before_work():
    ds = Dataset.from_dict({"text": ["a"]})
    with pytest.raises(MissingColumnError, match=r"no column 'txt'.*\['text'\]"):
        mapgen.dedup(ds, "txt")
    with pytest.raises(ValueError, match="generation=None"):
        mapgen.dedup(ds, "text", generation=0)
    with pytest.raises(ValueError, match="threshold"):
        mapgen.dedup(ds, "text", threshold=80)
    with pytest.raises(ValueError, match="shingle"):
        mapgen.dedup(ds, "text", shingle="words")
    with pytest.raises(TypeError, match="did you mean 'num_perm'"):
        mapgen.dedup(ds, "text", num_perms=64)


def test_keep_column_with_no_duplicate_is_all_none():
    ds = Dataset.from_dict({"text": ["one text about cats", "another about rockets", None]})
    marked, report = mapgen.dedup(ds, "text", keep_column="cluster")
    assert marked["cluster"][:] == [None, None, None] and report.removed == 0


def test_signatures_are_read_chunk_by_chunk_as_arrow_takes_them():
    """The pair check reads signatures from the Arrow chunks (sliced ones too) without concatenating the
    column: the same values as ``ChunkedArray.take``, in the order asked, across chunk boundaries."""
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 2**32, size=4, dtype=np.uint32).tolist() for _ in range(30)]
    lists[3] = None  # a row with no text: never asked for, but it shifts the offsets after it
    whole = pa.array(lists, pa.list_(pa.uint32()))
    column = pa.chunked_array([whole.slice(0, 7), whole.slice(7, 1), whole.slice(8, 22)])
    rows = np.array([29, 0, 8, 7, 4, 6, 29, 12, 5])
    read = _signature_reader(column, 4)(rows)
    assert read.dtype == np.uint32 and read.shape == (9, 4)
    assert read.tolist() == column.take(rows).to_pylist()


def test_roots_by_pointer_jumping_are_those_of_find():
    """The clusters' ids, computed on the whole union-find array at once, are those that following each
    row's parents one at a time gives."""
    rng = np.random.default_rng(1)
    parent = np.array([rng.integers(0, i + 1) if rng.random() < 0.7 else i for i in range(5000)])
    expected = [_find(parent.copy(), i) for i in range(len(parent))]
    assert _roots(parent).tolist() == expected
    assert len(set(expected)) < 2000  # deep trees, not only roots


def test_an_empty_dataset_comes_back_empty():
    ds = Dataset.from_dict({"text": []}, features=Features({"text": Value("string")}))
    kept, report = mapgen.dedup(ds, "text")
    assert len(kept) == 0 and (report.rows, report.removed, report.clusters, report.exact) == (0, 0, 0, 0)
    assert mapgen.dedup(ds, "text", keep_column="cluster")[0].column_names == ["text", "cluster"]


def test_what_is_no_text_or_no_dataset_is_refused_before_work():
    # A new user's tries: a number column removed nothing, a DatasetDict named its splits as columns,
    # a second run with the same keep_column failed deep in datasets.
    with pytest.raises(TypeError, match="holds int64, not text"):
        mapgen.dedup(datasets.Dataset.from_dict({"x": [1, 1, 2]}), "x")
    ds = datasets.Dataset.from_dict({"text": ["a b c", "a b c", "d e f"]})
    with pytest.raises(TypeError, match="call it on each split"):
        mapgen.dedup(datasets.DatasetDict({"train": ds}), "text")
    with pytest.raises(TypeError, match="got list"):
        mapgen.dedup(["a", "a"], "text")
    marked, _ = mapgen.dedup(ds, "text", keep_column="dup_cluster")
    with pytest.raises(ValueError, match="keep_column 'dup_cluster' is already a column"):
        mapgen.dedup(marked, "text", keep_column="dup_cluster")
