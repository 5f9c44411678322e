"""How far a judge agrees with people: a judge's ratings against human ratings of the same answers.

The unit is one answer (a row's generation) that both the judge and people rated; rows are the clusters
the bootstrap resamples, so the answers to one prompt (and their pairs) stay together.

Sources: Cohen, J. (1968), "Weighted kappa: Nominal scale agreement with provision for scaled
disagreement or partial credit", Psychological Bulletin 70(4); Krippendorff, K. (2004), *Content
Analysis: An Introduction to Its Methodology* (2nd ed.), and (2011) "Computing Krippendorff's
Alpha-Reliability" (the ordinal metric); Zheng, L. et al. (2023), "Judging LLM-as-a-Judge with MT-Bench
and Chatbot Arena", NeurIPS Datasets and Benchmarks (agreement of a judge with people, and of people with
each other, as its ceiling); Efron, B. and Tibshirani, R. (1993), *An Introduction to the Bootstrap*
(percentile intervals).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mapgen.core.keywords import checked_keywords
from mapgen.core.optional import optional_import
from mapgen.errors import MissingColumnError

METRICS = (
    "kappa",
    "alpha",
    "spearman",
    "kendall",
    "pairwise_accuracy",
    "pairwise_ties",
    "exact",
    "within_one",
    "annotators_alpha",
)
"""The figures :class:`Agreement` gives an interval for, in its table's order."""

_EXTRA, _FEATURE = "judges", "mapgen.agreement"
_LABELS = {
    "kappa": "kappa (Cohen, quadratic)",
    "alpha": "alpha (Krippendorff, ordinal)",
    "spearman": "spearman",
    "kendall": "kendall (tau-b)",
    "pairwise_accuracy": "pairwise_accuracy",
    "pairwise_ties": "pairwise_ties",
    "exact": "exact",
    "within_one": "within_one",
    "annotators_alpha": "annotators' alpha (ceiling)",
}


@dataclass(frozen=True)
class Agreement:
    """A judge's agreement with people (:func:`agreement`); ``str()`` (or ``print``) is its table.

    Every figure is a float, 1 for full agreement (0 for chance level, below it for less; the shares run
    from 0 to 1), and ``nan`` where it is undefined (the table says ``undefined``): no answer rated by
    both, one score only on either side (kappa, alpha and the correlations need some spread), no pair that
    people ordered and the judge did not tie, or no answer with two annotators.

    - ``n``: answers (row and generation) that both the judge and people rated; ``rows``: the rows they
      come from;
    - ``kappa``: Cohen's kappa with quadratic weights (Cohen 1968) on whole scores,
      ``1 - Σ w·O / Σ w·E`` over the table of (people, judge) scores, ``O`` the observed shares, ``E``
      the shares chance would give from each side's own spread, ``w = (i - j)²``;
    - ``alpha``: Krippendorff's alpha, ordinal, with the judge and the people as its two coders:
      ``1 - D_o / D_e``, the observed disagreement over the disagreement expected by chance, a
      disagreement between two scores counting the ratings that lie between them (Krippendorff 2011);
    - ``spearman``, ``kendall``: rank correlations (Kendall's tau-b, which allows ties) over the ``n``
      answers, on the ratings as written;
    - ``pairwise_accuracy``: of the pairs of answers to one prompt that people ordered (rated apart), the
      share the judge orders the same way, among those it does not tie; ``pairs``: the pairs people
      ordered; ``pairwise_ties``: the share of them the judge tied. ``pairwise_accuracy`` is MT-Bench's
      agreement "without tie" (Zheng et al. 2023: pairs either side tied left out); its "with tie" counts
      a tie as a third verdict, which never matches a pair people ordered, and on these pairs is
      ``pairwise_accuracy * (1 - pairwise_ties)`` (0 where the judge tied them all; MT-Bench also counts
      the pairs people tied, a tie by both a match, which this table does not read);
    - ``exact``, ``within_one``: the share of answers whose whole scores are equal, or at most one apart;
    - ``annotators_alpha``: Krippendorff's alpha (ordinal) among the annotators themselves on the same
      answers: the ceiling a judge can reach (``None`` without an annotator column); ``annotators_n``:
      the answers with at least two annotators' ratings, the only ones that alpha reads;
    - ``intervals``: ``{name: (low, high)}`` for each figure above, a percentile bootstrap interval at
      ``confidence`` from ``resamples`` resamples of rows drawn with ``seed``; ``(nan, nan)`` where the
      figure is undefined or no resample was drawn;
    - ``rounded``: some rating was not a whole score, and kappa, alpha, exact and within-one read it at its
      nearest score (half up).

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({
        ...     "rating": [[4.0, 2.0], [5.0, 5.0]], "human_rating": [[5, 2], [4, 1]]
        ... })
        >>> found = agreement(ds, resamples=0)  # no resamples: no intervals
        >>> found.n, found.rows, found.pairs, found.pairwise_accuracy, found.pairwise_ties, found.exact
        (4, 2, 2, 1.0, 0.5, 0.25)
        >>> found.intervals["exact"], found.annotators_alpha  # no `human_ratings` column: no ceiling
        ((nan, nan), None)
    """

    n: int
    rows: int
    kappa: float
    alpha: float
    spearman: float
    kendall: float
    pairwise_accuracy: float
    pairwise_ties: float
    pairs: int
    exact: float
    within_one: float
    annotators_alpha: float | None
    annotators_n: int
    intervals: Mapping[str, tuple[float, float]]
    judge: str = "rating"
    human: str = "human_rating"
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    rounded: bool = False

    def lines(self) -> list[tuple[str, str, str]]:
        """The table's ``(figure, value, interval)`` lines: a header, ``n``, then one per figure of
        :data:`METRICS` (``annotators_alpha`` only with an annotator column), as ``str()`` prints them.

        Example:
            >>> import datasets
            >>> ds = datasets.Dataset.from_dict({"rating": [[4.0, 2.0]], "human_rating": [[5, 2]]})
            >>> header, n, kappa, *others = agreement(ds, resamples=0).lines()
            >>> n
            ('n', '2', 'answers rated by `rating` and `human_rating`, in 1 row')
            >>> kappa  # 1 - 0.5 / 3.5 (weighted disagreement seen, by chance); no resamples: no interval
            ('kappa (Cohen, quadratic)', '0.857', '')
        """
        percent, rows = f"{self.confidence:.0%}", "row" if self.rows == 1 else "rows"
        lines = [
            ("", "value", f"{percent} interval"),
            ("n", str(self.n), f"answers rated by `{self.judge}` and `{self.human}`, in {self.rows} {rows}"),
        ]
        for name in METRICS:
            value = getattr(self, name)
            if value is None:
                continue
            note = _interval(self.intervals.get(name, (math.nan, math.nan)))
            if name == "pairwise_accuracy":
                note += f"  of {self.pairs} pairs people ordered"
            elif name == "annotators_alpha":
                note += f"  on {self.annotators_n} answers with 2+ annotators"
            lines.append((_LABELS[name], _number(value), note))
        return lines

    def __str__(self) -> str:
        lines = self.lines()
        first = max(len(name) for name, _, _ in lines)
        second = max(len(value) for _, value, _ in lines)
        return "\n".join(
            f"{name:<{first}}  {value:>{second}}  {note}".rstrip() for name, value, note in lines
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter show the table
        printer.text(str(self))


@checked_keywords
def agreement(
    ds: Any,
    judge: str = "rating",
    human: str = "human_rating",
    *,
    annotators: str | None = "human_ratings",
    seed: int = 0,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> Agreement:
    """How far the judge's ratings in column ``judge`` agree with people's in column ``human``, on the
    answers both rated (:class:`Agreement`; ``print`` it for the table).

    Shapes (``ds`` a ``datasets.Dataset``, or anything with ``column_names`` and ``ds[column]``):

    - ``judge`` and ``human``: one rating per generation per row (a list, as a label step writes
      ``rating`` or ``weighted_rating``, and as :func:`mapgen.pull_from_argilla` writes the annotators'
      consensus in ``human_rating``), or one rating per row (a number). ``None`` (or NaN) is "not rated",
      for a generation or a whole row, on either side: that answer is left out.
    - ``annotators``: each annotator's rating beside the consensus, for their own agreement: the ``human``
      column's shape with each rating replaced by the list of the annotators' ratings of that answer
      (``[[4, 5], [2, 2]]`` for a row of two generations rated by two people; ``None`` where nobody
      rated). Their order within a list does not matter (alpha pairs every two ratings of an answer).
      Read when the column exists; by default ``human_ratings``, which the pull writes; ``None`` skips it.

    A weighted (float) rating is a finer ordering, so the correlations and the pairwise accuracy read
    ratings as written; kappa, alpha, exact and within-one compare categories, so they read each rating at
    its nearest whole score (half up, as the card's rating chart does: 3.5 counts as 4), on a scale from
    the lowest to the highest score seen, whose every step is one unit apart.

    ``seed`` draws the ``resamples`` bootstrap resamples of rows (``0`` resamples: no intervals); the
    interval is the central ``confidence`` of the resampled figures, resamples where a figure is undefined
    left out. Each resample computes every figure again with the libraries (a few milliseconds for a few
    thousand answers), so the default 1000 take seconds.

    Raises:
        MissingColumnError: ``judge`` or ``human`` is not a column (or ``annotators``, named otherwise than
            by default); the message lists the columns.
        ValueError: a row's judge and human ratings are not of one shape (a list of another length, a list
            beside a number), a rating is not a number, or ``resamples`` / ``confidence`` is out of range.
        ImportError: scipy, scikit-learn or krippendorff is missing: ``pip install 'mapgen[judges]'``.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({
        ...     "rating": [[5.0, 2.0, 3.0], [4.0, 4.0, 1.0], [2.0, 5.0, None], None],
        ...     "human_rating": [[5, 1, 3], [5, 4, 1], [1, 4, 2], [3, 3, 3]],
        ... })
        >>> result = agreement(ds, resamples=200)
        >>> result.n, result.rows, result.pairs, round(result.kappa, 3), result.exact
        (8, 3, 7, 0.895, 0.5)
        >>> result.pairwise_accuracy, round(result.pairwise_ties, 3)
        (1.0, 0.143)
        >>> round(result.pairwise_accuracy * (1 - result.pairwise_ties), 3)  # MT-Bench's "with tie": 6 of 7
        0.857
        >>> print(result)  # doctest: +ELLIPSIS
                                       value  95% interval
        n                                  8  answers rated by `rating` and `human_rating`, in 3 rows
        kappa (Cohen, quadratic)       0.895  [...]
        ...
        pairwise_accuracy              1.000  [...]  of 7 pairs people ordered
        ...
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"resamples must be a whole number >= 0, got {resamples!r}.")
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (0.95 for a 95% interval), got {confidence!r}.")
    present = list(ds.column_names)
    missing = [column for column in (judge, human) if column not in present]
    if annotators is not None and annotators not in present and annotators != "human_ratings":
        missing.append(annotators)
    if missing:
        raise MissingColumnError(
            f"agreement needs column(s) {missing}, which the dataset does not have (columns: {present}). "
            "Label it with mapgen.label(...) and pull people's ratings with mapgen.pull_from_argilla(...), "
            "or name the columns."
        )
    per_annotator = annotators is not None and annotators in present
    table = _Table.read(
        list(ds[judge]),
        list(ds[human]),
        list(ds[annotators]) if per_annotator and annotators is not None else None,
        (judge, human, annotators or ""),
    )
    figures = table.figures(np.arange(table.rows))
    intervals = table.intervals(figures, seed, resamples, confidence)
    return Agreement(
        n=table.n,
        rows=table.rows,
        kappa=figures["kappa"],
        alpha=figures["alpha"],
        spearman=figures["spearman"],
        kendall=figures["kendall"],
        pairwise_accuracy=figures["pairwise_accuracy"],
        pairwise_ties=figures["pairwise_ties"],
        pairs=table.pairs,
        exact=figures["exact"],
        within_one=figures["within_one"],
        annotators_alpha=figures["annotators_alpha"] if per_annotator else None,
        annotators_n=table.annotators_n,
        intervals={name: intervals[name] for name in METRICS if per_annotator or name != "annotators_alpha"},
        judge=judge,
        human=human,
        confidence=float(confidence),
        resamples=resamples,
        seed=seed,
        rounded=table.rounded,
    )


@dataclass(frozen=True)
class _Table:
    """The answers both rated, as arrays, grouped by row for the bootstrap.

    The categorical figures are read from counts, which a resample only re-indexes: the (people, judge)
    pairs of whole scores that kappa reads (scikit-learn's ``sample_weight``), and per answer how many
    ratings gave each score, which is what Krippendorff's alpha reads (its ``value_counts``).
    """

    judge: np.ndarray  # ratings as written, one per answer
    human: np.ndarray
    scale: np.ndarray  # every whole score from the lowest to the highest the judge or people gave
    codes: np.ndarray  # each answer's (people, judge) pair of whole scores, as one index into scale²
    counts: np.ndarray  # (answers, len(scale)): the judge's and people's whole scores, counted
    coder_scale: np.ndarray  # the same for the annotators, with no annotator column empty
    coder_counts: np.ndarray
    starts: np.ndarray  # (rows,): each row's first answer; a row's answers are contiguous
    sizes: np.ndarray  # (rows,): how many answers each row has (1 or more)
    outcomes: np.ndarray  # (rows, 3): pairs people ordered that the judge agrees on, reverses, ties
    rounded: bool

    @classmethod
    def read(
        cls,
        judge: Sequence[Any],
        human: Sequence[Any],
        annotators: Sequence[Any] | None,
        names: tuple[str, str, str],
    ) -> _Table:
        answers: list[tuple[float, float, list[float]]] = []
        sizes: list[int] = []
        for index, (judged, rated) in enumerate(zip(judge, human, strict=True)):
            row = _answers(index, judged, rated, annotators[index] if annotators else None, names)
            if row:
                sizes.append(len(row))
                answers += row
        size = np.array(sizes, dtype=np.int64)
        start = np.cumsum(size) - size
        judged_values = np.array([j for j, _, _ in answers], dtype=float)
        rated_values = np.array([h for _, h, _ in answers], dtype=float)
        given = [np.array(a, dtype=float) for _, _, a in answers]
        whole_judged, whole_rated = _whole(judged_values), _whole(rated_values)
        scale = _scale(np.concatenate([whole_judged, whole_rated]))
        coder_scale = _scale(np.concatenate([_whole(a) for a in given]) if given else np.array([]))
        counts = np.zeros((len(answers), len(scale)), dtype=np.int64)
        coder_counts = np.zeros((len(answers), len(coder_scale)), dtype=np.int64)
        low, low_coder = (scale[0] if scale.size else 0), (coder_scale[0] if coder_scale.size else 0)
        for answer, ratings in enumerate(given):
            np.add.at(coder_counts[answer], (_whole(ratings) - low_coder).astype(int), 1)
        positions = np.arange(len(answers))
        np.add.at(counts, (positions, (whole_judged - low).astype(int)), 1)
        np.add.at(counts, (positions, (whole_rated - low).astype(int)), 1)
        codes = ((whole_rated - low) * len(scale) + (whole_judged - low)).astype(int)
        outcomes = np.array(
            [
                _outcomes(judged_values[a : a + n], rated_values[a : a + n])
                for a, n in zip(start, size, strict=True)
            ],
            dtype=float,
        )
        every = np.concatenate([judged_values, rated_values, *given])
        return cls(
            judge=judged_values,
            human=rated_values,
            scale=scale,
            codes=codes,
            counts=counts,
            coder_scale=coder_scale,
            coder_counts=coder_counts,
            starts=start,
            sizes=size,
            outcomes=outcomes.reshape(len(size), 3),
            rounded=bool(np.any(_whole(every) != every)),
        )

    @property
    def n(self) -> int:
        return int(self.judge.size)

    @property
    def rows(self) -> int:
        return len(self.sizes)

    @property
    def pairs(self) -> int:
        return int(self.outcomes.sum())

    @property
    def annotators_n(self) -> int:
        return int((self.coder_counts.sum(axis=1) >= 2).sum())

    def figures(self, rows: np.ndarray) -> dict[str, float]:
        """Every figure, on the answers of ``rows`` (row indices, repeats allowed)."""
        chosen = self.answers(rows)
        judged, rated = self.judge[chosen], self.human[chosen]
        apart = np.abs(_whole(judged) - _whole(rated))
        agree, reverse, tie = (float(count) for count in self.outcomes[rows].sum(axis=0))
        untied, ordered = agree + reverse, agree + reverse + tie
        return {
            "kappa": _kappa(np.bincount(self.codes[chosen], minlength=len(self.scale) ** 2), self.scale),
            "alpha": _alpha(self.counts[chosen], self.scale),
            "spearman": _correlation("spearmanr", judged, rated),
            "kendall": _correlation("kendalltau", judged, rated),
            "pairwise_accuracy": agree / untied if untied else math.nan,
            "pairwise_ties": tie / ordered if ordered else math.nan,
            "exact": _share(apart == 0),
            "within_one": _share(apart <= 1),
            "annotators_alpha": _alpha(self.coder_counts[chosen], self.coder_scale),
        }

    def answers(self, rows: np.ndarray) -> np.ndarray:
        """The answers of ``rows``, by index, row after row in their order: each row's ``start``,
        ``start + 1``... built whole in numpy (a bootstrap draws this once per resample)."""
        sizes = self.sizes[rows]
        ends = np.cumsum(sizes)
        # within each row, the answer's offset from the row's first: a running count less the rows before
        offsets = np.arange(ends[-1] if sizes.size else 0) - np.repeat(ends - sizes, sizes)
        return np.repeat(self.starts[rows], sizes) + offsets

    def intervals(
        self, figures: Mapping[str, float], seed: int, resamples: int, confidence: float
    ) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap intervals, resampling rows with replacement (a cluster bootstrap)."""
        if not self.rows or not resamples:
            return dict.fromkeys(METRICS, (math.nan, math.nan))
        generator = np.random.default_rng(seed)
        drawn: dict[str, list[float]] = {name: [] for name in METRICS}
        for _ in range(resamples):
            for name, value in self.figures(generator.integers(0, self.rows, size=self.rows)).items():
                drawn[name].append(value)
        tail = (1 - confidence) / 2 * 100
        intervals = {}
        for name in METRICS:
            values = np.array(drawn[name])
            values = values[~np.isnan(values)]
            if math.isnan(figures[name]) or not values.size:
                intervals[name] = (math.nan, math.nan)
            else:
                low, high = np.percentile(values, [tail, 100 - tail])
                intervals[name] = (float(low), float(high))
        return intervals


def _answers(
    index: int, judged: Any, rated: Any, given: Any, names: tuple[str, str, str]
) -> list[tuple[float, float, list[float]]]:
    """A row's answers both rated: ``(judge, human, annotators' ratings)`` each."""
    judge, human, annotators = names
    if judged is None or rated is None:
        return []
    listed = isinstance(judged, (list, tuple)), isinstance(rated, (list, tuple))
    if listed[0] != listed[1]:
        shapes = ["a list" if is_list else "a number" for is_list in listed]
        raise ValueError(
            f"Row {index}: `{judge}` holds {shapes[0]} and `{human}` {shapes[1]}: both need one rating per "
            "generation (lists of one length) or one rating per row."
        )
    if not listed[0]:
        judged, rated, given = [judged], [rated], [given]
    elif len(judged) != len(rated):
        raise ValueError(
            f"Row {index}: `{judge}` has {len(judged)} ratings and `{human}` {len(rated)}: they need one "
            "rating per generation each, aligned."
        )
    if given is None:
        given = [None] * len(judged)
    elif not isinstance(given, (list, tuple)) or len(given) != len(judged):
        raise ValueError(
            f"Row {index}: `{annotators}` needs one list of annotators' ratings per rating of `{human}` "
            f"({len(judged)}), got {given!r}."
        )
    answers = []
    for j, h, a in zip(judged, rated, given, strict=True):
        j_value, h_value = _rating(index, judge, j), _rating(index, human, h)
        if j_value is None or h_value is None:
            continue
        if a is not None and not isinstance(a, (list, tuple)):
            raise ValueError(f"Row {index}: `{annotators}` needs a list of ratings per answer, got {a!r}.")
        each = [_rating(index, annotators, value) for value in a or []]
        answers.append((j_value, h_value, [value for value in each if value is not None]))
    return answers


def _rating(index: int, column: str, value: Any) -> float | None:
    if value is None:
        return None
    if type(value) in (float, int):  # what datasets gives; numbers.Real (numpy's too) is a slower check
        return None if value != value else float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        nested = "; a list within a generation's entry is not read" if isinstance(value, list) else ""
        raise ValueError(
            f"Row {index}: `{column}` holds {value!r}, which is not a rating (a number, or None){nested}."
        )
    return None if math.isnan(value) else float(value)


def _whole(values: np.ndarray) -> np.ndarray:
    """The nearest whole scores, half up (numpy's own rounding goes to even: 2.5 would be 2)."""
    return np.floor(values + 0.5)


def _outcomes(judged: np.ndarray, rated: np.ndarray) -> tuple[int, int, int]:
    """Of one row's pairs that people ordered: how many the judge orders alike, reversed, or ties."""
    agree = reverse = tie = 0
    for first in range(len(rated)):
        for second in range(first + 1, len(rated)):
            people = np.sign(rated[first] - rated[second])
            if people == 0:
                continue
            judge = np.sign(judged[first] - judged[second])
            agree, reverse, tie = agree + (judge == people), reverse + (judge == -people), tie + (judge == 0)
    return agree, reverse, tie


def _kappa(pairs: np.ndarray, scale: np.ndarray) -> float:
    """Quadratic-weighted kappa of ``pairs``: how many answers got each (people, judge) pair of scores,
    flattened from a ``len(scale)`` × ``len(scale)`` table."""
    # scikit-learn weighs by the labels' positions, not their values: every whole score of the range is
    # listed, so that positions are values (scores seen 1, 2 and 4 would make 2 and 4 neighbours).
    metrics = optional_import("sklearn.metrics", _EXTRA, _FEATURE)
    if pairs.sum() < 2:
        return math.nan
    seen = np.flatnonzero(pairs)
    rated, judged = scale[seen // len(scale)], scale[seen % len(scale)]
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # undefined (one score on both sides): NaN, said in the docs
        value = metrics.cohen_kappa_score(
            rated, judged, labels=scale, weights="quadratic", sample_weight=pairs[seen]
        )
    return float(value) if np.isfinite(value) else math.nan


def _alpha(counts: np.ndarray, scale: np.ndarray) -> float:
    """Ordinal Krippendorff's alpha of ``counts``: per answer, how many ratings gave each score of
    ``scale``. Scores of the scale nobody gave change nothing (the ordinal metric counts ratings)."""
    krippendorff = optional_import("krippendorff", _EXTRA, _FEATURE)
    if not np.any(counts.sum(axis=1) >= 2) or len(np.flatnonzero(counts.sum(axis=0))) < 2:
        return math.nan  # no answer rated twice, or one score only: nothing to agree on
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        value = krippendorff.alpha(value_counts=counts, value_domain=scale, level_of_measurement="ordinal")
    return float(value) if np.isfinite(value) else math.nan


def _correlation(name: str, judged: np.ndarray, rated: np.ndarray) -> float:
    stats = optional_import("scipy.stats", _EXTRA, _FEATURE)
    if judged.size < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant side: NaN
        value = getattr(stats, name)(judged, rated).statistic
    return float(value) if np.isfinite(value) else math.nan


MAX_SCALE = 1001
"""The most whole scores a scale may span (0 to 1000): kappa and alpha keep a table over every one."""


def _scale(scores: np.ndarray) -> np.ndarray:
    """Every whole score from the lowest to the highest of ``scores``.

    Raises:
        ValueError: they span more than :data:`MAX_SCALE` scores (a stray value, or rewards on no scale).
    """
    if not scores.size:
        return np.array([])
    low, high = scores.min(), scores.max()
    if high - low + 1 > MAX_SCALE:
        raise ValueError(
            f"ratings from {low:g} to {high:g} span more than the {MAX_SCALE} whole scores agreement can "
            "compare (kappa and alpha tabulate every score between): look for a stray value, or rescale them."
        )
    return np.arange(low, high + 1)


def _share(hits: np.ndarray) -> float:
    return float(np.mean(hits)) if hits.size else math.nan


def _number(value: float) -> str:
    return "undefined" if math.isnan(value) else f"{value:.3f}"


def _interval(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return "" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"
