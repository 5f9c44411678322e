"""mapgen.agreement: a judge's ratings against people's, checked against scipy, scikit-learn and
krippendorff on fixed tables, and against figures worked out by hand."""

from __future__ import annotations

import math
import sys
from typing import Any

import datasets
import krippendorff
import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import cohen_kappa_score

import mapgen
from mapgen.errors import MissingColumnError

# Rows of one prompt's generations: the judge's ratings (a weighted one among them) and people's consensus,
# with answers and whole rows that one side did not rate.
JUDGE: list[Any] = [
    [5.0, 3.0, 1.0],
    [4.0, 4.0, 2.0, 1.0],
    [2.0, None, 5.0],
    None,
    [3.0, 3.0],
    [1.0, 2.0, 4.0],
    [5.0, 4.0, 4.0],
    [2.0, 3.0, float("nan")],
    [4.6, 2.2, 2.5],
    [3.0],
]
HUMAN: list[Any] = [
    [5, 2, 1],
    [5, 3, 3, 1],
    [1, 4, 4],
    [3, 3, 3],
    [4, 2],
    [1, 2, 5],
    [4, 4, 5],
    [2, 4, 1],
    [5, 2, 3],
    None,
]


def both_rated(judge: list[Any], human: list[Any]) -> tuple[list[float], list[float]]:
    """The answers rated on both sides, flattened (written apart from the module under test)."""
    judged, rated = [], []
    for j_row, h_row in zip(judge, human, strict=True):
        if j_row is None or h_row is None:
            continue
        for j, h in zip(j_row, h_row, strict=True):
            if j is None or h is None or (isinstance(j, float) and math.isnan(j)):
                continue
            judged.append(float(j))
            rated.append(float(h))
    return judged, rated


def whole(values: list[float]) -> list[int]:
    return [math.floor(v + 0.5) for v in values]


def kappa_by_formula(a: list[int], b: list[int]) -> float:
    """Cohen's (1968) weighted kappa, weights (i - j)² on the scores' values: 1 - Σ w·O / Σ w·E."""
    scores = sorted(set(a) | set(b))
    n = len(a)
    observed = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / n
    count_a = {s: a.count(s) / n for s in scores}
    count_b = {s: b.count(s) / n for s in scores}
    expected = sum((x - y) ** 2 * count_a[x] * count_b[y] for x in scores for y in scores)
    return 1 - observed / expected


def table(judge: list[Any], human: list[Any], **columns: list[Any]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"rating": judge, "human_rating": human, **columns})


def test_it_matches_scipy_scikit_learn_and_krippendorff_on_a_fixed_table() -> None:
    result = mapgen.agreement(table(JUDGE, HUMAN), resamples=0)
    judged, rated = both_rated(JUDGE, HUMAN)
    whole_judged, whole_rated = whole(judged), whole(rated)
    assert result.n == len(judged) == 22 and result.rows == 8
    assert result.rounded  # 4.6, 2.2 and 2.5 read as 5, 2 and 3 (half up) for the categorical figures
    scale = list(range(min(whole_judged + whole_rated), max(whole_judged + whole_rated) + 1))
    expected_kappa = cohen_kappa_score(whole_rated, whole_judged, labels=scale, weights="quadratic")
    assert result.kappa == pytest.approx(expected_kappa, abs=1e-9)
    assert result.kappa == pytest.approx(kappa_by_formula(whole_rated, whole_judged), abs=1e-9)
    expected_alpha = krippendorff.alpha(
        reliability_data=[whole_judged, whole_rated], level_of_measurement="ordinal"
    )
    assert result.alpha == pytest.approx(expected_alpha, abs=1e-9)
    assert result.spearman == pytest.approx(spearmanr(judged, rated).statistic, abs=1e-9)
    assert result.kendall == pytest.approx(kendalltau(judged, rated).statistic, abs=1e-9)
    pairs = list(zip(whole_judged, whole_rated, strict=True))
    assert result.exact == pytest.approx(sum(j == h for j, h in pairs) / 22, abs=1e-12)
    assert result.within_one == pytest.approx(sum(abs(j - h) <= 1 for j, h in pairs) / 22, abs=1e-12)
    for name in ("kappa", "alpha", "spearman", "kendall", "pairwise_accuracy", "exact", "within_one"):
        assert isinstance(getattr(result, name), float), name
    assert result.annotators_alpha is None  # no per-annotator column


def test_a_larger_random_table_matches_the_libraries_too() -> None:
    generator = np.random.default_rng(7)
    human = generator.integers(1, 8, size=(60, 4))  # a 1-to-7 scale
    judge = np.clip(human + generator.integers(-2, 3, size=human.shape), 1, 7).astype(float)
    result = mapgen.agreement(table(judge.tolist(), human.tolist()), resamples=0)
    j, h = judge.ravel(), human.ravel().astype(float)
    assert result.n == 240
    assert result.kappa == pytest.approx(
        cohen_kappa_score(h, j, labels=list(range(1, 8)), weights="quadratic"), abs=1e-9
    )
    assert result.kappa == pytest.approx(kappa_by_formula(h.astype(int).tolist(), j.astype(int).tolist()))
    assert result.alpha == pytest.approx(
        krippendorff.alpha(reliability_data=[j, h], level_of_measurement="ordinal"), abs=1e-9
    )
    assert result.spearman == pytest.approx(spearmanr(j, h).statistic, abs=1e-9)
    assert result.kendall == pytest.approx(kendalltau(j, h).statistic, abs=1e-9)


@pytest.mark.parametrize(
    ("human", "judge", "kappa"),
    [
        # Two scores: weighted kappa is Cohen's plain kappa, (3/4 - 1/2) / (1/2).
        ([1, 1, 2, 2], [1, 2, 2, 2], 0.5),
        ([1, 2, 3], [1, 3, 3], 0.8),  # Σw·O = 1, Σw·E = 5 (counts over n)
        # Scores 1, 2 and 4 only: 2 and 4 are two apart, not neighbours. Σw·O = 4, Σw·E = 12.
        ([1, 2, 4], [1, 4, 4], 2 / 3),
    ],
)
def test_kappa_of_small_tables_worked_out_by_hand(human: list[int], judge: list[int], kappa: float) -> None:
    result = mapgen.agreement(table([float(v) for v in judge], human), resamples=0)
    assert result.kappa == pytest.approx(kappa, abs=1e-12)


def test_perfect_agreement_is_one_everywhere() -> None:
    ratings = [[1, 3, 5], [2, 4], [5, 1]]
    result = mapgen.agreement(table(ratings, ratings), resamples=50)
    for name in ("kappa", "alpha", "spearman", "kendall", "pairwise_accuracy", "exact", "within_one"):
        assert getattr(result, name) == pytest.approx(1.0, abs=1e-12), name
    assert result.pairwise_ties == 0.0 and result.pairs == 5
    assert result.intervals["kappa"] == pytest.approx((1.0, 1.0))


def test_pairwise_accuracy_by_hand_with_ties() -> None:
    judge = [[4, 4, 2], [1, 3, 5], [5, 2], [1, 5, 3]]
    human = [[5, 3, 1], [2, 2, 4], [1, 4], [3, None, 2]]
    result = mapgen.agreement(table(judge, human), resamples=0)
    # Row 1: 5>3 judge tied, 5>1 and 3>1 kept. Row 2: 2=2 not ordered by people, 2<4 and 2<4 kept.
    # Row 3: 1<4 reversed. Row 4: only 3>2 (the middle answer has no human rating), reversed.
    assert result.pairs == 7
    assert result.pairwise_accuracy == pytest.approx(4 / 6, abs=1e-12)
    assert result.pairwise_ties == pytest.approx(1 / 7, abs=1e-12)


def test_intervals_are_reproducible_with_a_seed_and_differ_with_another() -> None:
    ds = table(JUDGE, HUMAN)
    first = mapgen.agreement(ds, seed=1, resamples=150)
    again = mapgen.agreement(ds, seed=1, resamples=150)
    other = mapgen.agreement(ds, seed=2, resamples=150)
    assert first.intervals == again.intervals
    assert first.intervals != other.intervals
    assert set(first.intervals) == {
        "kappa", "alpha", "spearman", "kendall", "pairwise_accuracy", "pairwise_ties", "exact", "within_one"
    }  # fmt: skip
    for name, (low, high) in first.intervals.items():
        assert -1 <= low <= high <= 1, name
    # The figures themselves do not depend on the resamples.
    figures = [(r.kappa, r.alpha, r.pairwise_accuracy) for r in (first, other)]
    assert figures[0] == figures[1]
    narrow = mapgen.agreement(ds, seed=1, resamples=150, confidence=0.5)
    assert narrow.intervals["kappa"][0] >= first.intervals["kappa"][0]
    assert narrow.intervals["kappa"][1] <= first.intervals["kappa"][1]
    assert "50% interval" in str(narrow)


def test_a_resample_reads_its_rows_answers_row_after_row_repeats_kept() -> None:
    from mapgen.report.agreement import _Table

    found = _Table.read(JUDGE, HUMAN, None, ("rating", "human_rating", ""))
    # The rows both rated (rows 3 and 9 not), with the answers both rated in each, numbered in order.
    assert found.sizes.tolist() == [3, 4, 2, 2, 3, 3, 2, 3]
    drawn = np.array([7, 0, 7, 2])  # as a bootstrap draws rows: repeats, any order
    chosen = found.answers(drawn)
    assert chosen.tolist() == [19, 20, 21, 0, 1, 2, 19, 20, 21, 7, 8]
    assert found.answers(np.array([], dtype=np.int64)).tolist() == []
    judged, rated = (np.array(side)[chosen] for side in both_rated(JUDGE, HUMAN))
    figures = found.figures(drawn)
    assert figures["spearman"] == pytest.approx(spearmanr(judged, rated).statistic, abs=1e-12)
    assert figures["exact"] == pytest.approx(np.mean(np.array(whole(judged)) == np.array(whole(rated))))


def test_unrated_rows_and_generations_are_skipped() -> None:
    judged, rated = both_rated(JUDGE, HUMAN)
    with_gaps = mapgen.agreement(table(JUDGE, HUMAN), resamples=0)
    without = mapgen.agreement(table([[j] for j in judged], [[h] for h in rated]), resamples=0)
    assert with_gaps.n == without.n == 22
    for name in ("kappa", "alpha", "spearman", "kendall", "exact", "within_one"):
        assert getattr(with_gaps, name) == pytest.approx(getattr(without, name), abs=1e-12), name


def test_scalar_columns_read_one_rating_per_row() -> None:
    judged, rated = both_rated(JUDGE, HUMAN)
    scalars = mapgen.agreement(table([*judged, None, 3.0], [*rated, 4, None]), resamples=0)
    lists = mapgen.agreement(table([[j] for j in judged], [[h] for h in rated]), resamples=0)
    assert scalars.n == scalars.rows == 22
    for name in ("kappa", "alpha", "spearman", "kendall", "exact", "within_one"):
        assert getattr(scalars, name) == pytest.approx(getattr(lists, name), abs=1e-12), name
    # One answer per prompt: no pair to order.
    assert scalars.pairs == 0 and math.isnan(scalars.pairwise_accuracy)
    assert scalars.intervals["pairwise_accuracy"][0] != scalars.intervals["pairwise_accuracy"][0]  # nan
    assert "pairwise_accuracy              undefined" in str(scalars)


def test_annotators_agreement_is_reported_as_the_ceiling() -> None:
    # Two or three people per answer; the consensus is their median, as a pull could write it.
    each: list[Any] = [
        [[5, 5], [2, 3], [1]],
        [[5, 4, 5], [3, 3], [3, 2], [1, 1]],
        [[1, 2], [4], [4, 4]],
        None,
        [[4, 4], [2, 1]],
        [[1, 1], [2, 3], [5, 5]],
        [[4, 4], [4, 5], [5, 5]],
        [[2, 2], [4, 4], [1, None]],
        [[5, 5], [2, 2], [3, 4]],
        None,
    ]
    result = mapgen.agreement(table(JUDGE, HUMAN, human_ratings=each), resamples=200)
    # The answers the judge comparison reads (both rated), with their annotators, NaN-padded.
    columns = []
    for j_row, h_row, a_row in zip(JUDGE, HUMAN, each, strict=True):
        if j_row is None or h_row is None:
            continue
        for j, h, a in zip(j_row, h_row, a_row, strict=True):
            if j is None or h is None or math.isnan(j):
                continue
            given = [v for v in a if v is not None]
            columns.append(given + [math.nan] * (3 - len(given)))
    matrix = np.array(columns, dtype=float).T
    assert matrix.shape == (3, 22)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert result.annotators_alpha == pytest.approx(expected, abs=1e-9)
    assert result.annotators_n == 21  # one answer had a single annotator
    # People agree more with each other than this judge does with them.
    assert result.annotators_alpha is not None and result.annotators_alpha > result.alpha
    low, high = result.intervals["annotators_alpha"]
    assert low <= high
    assert "annotators' alpha (ceiling)" in str(result) and "on 21 answers with 2+ annotators" in str(result)

    perfect = [[[v, v] if v is not None else None for v in row] if row else None for row in HUMAN]
    ceiling = mapgen.agreement(table(JUDGE, HUMAN, human_ratings=perfect), resamples=0)
    assert ceiling.annotators_alpha == pytest.approx(1.0, abs=1e-12)

    named = mapgen.agreement(table(JUDGE, HUMAN, reviewers=each), annotators="reviewers", resamples=0)
    assert named.annotators_alpha == pytest.approx(expected, abs=1e-9)
    skipped = mapgen.agreement(table(JUDGE, HUMAN, human_ratings=each), annotators=None, resamples=0)
    assert skipped.annotators_alpha is None and "annotators_alpha" not in skipped.intervals


def test_the_table_names_each_figure() -> None:
    text = str(mapgen.agreement(table(JUDGE, HUMAN), resamples=100))
    lines = text.splitlines()
    assert lines[0].split() == ["value", "95%", "interval"]
    assert (
        lines[1].startswith("n ")
        and "22  answers rated by `rating` and `human_rating`, in 8 rows" in lines[1]
    )
    names = [
        "kappa (Cohen, quadratic)",
        "alpha (Krippendorff, ordinal)",
        "spearman",
        "kendall (tau-b)",
        "pairwise_accuracy",
        "pairwise_ties",
        "exact",
        "within_one",
    ]
    assert [line[:29].strip() for line in lines[2:]] == names
    assert all("[" in line for line in lines[2:])


def test_undefined_figures_are_nan() -> None:
    # Every answer rated 3 by both: no spread, so kappa, alpha and the correlations are undefined.
    flat = mapgen.agreement(table([[3.0, 3.0], [3.0]], [[3, 3], [3]]), resamples=20)
    for name in ("kappa", "alpha", "spearman", "kendall", "pairwise_accuracy", "pairwise_ties"):
        assert math.isnan(getattr(flat, name)), name
        assert all(math.isnan(bound) for bound in flat.intervals[name]), name
    assert flat.exact == 1.0 and flat.within_one == 1.0
    nothing = mapgen.agreement(table([None, [1.0]], [[2], [None]]), resamples=20)
    assert nothing.n == 0 and nothing.rows == 0 and math.isnan(nothing.kappa) and math.isnan(nothing.exact)


def test_bad_columns_raise_before_any_figure() -> None:
    with pytest.raises(MissingColumnError, match=r"\['human_rating'\].*columns: \['rating'\]"):
        mapgen.agreement(datasets.Dataset.from_dict({"rating": [[1.0]]}))
    with pytest.raises(MissingColumnError, match="reviewers"):
        mapgen.agreement(table([[1.0]], [[1]]), annotators="reviewers")
    with pytest.raises(ValueError, match=r"Row 1: `rating` has 3 ratings and `human_rating` 2"):
        mapgen.agreement(table([[1.0], [1.0, 2.0, 3.0]], [[1], [1, 2]]))
    with pytest.raises(ValueError, match=r"Row 0: `rating` holds a list and `human_rating` a number"):
        mapgen.agreement(table([[1.0]], [1]))
    with pytest.raises(ValueError, match=r"`rating` holds 'good'"):
        mapgen.agreement(table([["good"]], [[1]]))
    with pytest.raises(ValueError, match=r"`human_rating` holds \[1, 2\].*a list within a generation"):
        mapgen.agreement(table([[1.0]], [[[1, 2]]]))
    with pytest.raises(ValueError, match="resamples"):
        mapgen.agreement(table([[1.0]], [[1]]), resamples=-1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        mapgen.agreement(table([[1.0]], [[1]]), n_resamples=10)  # type: ignore[call-arg]


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "krippendorff", None)
    with pytest.raises(ImportError, match=r"krippendorff.*pip install 'mapgen\[judges\]'"):
        mapgen.agreement(table([[1.0, 2.0]], [[1, 2]]), resamples=0)


def test_agreement_of_a_real_label_run(fault_server) -> None:
    """A label step's own `rating` column (JudgeLM's two scores per row, from a scripted judge over HTTP),
    against people's ratings of the same answers."""
    fault_server.configure(
        api_key=fault_server.api_key,
        replies=[
            {"model": "writer", "contains": "fruit", "reply": ["Apple", "Stone"]},
            {"model": "writer", "contains": "colour", "reply": ["Teal", "Seven"]},
            {"model": "writer", "contains": "planet", "reply": ["Mars", "Moon"]},
            {"model": "judge", "contains": "Apple", "reply": "9 2\nA stone is no fruit."},
            {"model": "judge", "contains": "Teal", "reply": "6 6\nBoth fine."},
            {"model": "judge", "contains": "Mars", "reply": "not a score"},  # a rating the judge fails
        ],
    )

    def llm(model: str) -> mapgen.OpenAILLM:
        return mapgen.OpenAILLM(model, base_url=fault_server.base_url, api_key=fault_server.api_key)

    prompts = ["Name a fruit.", "Name a colour.", "Name a planet."]
    ds = datasets.Dataset.from_dict({"input": prompts})
    ds = ds.map(mapgen.generate(llm("writer"), num_generations=2), batched=True)
    ds = ds.map(mapgen.label(llm("judge"), mapgen.JudgeLMTask()), batched=True)
    assert ds["rating"] == [[9.0, 2.0], [6.0, 6.0], [None, None]]
    ds = ds.add_column("human_rating", [[8.0, 1.0], [7.0, 2.0], [9.0, 4.0]])
    ds = ds.add_column("human_ratings", [[[8, 8], [1, 1]], [[7, 7], [2, 2]], [[9, 9], [4, 4]]])
    result = mapgen.agreement(ds, resamples=100)
    # Four answers rated on both sides; people ordered both pairs, the judge agrees on one and ties one.
    assert (result.n, result.rows, result.pairs) == (4, 2, 2)
    assert result.pairwise_accuracy == 1.0 and result.pairwise_ties == 0.5
    assert result.exact == 0.0 and result.within_one == 0.75  # 9-8, 2-1 and 6-7 are one apart; 6-2 four
    expected = cohen_kappa_score([8, 1, 7, 2], [9, 2, 6, 6], labels=list(range(1, 10)), weights="quadratic")
    assert result.kappa == pytest.approx(expected, abs=1e-9)
    assert result.spearman == pytest.approx(spearmanr([9, 2, 6, 6], [8, 1, 7, 2]).statistic, abs=1e-9)
    assert result.annotators_alpha == 1.0  # the two people agree on every answer


def test_ratings_on_no_scale_are_refused_before_a_table_is_built():
    ds = datasets.Dataset.from_dict({"rating": [[1e9, 2], [1, 3]], "human_rating": [[4, 1], [2, 2]]})
    with pytest.raises(ValueError, match="span more than the 1001 whole scores"):
        mapgen.agreement(ds, resamples=10)
    wide = datasets.Dataset.from_dict({"rating": [[0, 100], [50, 60]], "human_rating": [[1, 99], [40, 70]]})
    assert mapgen.agreement(wide, resamples=10).n == 4  # a 0-100 scale is fine
