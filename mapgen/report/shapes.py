"""``mapgen.flatten`` and ``mapgen.to_sft``: a mapgen dataset in the shape trainers read.

A map writes, per row, one entry per generation in every column it adds (``generations: ['...']`` with one
generation too; a :class:`~mapgen.StructuredTask` field the same; Magpie's ``conversation`` a list of
conversations). :func:`flatten` makes one row per generation, each of those columns a single value;
:func:`to_sft` makes ``messages`` in the Hugging Face chat format, for TRL's ``SFTTrainer``.

Which columns hold one entry per generation is read from the provenance records
(:mod:`mapgen.mapping.provenance`) of the map functions that wrote them, not guessed from list lengths:

- a generate step: every column it writes (the task's outputs and ``generation_*``);
- a label step: its list-typed columns (its per-text outputs, such as ``rating`` and ``rationale``, the
  ``weighted_`` rating, and, where each text had a prompt of its own, that prompt, answer, reasoning and
  metadata), when the column it rated (``generations``) holds one entry per generation: a generate step's
  column, or, with no generate step, the rated column itself;
- a verify step (:func:`mapgen.verify`): ``verified`` and ``verification_errors``, beside the columns
  above. It is no map of a model and keeps no provenance record, so they are known by their names
  (:data:`mapgen.core.columns.VERIFY_COLUMNS`); verifying a column that holds one entry per generation
  makes lists of the same lengths, and a row whose lengths differ is refused as any misaligned row is.

Both keep the answer metadata (``generation_metadata``, ``labelling_metadata``), where each answer's
provenance is, so :func:`mapgen.dataset_card` and :func:`mapgen.usage` work on what they return.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mapgen.core.columns import VERIFIED, VERIFY_COLUMNS
from mapgen.core.keywords import checked_keywords
from mapgen.errors import MapgenWarning, error_kind
from mapgen.mapping.provenance import lookup
from mapgen.report.totals import metadata_columns

logger = logging.getLogger(__name__)

INDEX = "generation_index"
"""The column :func:`flatten` adds: each row's position among its row's generations (0, 1, ...)."""

GENERATE_COLUMNS = (
    "generation_model",
    "generation_prompt",
    "raw_generation_responses",
    "generation_reasoning",
    "generation_errors",
    "generation_metadata",
)
"""The columns :func:`mapgen.generate` writes beside the task's outputs."""

_BATCH = 10_000
"""Rows read into Python at a time."""


@dataclass
class _Layout:
    """Which columns of a dataset hold one entry per generation, and what a generate step wrote."""

    aligned: list[str]
    """The columns with one entry per generation (lists), in the dataset's order: what flatten unpacks."""
    generated: list[str]
    """The columns of the generate step(s), flat or not."""
    row_metadata: list[str]
    """Answer metadata of a whole row (a judge's one answer for all its texts): kept on its first
    generation only, so that totals count each answer once."""


@checked_keywords
def flatten(
    ds: Any,
    *,
    columns: Sequence[str] | None = None,
    store: str | None = None,
    verified_only: bool = False,
) -> Any:
    """One row per generation: every column with one entry per generation becomes its entry's type
    (``generations`` a string, a structured field its own type, ``generation_prompt`` chat messages,
    ``generation_metadata`` a struct, Magpie's ``conversation`` chat messages), the row's other columns
    are repeated, and ``generation_index`` says which generation of its row each row is.

    Which columns hold one entry per generation is read from the provenance records of the maps that
    wrote them (see :mod:`mapgen.report.shapes`): from this process, else from the response store
    ``store`` (default: the default store). ``columns`` names them instead, for data whose records are
    lost (a map run with ``cache=False`` in another process) or not written by mapgen. A row with no
    generations (an empty list, or ``None``) gives no row. The answer metadata of a step that answered
    once for the whole row (a judge that rated every generation in one answer: ``labelling_metadata``)
    is kept on the row's first generation only, ``None`` on the others, so that
    :func:`mapgen.dataset_card` and :func:`mapgen.usage` count each answer once. Columns keep their
    ``datasets`` features. A dataset already flat (no per-generation list left, and a
    ``generation_index``) is returned as it is. ``verified_only=True`` keeps only the generations that
    :func:`mapgen.verify` found right (``verified`` ``True``; ``False`` and ``None`` are left out).

    Raises:
        TypeError: ``ds`` is not a ``datasets.Dataset``.
        ValueError: a map's record is in neither this process nor the store (name ``columns``); the
            dataset has no column written by mapgen; a per-generation column holds no lists; a row's
            per-generation columns hold different numbers of values (naming the row and the columns:
            flattening would misalign them); or ``verified_only`` without a ``verified`` column of one
            value per generation (:func:`mapgen.verify` first).

    Example:
        >>> import datasets, mapgen
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0)
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
        >>> ds = ds.map(mapgen.generate(llm, num_generations=2), batched=True)
        >>> flat = mapgen.flatten(ds)
        >>> flat.num_rows, list(flat["generation_index"]), flat[2]["input"]
        (4, [0, 1, 0, 1], 'Name a color.')
        >>> flat.features["generations"], isinstance(flat[0]["generation_metadata"], dict)
        (Value('string'), True)
    """
    _check_dataset(ds, "flatten")
    flat = _flatten(ds, _layout(ds, columns, store, "flatten"))
    return flat.select(_verified_rows(flat, "flatten")) if verified_only else flat


@checked_keywords
def to_sft(
    ds: Any,
    *,
    keep_columns: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    store: str | None = None,
    verified_only: bool = False,
) -> Any:
    """Supervised fine-tuning data: one row per answer with a ``messages`` column in the Hugging Face
    chat format (a list of ``{"role", "content"}``), as TRL's ``SFTTrainer`` reads it.

    ``messages`` is the prompt the model was sent (``generation_prompt``: a system message if there was
    one, then the user's) and the answer as the assistant's turn: ``generations`` where the task writes
    text there (:class:`~mapgen.TextGenerationTask`, :class:`~mapgen.ChatGenerationTask`), else the
    model's text, ``raw_generation_responses`` (a :class:`~mapgen.StructuredTask`'s JSON). Tasks that
    write a conversation (:class:`~mapgen.MagpieTask`, :class:`~mapgen.ConversationTask`) give the whole
    conversation instead. Answers that failed (a ``generation_errors`` value, no answer, or a conversation
    that does not end with an assistant turn: Magpie's ``only_instruction``) are left out, and counted in
    a :class:`~mapgen.MapgenWarning` by kind. ``verified_only=True`` keeps only the answers that
    :func:`mapgen.verify` found right (``verified`` ``True``): rejection sampling's "keep what checks
    out"; the others are left out without a warning (you asked for it), their count logged.

    Beside ``messages`` it keeps ``keep_columns`` (any column of :func:`flatten`'s result: ``rating``,
    ``generation_index``, ...) and the answer metadata with its models (``generation_metadata``,
    ``generation_model``, and a label step's), so :func:`mapgen.dataset_card` works on the result.
    ``columns`` and ``store`` are :func:`flatten`'s.

    Raises:
        TypeError: ``ds`` is not a ``datasets.Dataset``.
        ValueError: what :func:`flatten` raises; ``ds`` has no prompt and answer written by
            :func:`mapgen.generate`; a ``keep_columns`` entry is not a column; or ``verified_only``
            without a ``verified`` column of one value per generation (:func:`mapgen.verify` first).

    Example:
        >>> import datasets, mapgen
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0)
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit."]})
        >>> sft = mapgen.to_sft(ds.map(mapgen.generate(llm), batched=True))
        >>> sft.column_names
        ['messages', 'generation_model', 'generation_metadata']
        >>> [m["role"] for m in sft[0]["messages"]], sft[0]["messages"][0]["content"]
        (['user', 'assistant'], 'Name a fruit.')
    """
    import datasets

    _check_dataset(ds, "to_sft")
    layout = _layout(ds, columns, store, "to_sft")
    types = {  # the columns' types once flat
        f.name: f.type.value_type if f.name in layout.aligned else f.type for f in ds.features.arrow_schema
    }
    types.setdefault(INDEX, pa.int64())
    outputs = [c for c in layout.generated if c not in GENERATE_COLUMNS]
    conversation = next((c for c in outputs if _is_messages(types[c])), None)
    answer = "generations" if "generations" in outputs and pa.types.is_string(types["generations"]) else None
    answer = answer or "raw_generation_responses"
    needed = [conversation] if conversation else ["generation_prompt", answer]
    absent = [c for c in needed if c not in types]
    if absent:
        raise ValueError(
            f"to_sft builds its messages from the prompt and answer mapgen.generate wrote, and the dataset "
            f"has no column(s) {absent} (columns: {ds.column_names}). Generate first: mapgen.generate(...)."
        )
    missing = [c for c in keep_columns if c not in types]
    if missing:
        raise ValueError(f"keep_columns names {missing}, which are not columns: {list(types)}.")
    errors = "generation_errors" if "generation_errors" in types else None

    flat = _flatten(ds, layout)
    kept, left_out = _answers(flat, errors, conversation or answer, conversation is not None)
    if left_out:
        kinds = ", ".join(f"{kind} {count}" for kind, count in left_out.most_common())
        warnings.warn(
            f"to_sft left out {sum(left_out.values())} of {flat.num_rows} answers that failed ({kinds}); "
            f"{len(kept)} make the messages.",
            MapgenWarning,
            stacklevel=3,  # the caller, past checked_keywords
        )
        flat = flat.select(kept)
    if verified_only:
        passed = _verified_rows(flat, "to_sft")
        logger.info(
            "to_sft left out %d of %d answers not verified", flat.num_rows - len(passed), flat.num_rows
        )
        flat = flat.select(passed)

    metadata = metadata_columns(flat)
    models = [m for c in metadata if (m := c.removesuffix("_metadata") + "_model") != c and m in types]
    keep = list(dict.fromkeys(c for c in [*keep_columns, *models, *metadata] if c != "messages"))
    features = datasets.Features(
        {
            "messages": datasets.List(
                {"role": datasets.Value("string"), "content": datasets.Value("string")}
            ),
            **{c: flat.features[c] for c in keep},
        }
    )
    # An answer read only after its JSON was repaired trains on the record it was read as, not on the
    # broken text (a structured task's fields are its outputs).
    structured = answer == "raw_generation_responses" and bool(outputs) and "generation_metadata" in types
    build = partial(
        _messages,
        prompt="generation_prompt",
        answer=answer,
        conversation=conversation,
        keep=keep,
        fields=outputs if structured else [],
        metadata="generation_metadata" if structured else None,
    )
    return flat.map(
        build, batched=True, remove_columns=flat.column_names, features=features, desc="SFT messages"
    )


JURY = "mapgen.llms.jury.Jury"
"""A jury's backend as its provenance records name it: only its aggregate scores are per generation."""


def _verified_rows(flat: Any, name: str) -> list[int]:
    """The rows of a flat dataset whose answer :func:`mapgen.verify` found right (``verified`` ``True``)."""
    kind = flat.features.arrow_schema.field(VERIFIED).type if VERIFIED in flat.column_names else None
    if kind is None or not pa.types.is_boolean(kind):
        found = "no such column" if kind is None else f"one of type {kind} after flattening"
        raise ValueError(
            f"{name}(verified_only=True) keeps the answers whose {VERIFIED!r} value is True, and the dataset "
            f"has {found} (columns: {flat.column_names}). Check the answers first: mapgen.verify(ds, ...)"
            + (
                ""
                if kind is None
                else f"; name {VERIFIED!r} in columns=[...] with the other per-generation ones"
            )
            + "."
        )
    kept: list[int] = []
    position = 0
    for table in flat.select_columns([VERIFIED]).with_format("arrow").iter(batch_size=_BATCH):
        passed = pc.fill_null(table.column(0), False).to_numpy(zero_copy_only=False)
        kept += (np.flatnonzero(passed) + position).tolist()
        position += table.num_rows
    return kept


def _check_dataset(ds: Any, name: str) -> None:
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise TypeError(
            f"{name} takes a datasets.Dataset (for a DatasetDict, call it on each split), got "
            f"{type(ds).__name__}."
        )


def _layout(ds: Any, columns: Sequence[str] | None, store: str | None, name: str) -> _Layout:
    """Which columns of ``ds`` hold one entry per generation: ``columns``, else from the provenance."""
    present = ds.column_names
    types = {f.name: f.type for f in ds.features.arrow_schema}
    metadata = metadata_columns(ds)
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise TypeError(f"columns must be a list of column names, got {columns!r}.")
        missing = [c for c in columns if c not in present]
        if missing:
            raise ValueError(f"columns names {missing}, which are not columns: {present}.")
        chosen = [c for c in present if c in columns]
        return _checked(
            types, _Layout(chosen, chosen, [m for m in metadata if m not in chosen]), "named in columns"
        )
    references = {column: _references(ds, column) for column in metadata}
    wanted = sorted({ref for refs in references.values() for ref in refs})
    if not wanted:
        raise ValueError(
            f"{name} reads which columns hold one value per generation from the provenance of the maps that "
            f"wrote them, and the dataset has no answer metadata that names one (generation_metadata, "
            f"labelling_metadata); its columns are {present}. Name them: {name}(ds, columns=[...])."
        )
    records = lookup(wanted, store=store)
    lost = [ref for ref in wanted if ref not in records]
    if lost:
        likely = [c for c in present if c == "generations" or c in GENERATE_COLUMNS]
        raise ValueError(
            f"{name} reads which columns hold one value per generation from the provenance records of the "
            f"maps that wrote them, and the record of map function(s) {lost} is not in this process or the "
            "response store: a dataset made on another machine or read from the Hub, a store cleared since, "
            "a map run with cache=False in another process, or with another store (pass store=). Name the "
            f"columns instead: {name}(ds, columns=[...]); a generate step's are {likely} and its task's "
            "output columns."
        )
    steps = [(column, records[ref]) for column in metadata for ref in sorted(references[column])]
    generated: list[str] = []
    aligned: list[str] = []
    for column, record in steps:
        if record.get("step") == "generate":
            written = [c for c in record.get("columns", []) if c in present]
            generated += written
            if _is_list(types[column]):  # else flattened already
                aligned += written
    from_generate = bool(aligned)
    for column, record in steps:
        if record.get("step") != "label":
            continue
        # Two verdicts a row (label's swap=True): its prompts, answers and metadata are lists, one per order.
        swapped = bool((record.get("options") or {}).get("swap"))
        per_item = _is_list(types[column]) and not swapped  # a prompt per text: those lists are per text
        step = column.removesuffix("_metadata")
        per_row = {
            f"{step}_prompt",
            *((f"raw_{step}_response", f"{step}_reasoning", column) if swapped else ()),
        }
        per_text = [
            c
            for c in record.get("columns", [])
            if c in present and _is_list(types[c]) and (per_item or c not in per_row)
        ]
        if record.get("llm", {}).get("backend") == JURY:  # its other lists hold one entry per member
            per_text = [c for c in record.get("scores", {}) if c in present]
        rated = record.get("items") or _rated_before_items(record)
        if rated in aligned:
            aligned += per_text
        elif not from_generate and rated in present and _is_list(types[rated]) and per_text:
            aligned += [rated, *per_text]
    if aligned:  # a verify step's columns, one value per generation (see the module's docstring)
        aligned += [c for c in VERIFY_COLUMNS if c in present and _is_list(types[c])]
    chosen = [c for c in present if c in aligned]
    layout = _Layout(chosen, [c for c in present if c in generated], [m for m in metadata if m not in chosen])
    return _checked(types, layout, "written by mapgen with one entry per generation")


def _checked(types: Mapping[str, pa.DataType], layout: _Layout, why: str) -> _Layout:
    flat = [c for c in layout.aligned if not _is_list(types[c])]
    if flat:
        raise ValueError(
            f"column(s) {flat}, {why}, hold no lists (their type: {[str(types[c]) for c in flat]}): was the "
            "column replaced after the map? Name the per-generation columns with columns=[...]."
        )
    return layout


def _rated_before_items(record: Mapping[str, Any]) -> str:
    """The rated column of a label step recorded before records named it: ``generations``, renamed."""
    renamed = record.get("options", {}).get("input_columns")
    return str(renamed.get("generations", "generations")) if isinstance(renamed, Mapping) else "generations"


def _references(ds: Any, column: str) -> set[str]:
    """The provenance references in a metadata column (a struct, or lists of them)."""
    found: set[str] = set()
    for table in ds.select_columns([column]).with_format("arrow").iter(batch_size=_BATCH):
        array = table.column(0).combine_chunks()
        while _is_list(array.type):
            array = pc.list_flatten(array)
        if pa.types.is_struct(array.type) and array.type.get_field_index("provenance") >= 0:
            found.update(pc.unique(pc.struct_field(array, "provenance").drop_null()).to_pylist())
    return found


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _is_messages(kind: pa.DataType) -> bool:
    """Whether ``kind`` is chat messages: a list of structs with a ``role`` and a ``content``."""
    if not _is_list(kind) or not pa.types.is_struct(kind.value_type):
        return False
    names = {field.name for field in kind.value_type}
    return {"role", "content"} <= names


def _flatten(ds: Any, layout: _Layout) -> Any:
    import datasets

    if not layout.aligned:
        if INDEX in ds.column_names:
            return ds  # flat already
        raise ValueError(
            f"no column of the dataset holds one entry per generation (columns: {ds.column_names}); name "
            "them with columns=[...]."
        )
    if INDEX in ds.column_names:
        raise ValueError(f"the dataset has a {INDEX!r} column already: rename it first.")
    features = datasets.Features(
        {
            **{
                name: feature.feature if name in layout.aligned else feature
                for name, feature in ds.features.items()
            },
            INDEX: datasets.Value("int64"),
        }
    )
    unpack = partial(_unpack, aligned=tuple(layout.aligned), first_only=tuple(layout.row_metadata))
    flat = ds.with_format("arrow").map(
        unpack,
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,
        features=features,
        desc="Flatten",
    )
    return flat.with_format(ds.format["type"], **ds.format["format_kwargs"])


def _unpack(
    table: pa.Table, indices: list[int], *, aligned: tuple[str, ...], first_only: tuple[str, ...]
) -> pa.Table:
    """One batch, one row per generation (see :func:`flatten`)."""
    lengths = {name: pc.fill_null(pc.list_value_length(table.column(name)), 0) for name in aligned}
    first = aligned[0]
    counts = lengths[first]
    for name in aligned[1:]:
        differ = pc.not_equal(counts, lengths[name])
        if pc.any(differ).as_py():
            at = pc.index(differ, True).as_py()
            raise ValueError(
                f"row {indices[at]} has {lengths[name][at].as_py()} value(s) in {name!r} and "
                f"{counts[at].as_py()} in {first!r}, which should hold one per generation: flattening "
                "would misalign them. Was a column edited after the map? Name the per-generation columns "
                "with columns=[...]."
            )
    n = counts.to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pa.array(np.repeat(np.arange(len(n)), n))
    index = pa.array(np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n), pa.int64())
    out: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if name in aligned:
            out[name] = pc.list_flatten(column)
        elif name in first_only:
            taken = column.take(parents)
            out[name] = pc.if_else(pc.equal(index, 0), taken, pa.scalar(None, taken.type))
        else:
            out[name] = column.take(parents)
    out[INDEX] = index
    return pa.table(out)


def _answers(
    flat: Any, errors: str | None, source: str, conversation: bool
) -> tuple[list[int], Counter[str]]:
    """The rows of a flat dataset whose answer makes SFT messages, and the others counted by why not."""
    kept: list[int] = []
    left_out: Counter[str] = Counter()
    wanted = [c for c in (errors, source) if c is not None]
    position = 0
    for table in flat.select_columns(wanted).with_format("arrow").iter(batch_size=_BATCH):
        values = table.column(source).to_pylist()
        failures = table.column(errors).to_pylist() if errors else [None] * len(values)
        for error, value in zip(failures, values, strict=True):
            if error is not None:
                left_out[error_kind(error) or "unknown"] += 1
            elif value is None:
                left_out["no answer"] += 1
            elif conversation and (not value or value[-1].get("role") != "assistant"):
                left_out["no assistant turn"] += 1
            else:
                kept.append(position)
            position += 1
    return kept, left_out


def _messages(
    batch: Mapping[str, list[Any]],
    *,
    prompt: str,
    answer: str,
    conversation: str | None,
    keep: list[str],
    fields: Sequence[str] = (),
    metadata: str | None = None,
) -> dict[str, list[Any]]:
    if conversation is not None:
        messages = [[_message(m) for m in value] for value in batch[conversation]]
    else:
        texts = list(batch[answer])
        for i, meta in enumerate(batch[metadata] if metadata else []):
            if meta and meta.get("repaired"):
                texts[i] = json.dumps({field: batch[field][i] for field in fields}, ensure_ascii=False)
        messages = [
            [*(_message(m) for m in asked or []), {"role": "assistant", "content": text}]
            for asked, text in zip(batch[prompt], texts, strict=True)
        ]
    return {"messages": messages, **{c: batch[c] for c in keep}}


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    return {"role": message["role"], "content": message["content"]}
