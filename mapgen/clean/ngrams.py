"""``mapgen.decontaminate``: flag (or drop) rows that share a word n-gram with a benchmark.

The test of GPT-3's contamination study (Brown et al. 2020, "Language Models are Few-Shot Learners",
Appendix C): a row is contaminated by a benchmark when one of its texts and one of the benchmark's texts
hold the same ``n`` consecutive words, 13 by default as there, after both are normalised the same way.

Normalisation (:func:`words`): Unicode NFKC, lowercased, every run of characters that is not a letter, a
combining mark or a digit (punctuation, symbols, ``_``, whitespace) made one space, then split on spaces;
so ``"Natalia's 48 clips!"`` is ``natalia s 48 clips``. It runs in Arrow (``pyarrow.compute``, RE2's
``\\p{L}``, ``\\p{M}``, ``\\p{N}``), on both sides, so a row and a benchmark are read by one rule. Languages
written without spaces between words (Chinese, Japanese, Thai) make one "word" of a whole clause, and need a
word segmenter first.

Hashing: each distinct word of a batch is hashed once to 64 bits (xxHash's XXH3), and each n-gram is the
polynomial ``sum(word[i + j] * M**(n - 1 - j)) mod 2**64`` over its words (``M`` odd), computed for every
position of a batch at once with numpy: measured on 20,000 texts of 100 words, 0.07 to 0.17 s against 1.2 s
for XXH3 and 3.2 s for 8-byte BLAKE2b digests of each n-gram's joined text in Python. Each benchmark's
distinct n-gram hashes are one sorted ``uint64`` array (8 bytes an n-gram: 8 MB for a million), looked up by
binary search; the dataset itself goes through a batched ``Dataset.map`` (so ``num_proc`` workers and
datasets' cache apply), and memory is the benchmarks' arrays plus one batch, whatever the dataset's size.
Two different n-grams share a 64-bit hash with probability about ``2**-64``: a billion dataset n-grams
against ten million benchmark ones expect under one false flag in a thousand runs.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from mapgen.core.keywords import checked_keywords
from mapgen.errors import MapgenWarning, MissingColumnError
from mapgen.mapping.steps import record_step

COLUMN = "contaminated_by"
"""The column :func:`decontaminate` writes: each row's benchmark names (``[]`` when clean)."""

_NOT_A_WORD = r"[^\p{L}\p{M}\p{N}]+"
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so each word's place in the n-gram changes its hash
_EXAMPLES = 3
_READ_BATCH = 10_000
_EMPTY = np.zeros(0, dtype=np.uint64)


def _tokens(texts: pa.Array) -> pa.Array:
    """Each text's normalised words, a list array aligned with ``texts`` (null for a null text)."""
    spaced = pc.replace_substring_regex(
        pc.utf8_lower(pc.utf8_normalize(texts, form="NFKC")), pattern=_NOT_A_WORD, replacement=" "
    )
    trimmed = pc.utf8_trim(spaced, characters=" ")
    # A text with no word at all has no words, not one empty word (which splitting "" would give).
    return pc.split_pattern(pc.if_else(pc.equal(trimmed, ""), None, trimmed), pattern=" ")


def words(text: str) -> list[str]:
    """The normalised words of ``text`` that n-grams are made of: NFKC, lowercased, every run of characters
    other than letters, combining marks and digits a word boundary.

    Example:
        >>> words("Natalia sold clips to 48 of her friends in April—and then she sold half as many in May!")
        ['natalia', 'sold', 'clips', 'to', '48', 'of', 'her', 'friends', 'in', 'april', 'and', 'then', 'she', 'sold', 'half', 'as', 'many', 'in', 'may']
        >>> words("  It's   <<48/2=24>> ÉCOLE_ﬁ ")
        ['it', 's', '48', '2', '24', 'école', 'fi']
    """  # noqa: E501
    return _tokens(pa.array([text], pa.string()))[0].as_py() or []


def _ngrams(texts: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """The hashes of every ``n``-gram of ``texts``, the index in ``texts`` of the text each comes from, its
    first word's position among all the words, and all the words (flat)."""
    tokens = _tokens(texts)
    flat = pc.list_flatten(tokens)
    if len(flat) < n:
        empty = np.zeros(0, dtype=np.int64)
        return _EMPTY, empty, empty, flat
    owner = pc.list_parent_indices(tokens).to_numpy()
    encoded = pc.dictionary_encode(flat)
    distinct = encoded.dictionary.cast(pa.binary()).to_pylist()
    word_hashes = np.fromiter((xxhash.xxh3_64_intdigest(w) for w in distinct), np.uint64, len(distinct))
    hashed = word_hashes[encoded.indices.to_numpy()]
    count = len(hashed) - n + 1
    ngrams = hashed[:count].copy()
    for offset in range(1, n):  # uint64 arithmetic wraps: the hash is mod 2**64
        ngrams = ngrams * _MULTIPLIER + hashed[offset : offset + count]
    within = owner[:count] == owner[n - 1 :]  # the n words lie in one text
    starts = np.flatnonzero(within)
    return ngrams[starts], owner[starts], starts, flat


def _texts(table: pa.Table, columns: Sequence[str]) -> tuple[pa.Array, np.ndarray]:
    """The texts of ``columns`` (strings, or lists of strings), one after the other, and the row of each."""
    parts, rows = [], []
    for column in columns:
        values = table.column(column).combine_chunks()
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            parts.append(pc.list_flatten(values).cast(pa.large_string()))
            rows.append(pc.list_parent_indices(values).to_numpy().astype(np.int64))
        else:
            parts.append(values.cast(pa.large_string()))
            rows.append(np.arange(len(values), dtype=np.int64))
    return pa.concat_arrays(parts), np.concatenate(rows)


def _hits(hashes: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """Which of ``hashes`` are in the sorted array ``benchmark``."""
    if not len(benchmark) or not len(hashes):
        return np.zeros(len(hashes), dtype=bool)
    at = np.minimum(np.searchsorted(benchmark, hashes), len(benchmark) - 1)
    return benchmark[at] == hashes


@dataclass(frozen=True, eq=False)  # numpy fields: no meaningful == or hash
class _Flagger:
    """The batched map function: adds :data:`COLUMN` to an Arrow batch. Picklable, and fingerprinted by
    datasets from its fields (the benchmarks' hashes included), so a re-run with the same benchmarks is
    read from datasets' cache."""

    columns: tuple[str, ...]
    n: int
    names: tuple[str, ...]
    hashes: tuple[np.ndarray, ...]

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, rows = _texts(batch, self.columns)
        ngrams, owner, _, _ = _ngrams(texts, self.n)
        flagged: list[list[str]] = [[] for _ in range(batch.num_rows)]
        for name, benchmark in zip(self.names, self.hashes, strict=True):
            for row in np.unique(rows[owner[_hits(ngrams, benchmark)]]).tolist():
                flagged[row].append(name)
        if COLUMN in batch.column_names:  # an earlier run's flags stay; the benchmarks checked now are redone
            earlier = batch.column(COLUMN).to_pylist()
            pairs = zip(earlier, flagged, strict=True)
            flagged = [[n for n in old or [] if n not in self.names] + new for old, new in pairs]
            column = pa.array(flagged, pa.list_(pa.string()))
            return batch.set_column(batch.column_names.index(COLUMN), COLUMN, column)
        return batch.append_column(COLUMN, pa.array(flagged, pa.list_(pa.string())))


@dataclass
class BenchmarkOverlap:
    """What :func:`decontaminate` found for one benchmark."""

    texts: int
    """The benchmark's texts read (its rows times its text columns, list entries counted one by one)."""
    ngrams: int
    """Its distinct n-grams."""
    too_short: int
    """Its texts of fewer than ``n`` words: they hold no n-gram, so they match nothing (a lower ``n`` would
    see them)."""
    flagged: int
    """Rows of the dataset that share an n-gram with it."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """Up to three of those rows: ``{"row": index in the dataset given, "ngram": the shared n-gram,
    normalised}``."""


@dataclass
class DecontaminationReport:
    """What :func:`decontaminate` did: the rows checked, flagged and removed, per benchmark too."""

    rows: int
    """Rows of the dataset given."""
    flagged: int
    """Rows that share an n-gram with at least one benchmark."""
    removed: int
    """Rows dropped: ``flagged`` with ``remove=True``, else 0."""
    benchmarks: dict[str, BenchmarkOverlap]
    """Per benchmark name, as ``against`` gave them."""
    parameters: dict[str, Any]
    """``column``, ``n``, ``against_columns`` (the columns read from each benchmark, ``None`` for a list of
    strings), ``remove``."""

    def __str__(self) -> str:
        n = self.parameters["n"]
        lines = [f"{n}-gram overlap: {self.flagged} of {self.rows} rows flagged, {self.removed} removed"]
        for name, found in self.benchmarks.items():
            example = f"; e.g. {found.examples[0]['ngram']!r}" if found.examples else ""
            lines.append(
                f"  {name}: {found.flagged} flagged ({found.ngrams} n-grams from {found.texts} texts, "
                f"{found.too_short} shorter than {n} words){example}"
            )
        return "\n".join(lines)


def _benchmark_columns(name: str, benchmark: Any, wanted: str | Sequence[str] | None) -> list[str]:
    """The text columns read from a benchmark dataset: those named, or every string (or list of strings)
    column."""
    present = list(benchmark.column_names)
    if wanted is not None:
        columns = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [column for column in columns if column not in present]
        if missing:
            raise MissingColumnError(
                f"decontaminate: benchmark {name!r} has no column(s) {missing}; its columns: {present}. "
                f"Fix against_columns[{name!r}]."
            )
        for column in columns:
            _check_text_column(benchmark, column, f"benchmark {name!r}")
        return columns
    columns = [column for column in present if _is_text(benchmark.data.schema.field(column).type)]
    if not columns:
        raise ValueError(
            f"decontaminate: benchmark {name!r} has no text column (string, or list of strings); its "
            f"columns: {present}."
        )
    return columns


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _check_text_column(ds: Any, column: str, where: str) -> None:
    kind = ds.data.schema.field(column).type
    if not _is_text(kind):
        raise TypeError(
            f"decontaminate: column {column!r} of {where} holds {kind}, not text (strings, or lists of "
            "strings)."
        )


def _read_benchmark(
    name: str, benchmark: Any, columns: list[str] | None, n: int
) -> tuple[np.ndarray, int, int]:
    """A benchmark's sorted distinct n-gram hashes, its texts and those shorter than ``n`` words."""
    if isinstance(benchmark, datasets.Dataset):
        assert columns is not None
        batches = (
            table.select(columns) for table in benchmark.with_format("arrow").iter(batch_size=_READ_BATCH)
        )
    else:
        strings = list(benchmark)
        batches = (
            pa.table({"text": pa.array(strings[i : i + _READ_BATCH], pa.large_string())})
            for i in range(0, len(strings), _READ_BATCH)
        )
        columns = ["text"]
    found, texts, short = [], 0, 0
    for table in batches:
        values, _ = _texts(table, columns)
        present = values.is_valid()
        lengths = pc.list_value_length(_tokens(values)).fill_null(0).filter(present).to_numpy()
        texts += len(lengths)
        short += int(np.count_nonzero(lengths < n))
        found.append(_ngrams(values, n)[0])
    return np.unique(np.concatenate(found)) if found else _EMPTY, texts, short


def _check(ds: Any, columns: list[str], against: Any, n: int, against_columns: Any) -> None:
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"decontaminate takes a datasets.Dataset, got {type(ds).__name__}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"decontaminate: n is a number of words, 1 or more (13 as in GPT-3), not {n!r}.")
    missing = [column for column in columns if column not in ds.column_names]
    if missing:
        raise MissingColumnError(
            f"decontaminate: no column(s) {missing} in the dataset; its columns: {ds.column_names}."
        )
    for column in columns:
        _check_text_column(ds, column, "the dataset")
    if not isinstance(against, Mapping) or not against:
        got = repr(against) if isinstance(against, Mapping) else f"a {type(against).__name__}"
        raise ValueError(
            "decontaminate needs the benchmarks to check against, by name: against={'gsm8k': "
            "load_dataset('openai/gsm8k', 'main', split='test'), ...} (a datasets.Dataset or a list of "
            f"strings each); got {got}."
        )
    for name, benchmark in against.items():
        if isinstance(benchmark, datasets.DatasetDict):
            raise TypeError(
                f"decontaminate: benchmark {name!r} is a DatasetDict; pass one split, e.g. "
                f"against={{{name!r}: benchmark['test']}}, or each split under a name of its own."
            )
        is_texts = isinstance(benchmark, Sequence) and not isinstance(benchmark, (str, bytes))
        if not isinstance(benchmark, datasets.Dataset) and not (
            is_texts and all(text is None or isinstance(text, str) for text in benchmark)
        ):
            raise TypeError(
                f"decontaminate: benchmark {name!r} must be a datasets.Dataset or a list of strings, "
                f"got {type(benchmark).__name__}."
            )
    unknown = sorted(set(against_columns or {}) - set(against))
    if unknown:
        raise ValueError(
            f"decontaminate: against_columns names {unknown}, which are not benchmarks in against "
            f"({sorted(against)})."
        )


def _examples(
    ds: Any, columns: tuple[str, ...], rows: list[int], n: int, benchmark: np.ndarray
) -> list[dict]:
    """The first shared n-gram of each of ``rows``."""
    found = []
    for row in rows:
        texts, _ = _texts(ds.with_format("arrow")[row : row + 1], columns)
        ngrams, _, starts, flat = _ngrams(texts, n)
        hit = np.flatnonzero(_hits(ngrams, benchmark))
        if len(hit):
            start = int(starts[hit[0]])
            found.append({"row": row, "ngram": " ".join(flat.slice(start, n).to_pylist())})
    return found


@checked_keywords
def decontaminate(
    ds: Any,
    column: str | Sequence[str],
    against: Mapping[str, Any],
    *,
    n: int = 13,
    against_columns: Mapping[str, str | Sequence[str]] | None = None,
    remove: bool = False,
    num_proc: int | None = None,
) -> tuple[Any, DecontaminationReport]:
    """Flag the rows that share an ``n``-word n-gram with any text of the given benchmarks, after
    normalisation (:func:`words`), as GPT-3's contamination study did (Brown et al. 2020, Appendix C).

    Args:
        ds: a ``datasets.Dataset``.
        column: the text column checked: strings, or lists of strings (a generate step's
            ``generations``: the row is flagged when any of them shares an n-gram; :func:`mapgen.flatten`
            first to flag each generation on its own row). Several columns (``["input", "generations"]``)
            flag a row when any of them does.
        against: the benchmarks, by the name written in :data:`COLUMN`: each a ``datasets.Dataset`` (one
            split, from the Hub or disk: mapgen downloads nothing) or a list of strings.
        n: words per n-gram; 13 as in GPT-3. A benchmark text shorter than ``n`` words matches nothing
            (:attr:`BenchmarkOverlap.too_short` counts them): GPT-3 lowered ``n`` to the 5th percentile of
            a benchmark's lengths, down to 8, for benchmarks of short texts.
        against_columns: per benchmark name, its column or columns to read; a benchmark not named here has
            every string or list-of-strings column read (GSM8K's ``question`` and ``answer``, MMLU's
            ``question``, ``subject`` and ``choices``). N-grams never cross from one text to the next.
        remove: drop the flagged rows (the dataset comes back as it was given, less them, without
            :data:`COLUMN`) instead of adding :data:`COLUMN`.
        num_proc: workers of the ``Dataset.map`` that checks the rows; the result is the same whatever it is.

    Returns:
        The dataset with :data:`COLUMN` (a list of benchmark names per row, in ``against``'s order, ``[]``
        when clean; a dataset that has it keeps an earlier call's names, those of benchmarks checked again
        replaced), or without the flagged rows when ``remove``, its record of this step added for
        :func:`mapgen.dataset_card` (:mod:`mapgen.mapping.steps`); and a :class:`DecontaminationReport`.

    Raises:
        MissingColumnError: ``column`` is not in ``ds``, or an ``against_columns`` column not in its
            benchmark.
        TypeError: a column that holds no text; a benchmark that is not a ``Dataset`` or a list of strings
            (a ``DatasetDict``: pass one split).
        ValueError: ``against`` empty or not a mapping; ``n`` below 1; ``against_columns`` naming a
            benchmark that is not in ``against``.

    Example:
        >>> from datasets import Dataset
        >>> gsm8k = Dataset.from_dict({"question": [
        ...     "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        ...     "in May. How many clips did Natalia sell altogether in April and May?"
        ... ]})
        >>> ds = Dataset.from_dict({"input": [
        ...     "natalia SOLD clips to 48 of her friends in april and then she sold HALF as many clips!",
        ...     "Write a haiku about the sea.",
        ... ]})
        >>> flagged, report = decontaminate(ds, "input", against={"gsm8k": gsm8k})
        >>> list(flagged["contaminated_by"])
        [['gsm8k'], []]
        >>> report.benchmarks["gsm8k"].flagged, report.benchmarks["gsm8k"].examples[0]["ngram"]
        (1, 'natalia sold clips to 48 of her friends in april and then she')
        >>> list(decontaminate(ds, "input", against={"gsm8k": gsm8k}, remove=True)[0]["input"])
        ['Write a haiku about the sea.']
    """
    columns = (column,) if isinstance(column, str) else tuple(column)
    _check(ds, list(columns), against, n, against_columns)
    read: dict[str, list[str] | None] = {
        name: _benchmark_columns(name, benchmark, (against_columns or {}).get(name))
        if isinstance(benchmark, datasets.Dataset)
        else None
        for name, benchmark in against.items()
    }
    names = tuple(against)
    hashes, sizes = [], {}
    for name in names:
        found, texts, short = _read_benchmark(name, against[name], read[name], n)
        hashes.append(found)
        sizes[name] = (texts, short)
        if not len(found):
            warnings.warn(
                f"decontaminate: benchmark {name!r} has no text of {n} words or more ({texts} texts): "
                "nothing can match it; a lower n would see its texts.",
                MapgenWarning,
                stacklevel=3,
            )
    flagger = _Flagger(columns, n, names, tuple(hashes))
    mapped = ds.with_format("arrow").map(flagger, batched=True, num_proc=num_proc, desc="Decontamination")
    if COLUMN not in mapped.column_names:  # datasets' map skips an empty dataset
        mapped = mapped.add_column(COLUMN, pa.array([], pa.list_(pa.string())))
    counts: Counter[str] = Counter()
    first: dict[str, list[int]] = {name: [] for name in names}
    kept: list[np.ndarray] = []  # the clean rows' indices, for remove=True only
    flagged = offset = 0
    for table in mapped.with_format("arrow").iter(batch_size=_READ_BATCH):
        flags = table.column(COLUMN).combine_chunks()
        values = pc.list_flatten(flags)
        mine = np.asarray(pc.is_in(values, value_set=pa.array(names, pa.string())).fill_null(False))
        parents = pc.list_parent_indices(flags).to_numpy()
        clean = np.ones(table.num_rows, dtype=bool)
        clean[parents[mine]] = False  # flagged by a benchmark of this call (not an earlier call's only)
        flagged += len(clean) - int(np.count_nonzero(clean))
        if remove:
            kept.append(np.flatnonzero(clean) + offset)
        for name, row in zip(
            values.filter(pa.array(mine)).to_pylist(), (parents[mine] + offset).tolist(), strict=True
        ):
            counts[name] += 1
            if len(first[name]) < _EXAMPLES:
                first[name].append(row)
        offset += table.num_rows
    report = DecontaminationReport(
        rows=len(ds),
        flagged=flagged,
        removed=flagged if remove else 0,
        benchmarks={
            name: BenchmarkOverlap(
                texts=sizes[name][0],
                ngrams=len(found),
                too_short=sizes[name][1],
                flagged=counts[name],
                examples=_examples(ds, columns, first[name], n, found),
            )
            for name, found in zip(names, hashes, strict=True)
        },
        parameters={
            "column": column if isinstance(column, str) else list(columns),
            "n": n,
            "against_columns": {
                name: cols if cols is not None else ["<texts>"] for name, cols in read.items()
            },
            "remove": remove,
        },
    )
    if remove:
        out = ds.select(np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64))
    else:
        out = _formatted_as(mapped, ds)
    result: dict[str, Any] = {"rows": report.rows, "flagged": report.flagged, "removed": report.removed}
    result["benchmarks"] = {name: overlap.flagged for name, overlap in report.benchmarks.items()}
    return record_step(ds, out, "decontaminate", report.parameters, result), report


def _formatted_as(mapped: Any, ds: Any) -> Any:
    """``mapped`` in ``ds``'s format (the map ran on Arrow batches), its new column shown."""
    form = ds.format
    columns = form["columns"]
    if columns is None or set(columns) >= set(ds.column_names):
        columns = None  # every column, the new one too
    return mapped.with_format(
        form["type"], columns=columns, output_all_columns=form["output_all_columns"], **form["format_kwargs"]
    )
