"""What a map wrote, told as it is: answers, failures by kind, cut answers, retries, reuse, tokens, cost.

:func:`summary` reads it all from the dataset's own columns (the answer metadata and error columns mapgen
writes), so it works on a dataset loaded from disk or the Hub; the ``mapgen`` command prints it after a run,
with what only the run itself knows (requests sent: :class:`RunCounts`, from :data:`mapgen.counters` taken
before and after the map).

Example:
    >>> failures_by_kind(["http_429: slow down", None, "parse: no rating", "parse: empty"])
    Counter({'parse': 2, 'http_429': 1})
    >>> describe_failures(failures_by_kind(["http_429: slow down", "parse: no rating", "parse: empty"]))
    '3 (parse 2, http_429 1)'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mapgen.core.keywords import checked_keywords
from mapgen.core.request import CUT_AT_LIMIT
from mapgen.core.units import format_cost, format_usd
from mapgen.errors import error_kind, error_kinds
from mapgen.report.totals import ModelUsage, answer_metadata, metadata_columns

UNCLASSIFIED = "other"
"""The kind shown for an error text that does not start with a kind code."""

# A labelling error's part about one text: "parse: text 2: ..." (its kind, then the text's number).
_TEXT_PART = re.compile(r"^[a-z0-9_]+: text (\d+): ")


def failures_by_kind(errors: Iterable[str | None]) -> Counter[str]:
    """How many failed answers of each kind (:mod:`mapgen.errors`) an error column's values hold."""
    return Counter(error_kind(error) or UNCLASSIFIED for error in errors if error is not None)


def describe_failures(kinds: Counter[str]) -> str:
    """``"3 (parse 2, http_429 1)"``, most frequent kind first; ``"0"`` when nothing failed."""
    total = sum(kinds.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common()) + ")"


def rating_failures(generations: list[Any], ratings: list[Any], error: str | None) -> Counter[str]:
    """The kinds of one row's missing ratings: one per generation that has a text but no rating.

    A labelling error covers a row; its ``"; "``-separated parts each start with their kind and may name
    a text (``"parse: text 2: ..."``), else the row's first kind applies to every missing rating.

    Example:
        >>> rating_failures(["a", "b", None], [4.0, None, None], "parse: text 2: no rating")
        Counter({'parse': 1})
    """
    parts = [part for part in (error or "").split("; ") if part]
    by_text: dict[int, str] = {}
    row_kind = None
    for part in parts:
        match = _TEXT_PART.match(part)
        kind = error_kind(part) or UNCLASSIFIED
        if match:
            by_text[int(match.group(1)) - 1] = kind
        row_kind = row_kind or kind
    missing = [
        i
        for i, text in enumerate(generations or [])
        if text is not None and (ratings is None or i >= len(ratings) or ratings[i] is None)
    ]
    return Counter(by_text.get(i, row_kind or UNCLASSIFIED) for i in missing)


@dataclass(frozen=True)
class RunCounts:
    """What one map moved :data:`mapgen.counters` by (``requests``, ``reused``, ``failed``, ``retries``),
    and whether ``datasets`` served it from its cache.

    ``datasets`` returns a map it computed before from its cache files without calling the function:
    then no counter moves, and the cache files it returns were written before the map started. A map
    whose function ran moves a counter for every row (a request, a reused answer, or a failure).

    Example:
        >>> same = {"requests": 2, "reused": 0, "failed": 0, "retries": 0}
        >>> RunCounts.between(same, same, cache_files_predate=True).lines(rows=4)[1]
        ("datasets' cache", "this map came whole from datasets' cache (nothing was sent or re-read)")
    """

    moved: Mapping[str, int]
    cache_files_predate: bool = False
    """Whether the map returned cache files that all existed before it started (none: ``False``)."""

    @classmethod
    def between(
        cls, before: Mapping[str, int], after: Mapping[str, int], *, cache_files_predate: bool = False
    ) -> RunCounts:
        return cls({name: after[name] - before.get(name, 0) for name in after}, cache_files_predate)

    def __getitem__(self, name: str) -> int:
        return self.moved.get(name, 0)

    def from_datasets_cache(self, rows: int) -> bool:
        """Whether a map that returned ``rows`` rows was served whole from datasets' cache."""
        return rows > 0 and self.cache_files_predate and not any(self.moved.values())

    def lines(
        self, *, rows: int, failed: int = 0, retry: str = "pass --retry-failed"
    ) -> list[tuple[str, str]]:
        """What only the run itself knows, beside :func:`summary`'s table of the dataset: ``requests sent``
        over every ``num_proc`` worker, ``re-asks`` where there were some, and whether ``datasets`` served
        the whole map from its cache (then the dataset's numbers are those of the run that made it).

        A map served from datasets' cache keeps the ``failed`` answers it had: the line says so, and
        ``retry``, how to send them again (in Python: ``ds.map(..., load_from_cache_file=False)``).
        """
        if self.from_datasets_cache(rows):
            cached = "this map came whole from datasets' cache (nothing was sent or re-read)"
            if failed:
                cached += f"; its {failed} failed answer(s) were not retried: {retry} to send them again"
            return [("requests sent", "0"), ("datasets' cache", cached)]
        if rows > 0 and not any(self.moved.values()):
            # The function ran where this process's counters cannot see: workers started with spawn.
            return [("requests sent", "not counted (the num_proc workers were not forked from this process)")]
        reasks = f"{self['reasks']} (answers that failed their answer model)"
        return [("requests sent", str(self["requests"])), *([("re-asks", reasks)] if self["reasks"] else [])]


def shorten(values: list[Any], width: int = 60) -> str:
    """A list cell as one short line: floats to 2 decimals, long texts cut with an ellipsis.

    Example:
        >>> shorten([1.0, None, "a  long\\ntext"])
        '1.00 | None | a long text'
    """

    def one(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        text = " ".join(str(value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    return " | ".join(one(v) for v in values)


def table(lines: list[tuple[str, Any]]) -> str:
    """Name/value lines with the values aligned (two spaces at least between them)."""
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


GENERATION_METADATA = "generation_metadata"
"""A generate step's metadata column: its cut answers can be re-asked alone (``redo``)."""
RATED_TEXTS, RATINGS = "generations", "rating"
"""A label step's texts and their ratings, as mapgen names them: :func:`summary` counts its answers per
text where both are there (else per row)."""
_BATCH = 10_000
"""Rows read into Python at a time."""
_ADVICE = {
    "price": "set price_per_million=(input, output) on the LLM",
    "max_new_tokens": "a larger max_new_tokens",
    "redo": 'mapgen.generate(..., redo="length") and a larger max_new_tokens',
}


@dataclass
class Summary:
    """What a dataset's mapgen answers add up to; ``str()`` (or ``print``) is the table the CLI prints.

    Each step (a metadata column, :func:`~mapgen.report.totals.metadata_columns`) counts one answer per
    entry of its error column: a generate step one per generation (``generation_errors``), a label step
    one per text it rated (``generations`` beside ``rating``: the row's ``labelling_error`` names the texts
    it could not rate), or one per row where those columns are named otherwise.

    - ``rows``: the dataset's rows;
    - ``answers`` of ``asked``: entries that got an answer the task read, of the entries asked for;
    - ``failed``: ``{kind: count}`` of the failed ones, by the kinds of :mod:`mapgen.errors` (``http_429``,
      ``parse``, ``length``...; a label step's row counts each kind it names once);
    - ``truncated``: answers cut at the token limit (``finish_reason`` ``length``, or the provider's own
      word: :data:`~mapgen.core.request.CUT_AT_LIMIT`), read or not;
    - ``retries``: how many times requests were sent again (429s, 5xx, timeouts), ``None`` where the
      metadata was written before mapgen recorded them;
    - ``reused``: answers read from the response store instead of requested;
    - ``prompt_tokens``, ``completion_tokens`` and ``tokens`` (their sum), and ``cost`` in USD, of the
      answers requested (reused ones cost nothing now; ``None`` where none had a price, and ``unpriced``
      answers had none).
    """

    rows: int = 0
    answers: int = 0
    asked: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    retries: int | None = 0
    reused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    unpriced: int = 0
    steps: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each metadata column counted: ``(answers, asked)``."""
    cut: dict[str, tuple[bool, list[str]]] = field(default_factory=dict)
    """The metadata columns with cut answers: whether each holds a list per row, and the finish reasons."""

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens of the answers requested."""
        return self.prompt_tokens + self.completion_tokens

    def lines(self, advice: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """The table's ``(name, value)`` lines; ``advice`` words the fixes they name for another surface
        (the CLI's flags): ``price`` (default ``set price_per_million=(input, output) on the LLM``),
        ``max_new_tokens`` (default ``a larger max_new_tokens``) and ``redo``, how to re-ask only a generate
        step's cut answers (default ``mapgen.generate(..., redo="length") and a larger max_new_tokens``)."""
        advice = {**_ADVICE, **(advice or {})}
        answers = f"{self.answers:,} of {self.asked:,}"
        if len(self.steps) > 1:
            each = ", ".join(f"{column} {got:,} of {of:,}" for column, (got, of) in self.steps.items())
            answers += f" ({each})"
        if self.retries is None:
            retries = "unknown (the metadata was written before mapgen recorded retries)"
        else:
            retries = f"{self.retries:,}"
        if self.cost is not None:
            cost = format_cost(self.cost, self.unpriced)
        elif self.unpriced:
            cost = f"unknown: no price for this model ({advice['price']})"
        else:
            cost = format_usd(0)
        return [
            ("rows", f"{self.rows:,}"),
            ("answers", answers),
            ("failed answers", describe_failures(Counter(self.failed))),
            ("truncated", self._truncated_line(advice)),
            ("retries", retries),
            ("answers reused", f"{self.reused:,} from the response store"),
            ("tokens", f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion"),
            ("cost", cost),
        ]

    def _truncated_line(self, advice: Mapping[str, str]) -> str:
        if not self.truncated:
            return "0"
        column, (is_list, reasons) = next(iter(self.cut.items()))
        test = (
            f"m['finish_reason'] in {reasons!r}"
            if len(reasons) > 1
            else f"m['finish_reason'] == {reasons[0]!r}"
        )
        if is_list:
            select = f"lambda row: any(m and {test} for m in row[{column!r}])"
        else:
            select = f"lambda row: (m := row[{column!r}]) is not None and {test}"
        if column == GENERATION_METADATA:  # redo re-asks them alone, keeping every other answer
            return (
                f"{self.truncated:,} answer(s) cut at max_new_tokens: re-ask only them with {advice['redo']} "
                f"(their rows: ds.filter({select}))"
            )
        return (
            f"{self.truncated:,} answer(s) cut at max_new_tokens; select their rows with "
            f"ds.filter({select}) and map them again with {advice['max_new_tokens']} (part of the store key: "
            "only they are sent again)"
        )

    def __str__(self) -> str:
        return table(self.lines())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter show the table
        printer.text(str(self))


@checked_keywords
def summary(ds: Any, *, columns: Sequence[str] | None = None) -> Summary:
    """What a dataset's mapgen answers add up to: rows, answers, failures by kind, answers cut at
    ``max_new_tokens``, retries, answers reused, tokens and cost (:class:`Summary`; ``print`` it for the
    table the ``mapgen`` command prints after a run).

    Read from the dataset's own columns (each answer's metadata and the step's error column), so it works
    on a dataset loaded from disk or the Hub, after ``select``, ``filter`` or :func:`mapgen.flatten`.
    ``ds`` is a ``datasets.Dataset`` or a ``DatasetDict`` (every split); ``columns`` limits it to those
    metadata columns (``["labelling_metadata"]``: the label step alone), default every one mapgen wrote.

    Raises:
        ValueError: a column in ``columns`` is not mapgen's answer metadata.

    Example:
        >>> import datasets
        >>> meta = {"finish_reason": "length", "prompt_tokens": 10, "completion_tokens": 5,
        ...         "from_store": False, "cost": 0.002, "retries": 1}
        >>> failed = dict.fromkeys(meta) | {"from_store": False, "retries": 8}  # no answer after 8 retries
        >>> ds = datasets.Dataset.from_dict({
        ...     "generation_errors": [[None, "http_429: HTTP 429: slow down (after 9 attempts)"]],
        ...     "generation_metadata": [[meta, failed]]})
        >>> result = summary(ds)
        >>> result.answers, result.failed, result.truncated, result.retries, result.cost
        (1, {'http_429': 1}, 1, 9, 0.002)
        >>> print(result)  # doctest: +ELLIPSIS
        rows            1
        answers         1 of 2
        failed answers  1 (http_429 1)
        truncated       1 answer(s) cut at max_new_tokens: re-ask only them with mapgen.generate(..., redo=...
        retries         9
        answers reused  0 from the response store
        tokens          10 prompt + 5 completion
        cost            $0.002000
    """
    result = Summary()
    total = ModelUsage()
    splits = list(ds.values()) if hasattr(ds, "values") and not hasattr(ds, "features") else [ds]
    for split in splits:
        _add_split(result, total, split, columns)
    result.prompt_tokens, result.completion_tokens = total.prompt_tokens, total.completion_tokens
    result.cost, result.unpriced = total.cost, total.unpriced
    return result


def _add_split(result: Summary, total: ModelUsage, ds: Any, columns: Sequence[str] | None) -> None:
    present = metadata_columns(ds)
    if columns is not None:
        unknown = [column for column in columns if column not in present]
        if unknown:
            raise ValueError(f"{unknown} are not mapgen answer metadata; the dataset's are {present}.")
        present = [column for column in present if column in columns]
    result.rows += len(ds)
    schema = ds.features.arrow_schema
    for column in present:
        errors = _error_column(column, ds.column_names)
        wanted = [column] + ([errors] if errors else [])
        if not _has_retries(schema.field(column).type):
            result.retries = None
        got, asked = result.steps.get(column, (0, 0))
        # A label step rates texts: counted per text rated, where its texts and ratings are in the columns
        # mapgen names them by (the row's error names the texts it could not rate).
        per_text = errors == "labelling_error" and all(
            name in ds.column_names and _is_list(schema.field(name).type) for name in (RATED_TEXTS, RATINGS)
        )
        if per_text:
            wanted += [RATED_TEXTS, RATINGS]
        for batch in ds.select_columns(wanted).with_format("arrow").iter(batch_size=_BATCH):
            metas = batch.column(column).to_pylist()
            for meta in answer_metadata(metas):
                total.add(meta)
                result.reused += bool(meta.get("from_store"))
                if result.retries is not None and not meta.get("from_store"):
                    result.retries += meta.get("retries") or 0
                if meta.get("finish_reason") in CUT_AT_LIMIT:
                    result.truncated += 1
                    kind = schema.field(column).type
                    reasons = result.cut.setdefault(column, (_is_list(kind), []))[1]
                    if meta["finish_reason"] not in reasons:
                        reasons.append(meta["finish_reason"])
            if errors is None:  # renamed away: every answer that came counts as read
                came = sum(1 for _ in answer_metadata(metas))
                got, asked = got + came, asked + came
                continue
            if per_text:
                texts, ratings = batch.column(RATED_TEXTS).to_pylist(), batch.column(RATINGS).to_pylist()
                for row_texts, row_ratings, error in zip(
                    texts, ratings, batch.column(errors).to_pylist(), strict=True
                ):
                    rated = sum(text is not None for text in row_texts or [])
                    missing = rating_failures(row_texts, row_ratings, error)
                    asked, got = asked + rated, got + rated - sum(missing.values())
                    for kind, count in missing.items():
                        result.failed[kind] = result.failed.get(kind, 0) + count
                continue
            for value in batch.column(errors).to_pylist():
                for error in value if isinstance(value, list) else [value]:
                    asked += 1
                    if error is None:
                        got += 1
                    else:
                        for kind in error_kinds(error) or [UNCLASSIFIED]:
                            result.failed[kind] = result.failed.get(kind, 0) + 1
        result.steps[column] = (got, asked)
    result.answers = sum(got for got, _ in result.steps.values())
    result.asked = sum(asked for _, asked in result.steps.values())
    result.failed = dict(Counter(result.failed).most_common())


def _error_column(metadata: str, present: Sequence[str]) -> str | None:
    """A step's error column beside its metadata column: ``generation_errors``, ``labelling_error``."""
    prefix = metadata.removesuffix("_metadata")
    return next((name for name in (f"{prefix}_errors", f"{prefix}_error") if name in present), None)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _has_retries(kind: pa.DataType) -> bool:
    while _is_list(kind):
        kind = kind.value_type
    return kind.get_field_index("retries") >= 0
