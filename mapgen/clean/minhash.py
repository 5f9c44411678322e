"""``mapgen.dedup``: near-duplicate and exact-duplicate removal with MinHash and LSH.

Each text is normalised (Unicode NFKC, lowercased, every character that is neither a letter, a digit nor
``_`` turned into a space, runs of whitespace collapsed), cut into shingles (``ngram`` consecutive words,
or ``ngram`` consecutive characters), and summarised by a MinHash signature of ``num_perm`` values
(Broder 1997): the share of equal values between two signatures estimates the Jaccard similarity of their
shingle sets. Locality-sensitive hashing splits each signature into ``b`` bands of ``r`` values, with
``b`` and ``r`` chosen for ``threshold`` as datasketch's ``MinHashLSH`` chooses them (least weighted
false-positive plus false-negative area, misses weighed 0.9); rows that agree on a whole band are
candidates, a candidate pair whose signatures agree on at least ``threshold`` of their values is joined, and
pairs joined through any band form one cluster (union-find). Rows whose normalised texts are equal are
joined too, whatever their length.

The hashes follow datasketch's: a 32-bit hash per shingle (xxHash here, where datasketch uses SHA-1),
permuted by universal hashing ``(a * h + b) mod (2**61 - 1)`` keeping 32 bits. The signature step is a
batched, numpy-vectorised ``Dataset.map`` (so ``num_proc`` workers and datasets' cache apply) whose
signatures (4 bytes a permutation) and band hashes stay in an Arrow file on disk (datasets' cache, or a
temporary file for an in-memory dataset). Memory, whatever the dataset's size, is then one batch per worker
(1,000 texts, their permuted hashes 16 permutations at a time) and, in the calling process, numpy arrays of
a few bytes a row, no Python object per row: the union-find array (8 bytes a row), one band's column with
its sort (about 50 bytes a row while a band is joined; the bands are read one at a time) and the
signatures of 25,000 candidate pairs at a time, read from the memory-mapped file chunk by chunk.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash
from datasets import Features, List, Value

from mapgen.core.keywords import checked_keywords
from mapgen.errors import MissingColumnError
from mapgen.mapping.steps import record_step

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
"""The modulus of the universal hash family (datasketch's ``_mersenne_prime``)."""

_MAX_HASH = np.uint64((1 << 32) - 1)
_BAND = "__dedup_band_{}"
_KEY = "__dedup_exact"
_SIGNATURE = "__dedup_signature"
_PAIRS = 25_000
"""Candidate pairs whose signatures are compared at a time: 2 x 512 bytes a pair at ``num_perm=128``."""
_PERMUTATIONS = 16
"""Permutations applied at a time in a worker: 8 bytes x this x a batch's shingles (12 MB for 1,000 texts
of 100 words)."""
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> str:
    """The text that duplicates are compared on: NFKC, lowercased, punctuation turned into spaces,
    whitespace collapsed to single spaces.

    Example:
        >>> normalise("  Hello,\\tWORLD!! It's  me. ")
        'hello world it s me'
    """
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoidal integral of ``y`` over ``x``."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2) if len(x) > 1 else 0.0


def lsh_parameters(
    threshold: float, num_perm: int, weights: tuple[float, float] = (0.1, 0.9)
) -> tuple[int, int]:
    """The bands ``b`` and rows per band ``r`` (``b * r <= num_perm``) that minimise the area of false
    positives below ``threshold`` plus the area of false negatives above it, weighted by ``weights``, for the
    probability ``1 - (1 - s**r)**b`` that two texts of Jaccard similarity ``s`` share a band; datasketch's
    ``MinHashLSH._optimal_param``, integrated on a grid. :func:`dedup` weighs misses 0.9 (datasketch: 0.5)
    because it checks every candidate pair's signatures afterwards, which removes the false positives.

    Example:
        >>> lsh_parameters(0.8, 128, weights=(0.5, 0.5))  # datasketch's choice
        (9, 13)
        >>> lsh_parameters(0.8, 128)
        (14, 9)
    """
    grid = np.linspace(0.0, 1.0, 1001)
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1.0 - (1.0 - grid**rows) ** bands
            below, above = grid <= threshold, grid >= threshold
            error = weights[0] * _area(p[below], grid[below]) + weights[1] * _area(
                1.0 - p[above], grid[above]
            )
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


@dataclass
class DedupReport:
    """What :func:`dedup` found: the parameters it ran with, the clusters, and a few examples."""

    rows: int
    """Rows of the dataset given."""
    clusters: int
    """Clusters of two or more rows (near or exact duplicates of each other)."""
    removed: int
    """Rows that are not the first of their cluster: those :func:`dedup` drops (or marks)."""
    exact: int
    """Of ``removed``, the rows whose normalised text equals their cluster's first row's."""
    parameters: dict[str, Any]
    """``column``, ``generation``, ``threshold``, ``num_perm``, ``bands``, ``rows_per_band``, ``shingle``,
    ``ngram``, ``seed``."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """Up to five removed rows, each ``{"kept": index, "removed": index, "kept_text": str,
    "removed_text": str}``."""


def _text(value: Any, generation: int | None) -> str | None:
    if generation is not None:
        inside = isinstance(value, list) and -len(value) <= generation < len(value)
        value = value[generation] if inside else None
    return value if isinstance(value, str) else None


def _shingle_hashes(text: str, shingle: str, ngram: int) -> np.ndarray:
    """The 32-bit hashes of a normalised text's shingles (the whole text when shorter than one)."""
    units: Sequence[str] = text.split() if shingle == "word" else text
    glue = " " if shingle == "word" else ""
    count = max(len(units) - ngram + 1, 1)
    found = {xxhash.xxh32_intdigest(glue.join(units[i : i + ngram]).encode()) for i in range(count)}
    return np.fromiter(found, dtype=np.uint64, count=len(found))


def _minhash(hashed: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``(texts, num_perm)`` uint32 MinHash signatures of texts given as their shingle hashes."""
    lengths = np.array([len(h) for h in hashed])
    flat = np.concatenate(hashed)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    signatures = np.empty((len(hashed), len(a)), dtype=np.uint32)
    for first in range(0, len(a), _PERMUTATIONS):  # a few permutations at a time: a bounded temporary
        rows = slice(first, first + _PERMUTATIONS)
        # (permutations, shingles) permuted hashes, computed in place, then each text's minimum over its
        # shingles; uint64 wraps on overflow, as datasketch's numpy code does.
        permuted = np.multiply(a[rows, None], flat[None, :])
        permuted += b[rows, None]
        permuted %= MERSENNE_PRIME
        permuted &= _MAX_HASH
        signatures[:, rows] = np.minimum.reduceat(permuted, starts, axis=1).T
    return signatures


def _signatures(
    values: list[Any],
    *,
    generation: int | None,
    shingle: str,
    ngram: int,
    num_perm: int,
    bands: int,
    rows_per_band: int,
    seed: int,
) -> dict[str, list[Any]]:
    """A batch's band hashes (a column per band, ``None`` for a row with no text) and exact-match keys,
    63-bit so that Arrow reads them as int64."""
    generator = np.random.RandomState(seed)  # datasketch's permutations: a in [1, p), b in [0, p)
    a = generator.randint(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    b = generator.randint(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    texts = [_text(value, generation) for value in values]
    normalised = [normalise(text) if text is not None else None for text in texts]
    hashed = [_shingle_hashes(text, shingle, ngram) for text in normalised if text is not None]
    out: dict[str, list[Any]] = {_BAND.format(band): [None] * len(values) for band in range(bands)}
    out[_SIGNATURE] = [None] * len(values)
    out[_KEY] = [
        xxhash.xxh3_64_intdigest(text.encode()) >> 1 if text is not None else None for text in normalised
    ]
    if hashed:
        signatures = _minhash(hashed, a, b)
        used = np.ascontiguousarray(signatures[:, : bands * rows_per_band]).reshape(len(hashed), bands, -1)
        where = [i for i, text in enumerate(normalised) if text is not None]
        for i, signature in zip(where, signatures.tolist(), strict=True):
            out[_SIGNATURE][i] = signature
        for band in range(bands):
            column = out[_BAND.format(band)]
            for i, row in zip(where, used[:, band], strict=True):
                column[i] = xxhash.xxh3_64_intdigest(row.tobytes()) >> 1
    return out


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


def _join_groups(
    parent: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    similar: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> None:
    """Join the rows that share a value (rows not ``valid`` take part in nothing), each with the next row of
    the same value when ``similar`` accepts the pair."""
    rows = np.flatnonzero(valid)
    order = rows[np.argsort(values[rows], kind="stable")]
    ordered = values[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])  # a pair: a row and the one before it, same value
    for start in range(0, len(same), _PAIRS):
        positions = same[start : start + _PAIRS]
        left, right = order[positions], order[positions + 1]
        accepted = similar(left, right)
        for a, b in zip(left[accepted].tolist(), right[accepted].tolist(), strict=True):
            first, second = _find(parent, a), _find(parent, b)
            if first != second:  # the smaller index is the root: a cluster's id is its first row
                parent[max(first, second)] = min(first, second)


@checked_keywords
def dedup(
    ds: Any,
    column: str,
    threshold: float = 0.8,
    *,
    generation: int | None = None,
    num_perm: int = 128,
    shingle: str = "word",
    ngram: int = 5,
    num_proc: int | None = None,
    keep_column: str | None = None,
    seed: int = 1,
) -> tuple[Any, DedupReport]:
    """Remove near-duplicate texts (estimated Jaccard similarity of shingles at or above ``threshold``)
    and exact duplicates after :func:`normalise`, keeping the first row of each cluster.

    Args:
        ds: a ``datasets.Dataset``.
        column: the text column: strings, or lists of strings (a generate step's ``generations``) with
            ``generation`` saying which one to compare.
        threshold: the Jaccard similarity (0 to 1) from which two texts are duplicates; it sets the LSH
            bands, so pairs near it are found with some probability, not always.
        generation: for a list column, the index of the generation compared (0 the first, -1 the last);
            a row whose list is shorter counts as no text. Must be ``None`` for a string column.
        num_perm: MinHash permutations (signature length); more is slower and sharper.
        shingle: ``"word"`` (``ngram`` consecutive words) or ``"char"`` (``ngram`` consecutive characters).
        ngram: shingle length, in words or characters; a text shorter than that is one shingle.
        num_proc: workers of the signature ``Dataset.map``.
        keep_column: when given, nothing is removed: the dataset comes back with this column added, each
            row's cluster id (the index of its cluster's first row, that row included) or ``None`` for a
            row with no duplicate.
        seed: the permutations' seed; the result is the same for the same seed, whatever ``num_proc``.

    Rows with no text (``None``, or no such generation) are never duplicates.

    Returns:
        The dataset without the duplicates (or with ``keep_column``), its record of this step added for
        :func:`mapgen.dataset_card` (:mod:`mapgen.mapping.steps`), and a :class:`DedupReport`.

    Raises:
        MissingColumnError: ``column`` is not in ``ds``, or is a list column and ``generation`` is missing.
        ValueError: a parameter out of range (``threshold``, ``num_perm``, ``shingle``, ``ngram``), or a
            ``keep_column`` that is already a column.
        TypeError: ``ds`` is no ``datasets.Dataset``, or ``column`` holds no text.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"text": [
        ...     "The cat sat on the mat, and then it slept all afternoon in the sun by the door.",
        ...     "the cat sat on the mat and then it slept all afternoon in the sun by the door",
        ...     "A completely different sentence about rockets and the moon landing in 1969.",
        ... ]})
        >>> kept, report = dedup(ds, "text")
        >>> kept["text"][1][:10], report.removed, report.exact
        ('A complete', 1, 1)
        >>> dedup(ds, "text", keep_column="dup_cluster")[0]["dup_cluster"][:]
        [0, 0, None]
    """
    _check(ds, column, threshold, generation, num_perm, shingle, ngram)
    if keep_column is not None and keep_column in ds.column_names:
        raise ValueError(
            f"dedup: keep_column {keep_column!r} is already a column: pick another name or remove it"
        )
    bands, rows_per_band = lsh_parameters(threshold, num_perm)
    parameters = {
        "column": column,
        "generation": generation,
        "threshold": threshold,
        "num_perm": num_perm,
        "bands": bands,
        "rows_per_band": rows_per_band,
        "shingle": shingle,
        "ngram": ngram,
        "seed": seed,
    }
    settings = {key: parameters[key] for key in ("generation", "shingle", "ngram", "num_perm", "seed")}
    settings |= {"bands": bands, "rows_per_band": rows_per_band}
    clusters, exact = np.zeros(0, dtype=np.int64), 0
    if len(ds):  # datasets' map skips an empty dataset: its output would have no signature column
        with tempfile.TemporaryDirectory(prefix="mapgen-dedup-", ignore_cleanup_errors=True) as folder:
            hashed = _hashed(ds, column, settings, num_proc, Path(folder) / "signatures.arrow")
            clusters = _clusters(hashed, bands, threshold, num_perm)
            exact = _exact(hashed, clusters)
    duplicate = clusters != np.arange(len(clusters))  # a cluster's first row is kept
    report = DedupReport(
        rows=len(ds),
        clusters=len(np.unique(clusters[duplicate])),
        removed=int(duplicate.sum()),
        exact=exact,
        parameters=parameters,
        examples=_examples(ds, column, generation, clusters, duplicate),
    )
    if keep_column is not None:
        out = ds.add_column(keep_column, _cluster_ids(clusters, duplicate))
    else:
        out = ds.select(np.flatnonzero(~duplicate))
    result: dict[str, Any] = {"rows": report.rows, "removed": report.removed, "clusters": report.clusters}
    result |= {"exact": report.exact, "keep_column": keep_column}
    return record_step(ds, out, "dedup", parameters, result), report


def _hashed(ds: Any, column: str, settings: dict[str, Any], num_proc: int | None, spare: Path) -> Any:
    """The signature ``Dataset.map`` (``settings``: :func:`_signatures`' keywords): per row, the band hashes,
    the exact-match key and the signature; only the compared column goes to the workers. datasets writes a
    map's output in its cache when the input has a cache file, and in memory otherwise: an in-memory input's
    output goes to ``spare`` instead, so the signatures (about 640 bytes a row at ``num_perm=128``) are on
    disk either way."""
    source = ds.select_columns([column])
    return source.map(
        partial(_signatures, **settings),
        input_columns=[column],
        batched=True,
        batch_size=1000,
        remove_columns=[column],
        features=Features(
            {
                **{_BAND.format(band): Value("int64") for band in range(settings["bands"])},
                _KEY: Value("int64"),
                _SIGNATURE: List(Value("uint32")),  # 4 bytes a permutation, in Arrow, on disk
            }
        ),
        num_proc=num_proc,
        cache_file_name=None if source.cache_files else str(spare),
        desc="MinHash signatures",
    )


def _check(
    ds: Any, column: str, threshold: float, generation: int | None, num_perm: int, shingle: str, ngram: int
) -> None:
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise TypeError(
            "dedup takes a datasets.Dataset (for a DatasetDict, call it on each split), got "
            f"{type(ds).__name__}."
        )
    if column not in ds.column_names:
        raise MissingColumnError(
            f"dedup: no column {column!r} in the dataset; its columns: {ds.column_names}"
        )
    kind = ds.data.schema.field(column).type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    text = kind.value_type if is_list else kind
    if not (pa.types.is_string(text) or pa.types.is_large_string(text) or pa.types.is_null(text)):
        raise TypeError(f"dedup: column {column!r} holds {kind}, not text (strings, or lists of strings).")
    if is_list and generation is None:
        raise MissingColumnError(
            f"dedup: {column!r} holds lists; say which entry to compare: dedup(ds, {column!r}, generation=0)"
        )
    if not is_list and generation is not None:
        raise ValueError(f"dedup: {column!r} holds single values, not lists; leave generation=None")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dedup: threshold is a Jaccard similarity in (0, 1], not {threshold}")
    if num_perm < 2:
        raise ValueError(f"dedup: num_perm must be at least 2, not {num_perm}")
    if shingle not in ("word", "char"):
        raise ValueError(f"dedup: shingle is 'word' or 'char', not {shingle!r}")
    if ngram < 1:
        raise ValueError(f"dedup: ngram must be at least 1, not {ngram}")


def _column(hashed: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One int64 column of the mapped dataset as numpy (read alone from its memory-mapped Arrow table, chunk
    by chunk into one array: 8 bytes a row), and where it is set (1 byte a row)."""
    chunked = hashed.data.table.column(name)
    values, valid = np.zeros(len(chunked), dtype=np.int64), np.zeros(len(chunked), dtype=bool)
    start = 0
    for chunk in chunked.chunks:
        end = start + len(chunk)
        values[start:end] = chunk.fill_null(0).to_numpy()
        valid[start:end] = chunk.is_valid().to_numpy(zero_copy_only=False)
        start = end
    return values, valid


def _signature_reader(column: pa.ChunkedArray, num_perm: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function giving the ``(len(rows), num_perm)`` uint32 signatures of ``rows`` (rows with a text),
    gathered chunk by chunk from the memory-mapped column: ``ChunkedArray.take`` would first concatenate the
    whole column in memory (512 bytes a row at ``num_perm=128``)."""
    ends = np.cumsum([len(chunk) for chunk in column.chunks], dtype=np.int64)
    starts = ends - [len(chunk) for chunk in column.chunks]
    # Views of the mapped file, not copies: the values hold no null (a row with no text has a null list).
    offsets = [chunk.offsets.to_numpy() for chunk in column.chunks]
    values = [chunk.values.to_numpy(zero_copy_only=False) for chunk in column.chunks]
    permutation = np.arange(num_perm)

    def read(rows: np.ndarray) -> np.ndarray:
        found = np.empty((len(rows), num_perm), dtype=np.uint32)
        chunk_of = np.searchsorted(ends, rows, side="right")
        order = np.argsort(chunk_of, kind="stable")
        bounds = np.searchsorted(chunk_of[order], np.arange(len(ends) + 1))
        for index in np.unique(chunk_of).tolist():
            at = order[bounds[index] : bounds[index + 1]]
            where = offsets[index][rows[at] - starts[index]]
            found[at] = values[index][where[:, None] + permutation]
        return found

    return read


def _roots(parent: np.ndarray) -> np.ndarray:
    """Each row's root in the union-find forest ``parent``, by pointer jumping (``parent[parent]`` until
    nothing changes: a few passes over 8 bytes a row, no Python object per row)."""
    while True:
        grandparent = parent[parent]
        if np.array_equal(grandparent, parent):
            return parent
        parent = grandparent


def _clusters(hashed: Any, bands: int, threshold: float, num_perm: int) -> np.ndarray:
    """Each row's cluster id, the smallest row index of its cluster (itself when alone). Memory: the
    union-find array (8 bytes a row), one band's column and its sort (about 50 bytes a row at the peak) and
    ``_PAIRS`` pairs' signatures; the signatures stay in the memory-mapped Arrow file."""
    parent = np.arange(len(hashed), dtype=np.int64)
    signatures = _signature_reader(hashed.data.table.column(_SIGNATURE), num_perm)

    def near(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Candidate pairs whose signatures agree on at least ``threshold`` of their values."""
        return (signatures(left) == signatures(right)).mean(axis=1) >= threshold

    for band in range(bands):  # one band's column in memory at a time
        _join_groups(parent, *_column(hashed, _BAND.format(band)), near)
    _join_groups(parent, *_column(hashed, _KEY), lambda left, right: np.ones(len(left), dtype=bool))
    return _roots(parent)


def _cluster_ids(clusters: np.ndarray, duplicate: np.ndarray) -> pa.Array:
    """``keep_column``'s values: each row's cluster id, null for a row with no duplicate (an all-null
    column, of Arrow's null type, when no row has one)."""
    if not duplicate.any():
        return pa.nulls(len(clusters))
    shared = np.zeros(len(clusters), dtype=bool)
    shared[clusters[duplicate]] = True  # a cluster's id is its first row
    return pa.array(clusters, mask=~shared[clusters])


def _exact(hashed: Any, clusters: np.ndarray) -> int:
    """Rows not first of their cluster whose exact-match key is their cluster's first row's."""
    keys, _ = _column(hashed, _KEY)
    duplicate = clusters != np.arange(len(clusters))
    return int(np.count_nonzero(keys[duplicate] == keys[clusters[duplicate]]))


def _examples(
    ds: Any, column: str, generation: int | None, clusters: np.ndarray, duplicate: np.ndarray, limit: int = 5
) -> list[dict[str, Any]]:
    removed = np.flatnonzero(duplicate)[:limit].tolist()
    return [
        {
            "kept": int(clusters[i]),
            "removed": i,
            "kept_text": _text(ds[int(clusters[i])][column], generation),
            "removed_text": _text(ds[i][column], generation),
        }
        for i in removed
    ]
