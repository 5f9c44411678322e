"""Re-asking only what fell short: ``mapgen.generate(llm, task, redo=("length", ...))``.

A generate map over a dataset that already holds a generate step's columns reads each row's earlier
answers, and asks again only those that match a listed kind: ``length`` (cut at the token limit: a
``finish_reason`` in :data:`~mapgen.core.request.CUT_AT_LIMIT`, read or not), or a failure kind of
:mod:`mapgen.errors` (``invalid_output``, ``http_429``, ``timeout``...). Every other answer is written back
as it was, every column of it, with no request; ``generation_redone`` says which were asked again. The
typical use is a first pass at a small ``max_new_tokens``, then ``redo=("length",)`` at a larger one,
which pays only for the cut answers (curator #697).

An answer asked again carries the tokens, cost and retries of the one it replaces (both were paid for, as
a re-asked invalid answer does: :meth:`~mapgen.mapping.map_function.MapFunction.reask`), so the dataset's
totals (:func:`mapgen.summary`) still count what the first pass spent. An earlier answer that was itself
reused from the response store was paid for by another run, and adds nothing.

Example:
    >>> meta = {"finish_reason": "length", "prompt_tokens": 9, "completion_tokens": 16, "from_store": False,
    ...         "cost": None, "retries": 0}
    >>> falls_short(meta, None, ("length",)), falls_short(meta | {"finish_reason": "stop"}, None, ("length",))
    (True, False)
    >>> falls_short(None, "http_429: HTTP 429: slow down", ("http_429",))
    True
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mapgen.core.columns import VERIFY_COLUMNS
from mapgen.core.request import CUT_AT_LIMIT, Completion
from mapgen.errors import (
    BATCH_CANCELLED,
    BATCH_EXPIRED,
    BATCH_FAILED,
    CONNECTION,
    EMPTY_ANSWER,
    ENGINE,
    INPUT,
    INTERRUPTED,
    INVALID_ANSWER,
    INVALID_OUTPUT,
    LENGTH,
    PARSE,
    REFUSED,
    TIMEOUT,
    MapgenWarning,
    MissingColumnError,
    error_kind,
)

REDONE = "generation_redone"
"""The column a ``redo`` map adds: per generation, whether this map asked it again."""

PREVIOUS = "__mapgen_previous__"
"""The key under which a ``redo`` map's rows carry their earlier answers (a private key: no task input)."""

KINDS: tuple[str, ...] = (LENGTH, INVALID_OUTPUT, PARSE, INVALID_ANSWER, EMPTY_ANSWER, REFUSED, ENGINE)
KINDS += (TIMEOUT, CONNECTION, INPUT, INTERRUPTED, BATCH_EXPIRED, BATCH_CANCELLED, BATCH_FAILED)
"""The kinds ``redo`` takes, besides ``http_<status>`` (``http_429``, ``http_500``...)."""

_HTTP = re.compile(r"http_[1-5]\d\d")
LABELLING_METADATA = "labelling_metadata"
_RATINGS = ("rating", "weighted_rating", "rationale", "rating_consistency", "jury_agreement")


def redo_kinds(redo: str | Iterable[str]) -> tuple[str, ...]:
    """``redo`` checked and sorted (its order changes nothing, so neither does it change a fingerprint);
    one string is one kind.

    Raises:
        ValueError: a kind that is no failure kind of :mod:`mapgen.errors` nor ``length``.

    Example:
        >>> redo_kinds("length"), redo_kinds(["invalid_output", "length", "length"])
        (('length',), ('invalid_output', 'length'))
    """
    kinds = (redo,) if isinstance(redo, str) else tuple(redo)
    unknown = [kind for kind in kinds if not (kind in KINDS or _HTTP.fullmatch(str(kind)))]
    if unknown:
        raise ValueError(
            f"redo takes the kinds of answers to ask again: 'length' (cut at max_new_tokens) or a failure "
            f"kind of mapgen.errors ({', '.join(KINDS[1:])}, http_<status>); got {unknown}."
        )
    return tuple(sorted(set(kinds)))


def falls_short(metadata: Mapping[str, Any] | None, error: str | None, kinds: Sequence[str]) -> bool:
    """Whether an earlier answer (its ``generation_metadata`` entry and ``generation_errors`` entry) is of
    one of ``kinds``: ``length`` for an answer cut at the token limit, else its error's kind."""
    if LENGTH in kinds and metadata is not None and metadata.get("finish_reason") in CUT_AT_LIMIT:
        return True
    return error_kind(error) in kinds


def read_previous(
    batch: Mapping[str, Sequence[Any]], columns: Sequence[str], required: Sequence[str], n: int
) -> list[dict[str, list[Any]]]:
    """Each row's earlier answers: ``{column: its list, one entry per generation}`` for ``columns``
    (a column the dataset lacks, and not ``required``, is ``None`` in every entry).

    Raises:
        MissingColumnError: a ``required`` column (the task's outputs, ``generation_errors``,
            ``generation_metadata``) is not in the batch: the dataset holds no earlier answers to redo.
        ValueError: a row holds another number of answers than ``n`` (``num_generations``), or no list;
            or the batch holds columns computed from the answers (:func:`derived_columns`), which a redo
            would leave describing answers no longer there.
    """
    missing = [column for column in required if column not in batch]
    if missing:
        raise MissingColumnError(
            f"redo re-asks answers of an earlier generate map, but the dataset has no column(s) {missing}; "
            f"columns present: {list(batch)}. Map the dataset with mapgen.generate first (the same task), "
            "then with redo=... on its output. Nothing was sent."
        )
    stale = derived_columns(batch)
    if stale:
        raise ValueError(
            f"redo would change answers that the dataset's column(s) {stale} were computed from (by verify "
            "or a label step): they would then describe answers no longer there. Redo before those steps, or "
            f"drop them first, ds.remove_columns({stale}), and run the steps again after the redo. Nothing "
            "was sent."
        )
    size = len(batch[required[0]])
    rows: list[dict[str, list[Any]]] = []
    for i in range(size):
        answers = batch[required[0]][i]
        if not isinstance(answers, list):
            raise ValueError(
                f"redo: row {i} of the batch holds {answers!r} in {required[0]!r}, not a list of answers: "
                "redo reads a generate map's output as it wrote it (not flattened, no row left empty). "
                "Nothing was sent."
            )
        if len(answers) != n:
            fix = f"pass num_generations={len(answers)}, the earlier map's" if answers else "nothing to redo"
            raise ValueError(
                f"redo: row {i} of the batch holds {len(answers)} earlier answer(s) in {required[0]!r}, and "
                f"the map asks num_generations={n}: {fix}. Nothing was sent."
            )
        rows.append({column: list(batch[column][i]) if column in batch else [None] * n for column in columns})
    return rows


def derived_columns(batch: Mapping[str, Sequence[Any]]) -> list[str]:
    """The columns of ``batch`` computed from the answers a redo may change: :func:`mapgen.verify`'s, and
    a label step's (its metadata column, and the ``labelling_*``, rating and rationale columns beside it)."""
    found = [name for name in VERIFY_COLUMNS if name in batch]
    if LABELLING_METADATA in batch:
        found += [name for name in batch if name.startswith("labelling_") or name in _RATINGS]
    return found


def same_stored_answer(completion: Completion, previous: dict[str, list[Any]] | None, i: int) -> bool:
    """Whether a redo's answer for generation ``i`` is the earlier answer itself, read back from the
    response store (the redo asked with the config that wrote it: the same key): then nothing was asked
    again, and the generation is kept as it was, not marked redone. Warned once per process."""
    if previous is None or not completion.from_store:
        return False
    same = completion.text == previous["raw_generation_responses"][i]
    if same:
        warnings.warn(
            "redo: an answer came back unchanged from the response store: the redo asked with the config "
            "of the map that wrote it (the same model, sampling parameters and max_new_tokens). Change the "
            "config (a larger max_new_tokens for 'length'), or pass cache=False to sample it again; it is "
            "kept as it was, generation_redone False.",
            MapgenWarning,
            stacklevel=2,
        )
    return same


def spent_before(metadata: Mapping[str, Any] | None) -> Completion:
    """The earlier answer a redo replaces, as far as what it cost: its ``generation_metadata`` entry's
    tokens, cost and retries, and whether it was reused from the store (then it counts nothing now:
    :func:`~mapgen.mapping.map_function.paid_with`)."""
    meta = metadata or {}
    return Completion(
        text=None,
        prompt_tokens=meta.get("prompt_tokens"),
        completion_tokens=meta.get("completion_tokens"),
        cached_tokens=meta.get("cached_tokens"),
        cost=meta.get("cost"),
        retries=meta.get("retries") or 0,
        from_store=bool(meta.get("from_store")),
    )
