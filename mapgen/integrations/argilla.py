"""Human review in Argilla: a generated or labelled dataset as an Argilla v2 dataset.

Two layers:

- :func:`argilla_spec` reads the dataset and the task and describes the Argilla dataset as plain data
  (fields, questions, metadata properties, and records with their suggestions and metadata). It needs
  neither the ``argilla`` package nor a server.
- :func:`to_argilla` turns that description into ``argilla`` objects (``rg.Dataset`` with its
  ``rg.Settings``, and ``rg.Record`` s), and :func:`push_to_argilla` creates the dataset on a server or
  updates it. ``argilla`` is imported only there: its v2 SDK connects to its server as soon as a
  settings object is built, so it needs a client (or ``ARGILLA_API_URL`` / ``ARGILLA_API_KEY``).

Layouts (REFERENCE §8): each task declares its own, :meth:`mapgen.Task.review` (a
:class:`~mapgen.core.review.ReviewLayout`); this module reads only that declaration.

- **One record per row** (UltraFeedback, JudgeLM, UltraJudge, quality scorer, UltraCM, Prometheus, and
  generation tasks): fields are the layout's text inputs (``input`` first, Prometheus'
  ``ref_completion``...) and ``generation-1`` ... ``generation-N``. Questions: a rating
  ``generation-i-rating`` per generation on the layout's scale and rubric, and one text question
  (``rationale``, or ``critique`` for the critique tasks). Suggestions: the outputs the layout names (the
  judge's ratings and its rationales), with the labelling model as agent.
- **One record per generated entry** (Self-Instruct, Evol-Instruct, Evol-Complexity, complexity scorer):
  fields ``input`` (the seed or the original instruction, when the dataset has it) and the entry
  (``instruction``); questions ``rating`` (the complexity scorer's 1 to 10 as a suggestion; else a 1-to-5
  quality rating for the reviewer) and ``rationale``.

- **One record per structured answer** (:class:`~mapgen.StructuredTask`, or any layout with
  ``answer_fields``): fields are the row's inputs and one text field per field of the answer; questions,
  one per answer field: a label question (``<field>-label``) for a ``Literal``, enum or boolean field with
  its values as labels, a rating (``<field>-rating``) for an integer bounded within 0 to 10, else a text
  question (``<field>-correction``) where the reviewer writes the right value. Each question's suggestion
  is the model's value, with the generation model as agent.

The task is read from the dataset's provenance (:mod:`mapgen.mapping.provenance`) when none is passed:
each answer's metadata names the map function that wrote it, and the last step is reviewed (the label
step of labelled data, else the generate step). A map function is found in the process that built it.

Metadata: ``generation_model``, ``labelling_model``, lengths in characters (``input_length``,
``generation-i-length`` or ``instruction_length``), ``rating_gap`` (the gap between the two best
ratings of a row: small gaps are the pairs worth a human look), and ``labelling_failed``.

Record ids are a digest of the record's field values (plus a counter for exact duplicates), so pushing
the same dataset again, relabelled or not, updates its records in place instead of adding copies. Every
record's ``row_index`` metadata is its row in the pushed data (a sample's records keep theirs), which
:func:`mapgen.pull_from_argilla` (:mod:`mapgen.integrations.argilla_pull`) checks when it reads the
reviews back.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from mapgen.core.keywords import checked_keywords
from mapgen.core.review import AnswerField, ReviewLayout, answer_text
from mapgen.core.urls import mask_url
from mapgen.errors import ArgillaUnreachable
from mapgen.mapping.provenance import lookup, map_function
from mapgen.tasks.base import Task

if TYPE_CHECKING:
    import argilla as rg
    import datasets

_NAME = re.compile(r"[^a-z0-9_-]+")

MAX_BATCH_SIZE = 500
"""The most records argilla-server takes in one upsert request (the SDK's ``MAX_RECORDS_PER_UPSERT_BULK``):
a larger ``batch_size`` is cut to it, as the SDK would, but without its warning."""


@dataclass(frozen=True)
class FieldSpec:
    """A text field shown to the reviewer."""

    name: str
    title: str
    required: bool = True


@dataclass(frozen=True)
class QuestionSpec:
    """A question: ``kind`` is ``"rating"`` (``values``), ``"label"`` (``labels``) or ``"text"``."""

    name: str
    title: str
    kind: str
    description: str | None = None
    values: tuple[int, ...] = ()
    required: bool = True
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetadataSpec:
    """A metadata property: ``kind`` is ``"terms"``, ``"integer"`` or ``"float"``."""

    name: str
    title: str
    kind: str


_ROW_INDEX = MetadataSpec("row_index", "Row in the dataset", "integer")
"""Every record's row in the pushed dataset: :func:`mapgen.pull_from_argilla` checks it; a sample keeps it."""


@dataclass(frozen=True)
class RecordSpec:
    """One record: its stable ``id``, field values, suggestions (question -> value) and metadata, and
    ``position``, where its content is in the dataset: ``(row,)`` for a record per row, ``(row,
    generation)`` for one per generated entry or answer, ``(row, generation, entry)`` for an entry of a
    generation that is a list (Self-Instruct's instructions)."""

    id: str
    fields: dict[str, str]
    suggestions: dict[str, Any]
    agent: str | None
    metadata: dict[str, Any]
    position: tuple[int, ...] = ()


@dataclass(frozen=True)
class ArgillaSpec:
    """An Argilla dataset described as plain data: what :func:`to_argilla` builds objects from."""

    guidelines: str
    fields: list[FieldSpec]
    questions: list[QuestionSpec]
    metadata: list[MetadataSpec]
    records: list[RecordSpec] = field(repr=False)


class ArgillaExport(NamedTuple):
    """What :func:`to_argilla` returns: an ``rg.Dataset`` not yet created on the server, and its records."""

    dataset: rg.Dataset
    records: list[rg.Record]


def argilla_spec(
    ds: datasets.Dataset | Iterable[Mapping[str, Any]], task: Any = None, *, store: str | None = None
) -> ArgillaSpec:
    """The Argilla dataset that :func:`to_argilla` builds, as plain data (no ``argilla``, no server).

    ``task`` is the task that wrote the dataset's last step (the labelling task for labelled data), or
    the callable of :func:`mapgen.generate`, :func:`mapgen.label` or :func:`mapgen.pipeline`; ``None``:
    the map function the answers' provenance names (see :func:`task_from_provenance`; ``store``: where
    records of maps run elsewhere are looked up).

    Raises:
        ValueError: no ``task``, and the provenance names none, several, or one built in another process.

    Example:
        >>> import mapgen
        >>> rows = [{"input": "2 + 2?", "generations": ["4", "5"], "rating": [5.0, 1.0],
        ...          "rationale": ["Right.", "Wrong."], "labelling_model": "judge"}]
        >>> spec = argilla_spec(rows, mapgen.UltraFeedbackTask.for_overall_quality())
        >>> [f.name for f in spec.fields]
        ['input', 'generation-1', 'generation-2']
        >>> [q.name for q in spec.questions]
        ['generation-1-rating', 'generation-2-rating', 'rationale']
        >>> spec.records[0].suggestions["generation-1-rating"], spec.records[0].metadata["rating_gap"]
        (5, 4.0)
    """
    rows = _rows(ds)
    task, input_columns = _task_of(task_from_provenance(rows, store=store) if task is None else task)
    layout = task.review()
    if not isinstance(layout, ReviewLayout):
        raise TypeError(f"{type(task).__name__}.review() must return a mapgen.ReviewLayout, got {layout!r}.")
    if layout.answer_fields:
        return _answer_spec(rows, task, layout, input_columns)
    if layout.per_generation:
        return _instruction_spec(rows, task, layout, input_columns)
    return _generations_spec(rows, task, layout, input_columns)


@checked_keywords
def to_argilla(
    ds: datasets.Dataset | Iterable[Mapping[str, Any]],
    task: Any = None,
    *,
    name: str = "mapgen",
    workspace: str | None = None,
    client: rg.Argilla | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    store: str | None = None,
) -> ArgillaExport:
    """An Argilla v2 dataset (settings, not yet created) and its records, for human review of ``ds``.

    Fields, questions, suggestions (agent: the labelling model) and metadata follow the layouts in the
    module docs. Building Argilla settings talks to the server, so this needs ``client`` (an
    ``rg.Argilla``), or ``api_url`` and ``api_key`` (default: ``ARGILLA_API_URL``, ``ARGILLA_API_KEY``).
    :func:`push_to_argilla` does the rest (create or update, then log the records). ``task`` and
    ``store``: as in :func:`argilla_spec`.

    Raises:
        ArgillaUnreachable: the server cannot be reached (a ``ConnectionError`` naming its URL).

    Example (needs an Argilla server):
        >>> client = rg.Argilla(api_url="http://localhost:6900", api_key="argilla.apikey")  # doctest: +SKIP
        >>> dataset, records = mapgen.to_argilla(ds, task, client=client)  # doctest: +SKIP
        >>> dataset.create().records.log(records)  # doctest: +SKIP
    """
    rg = _import_argilla()
    spec = argilla_spec(ds, task, store=store)
    with _reaching(rg, client, api_url):
        return _export(rg, spec, name, workspace, client or _client(rg, api_url, api_key))


def _export(rg: Any, spec: ArgillaSpec, name: str, workspace: str | None, client: Any) -> ArgillaExport:
    settings = rg.Settings(
        guidelines=spec.guidelines,
        fields=[_field(rg, f, client) for f in spec.fields],
        questions=[_question(rg, q, client) for q in spec.questions],
        metadata=[_metadata(rg, m, client) for m in spec.metadata],
        allow_extra_metadata=False,
    )
    dataset = rg.Dataset(name=name, workspace=workspace, settings=settings, client=client)
    return ArgillaExport(dataset, [_record(rg, r) for r in spec.records])


@checked_keywords
def push_to_argilla(
    ds: datasets.Dataset | Iterable[Mapping[str, Any]],
    task: Any = None,
    *,
    name: str,
    workspace: str | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    client: rg.Argilla | None = None,
    batch_size: int = 256,
    store: str | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> rg.Dataset:
    """Create the Argilla dataset ``name`` for ``ds`` (see :func:`to_argilla`), or update it: records
    already there (same id) get their fields, suggestions and metadata updated, new ones are added.

    ``task`` defaults to the one the dataset's provenance names (:func:`task_from_provenance`). Records
    are sent ``batch_size`` at a time (at most :data:`MAX_BATCH_SIZE`, and never more than there are).

    ``sample``: push the records of ``sample`` rows drawn at random (without replacement, with
    ``random.Random(seed)``: the same seed draws the same rows; all rows when ``sample`` is at least
    their number) for a review of part of the data. Every record keeps its row's index (the
    ``row_index`` metadata), so :func:`mapgen.pull_from_argilla` puts the answers back on the right rows.

    Returns the ``rg.Dataset`` on the server.

    Raises:
        ValueError: the dataset exists with other fields or questions (for example fewer generations):
            push under a new name then; or no ``task`` and the provenance names none or several.
        ArgillaUnreachable: the server cannot be reached (a ``ConnectionError`` naming its URL).

    Example (needs an Argilla server):
        >>> mapgen.push_to_argilla(
        ...     ds, name="review", api_url="http://localhost:6900", api_key="argilla.apikey"
        ... )  # doctest: +SKIP
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise ValueError(f"sample must be a positive int (a number of rows) or None, got {sample!r}.")
    rg = _import_argilla()
    rows = _rows(ds)
    spec = argilla_spec(rows, task, store=store)
    if sample is not None:
        # The layout and the ids come from all rows: a sample's records are those a full push would make.
        drawn = set(random.Random(seed).sample(range(len(rows)), min(sample, len(rows))))
        spec = replace(spec, records=[r for r in spec.records if r.position[0] in drawn])
    with _reaching(rg, client, api_url):
        client = client or _client(rg, api_url, api_key)
        export = _export(rg, spec, name, workspace, client)
        existing = _existing(client, name, workspace)
        if existing is None:
            dataset = export.dataset.create()
        else:
            dataset = existing
            _check_compatible(dataset, export.dataset, name)
        if export.records:
            # The SDK warns whenever batch_size is more than the records (or its limit): send what fits.
            size = min(batch_size, len(export.records), MAX_BATCH_SIZE)
            dataset.records.log(export.records, batch_size=size)
    return dataset


def task_from_provenance(
    ds: datasets.Dataset | Iterable[Mapping[str, Any]], *, store: str | None = None
) -> Any:
    """The map function whose task a review of ``ds`` follows, read from the answers' provenance: each
    answer's metadata (``generation_metadata``, ``labelling_metadata``) names the map function that
    wrote it (:mod:`mapgen.mapping.provenance`). Labelled data is reviewed by its label step, other data
    by its generate step; maps of the same task and columns count once.

    The function itself is known in the process that built it; ``store`` (default: the default response
    store) is read for the records of maps run elsewhere, to name them in errors.

    Raises:
        ValueError: the rows name no map (no answer metadata with a ``provenance``), several different
            ones at that step (the message names each: task, rated column, model), or one built in
            another process; pass the task then.

    Example:
        >>> import datasets, mapgen
        >>> fn = mapgen.generate(mapgen.LlamaCppLLM(), mapgen.TextGenerationTask())
        >>> rows = [{"input": "Hi", "generations": ["Hello"],
        ...          "generation_metadata": [{"provenance": fn.provenance}]}]
        >>> task_from_provenance(rows) == fn  # (or an equal one built earlier)
        True
    """
    rows = _rows(ds)
    steps: dict[str, set[str]] = {"generate": set(), "label": set()}
    for row in rows:
        for column, value in row.items():
            if column.endswith("_metadata"):
                step = "label" if column.startswith("labelling") else "generate"
                steps[step].update(_references(value))
    step = "label" if steps["label"] else "generate"
    references = sorted(steps[step])
    if not references:
        raise ValueError(
            "no task was passed, and the dataset names none: its rows have no answer metadata with a "
            "provenance (generation_metadata, labelling_metadata; were those columns removed?). Pass the "
            "task that wrote the data: push_to_argilla(ds, task, name=...)."
        )
    functions = {ref: map_function(ref) for ref in references}
    records = lookup(references, store=store)  # this process's first, then the store's
    choices: dict[str, str] = {}  # what its review follows (task and options) -> how an error names it
    for ref in references:
        record = records.get(ref)
        key = json.dumps([record.get("task"), record.get("options")], sort_keys=True) if record else ref
        choices.setdefault(key, _described(ref, functions[ref], record))
    if len(choices) > 1:
        named = "; ".join(choices.values())
        raise ValueError(
            f"no task was passed, and the dataset holds the answers of {len(choices)} different {step} "
            f"steps: {named}. Pass the one to review: push_to_argilla(ds, task, name=...), with task that "
            "step's task or map function."
        )
    found = next((fn for fn in functions.values() if fn is not None), None)
    if found is None:
        raise ValueError(
            f"no task was passed, and the {step} step that wrote the dataset "
            f"({next(iter(choices.values()))}) ran in another process: a map function is found only in the "
            "process that built it. Pass its task: push_to_argilla(ds, task, name=...)."
        )
    return found


def _references(value: Any) -> set[str]:
    """The provenance references in an answer metadata value (a dict, or lists of them)."""
    if isinstance(value, Mapping):
        ref = value.get("provenance")
        return {ref} if isinstance(ref, str) else set()
    if isinstance(value, (list, tuple)):
        return {ref for item in value for ref in _references(item)}
    return set()


def _described(ref: str, fn: Any, record: Mapping[str, Any] | None) -> str:
    """A map step as an error names it: task class, the column it rated, its model, its reference."""
    if fn is not None:
        task, model = type(fn.task).__name__, fn.llm.model_name
        items = getattr(fn.task, "items", None) if fn.step == "label" else None
        if isinstance(items, str):
            items = dict(getattr(fn, "input_columns", None) or {}).get(items, items)
    elif record:
        task = str((record.get("task") or {}).get("class", "?")).rpartition(".")[2]
        model, items = (record.get("llm") or {}).get("model"), record.get("items")
    else:
        return f"map {ref} (its provenance record is not in this process or the response store)"
    rated = f", rating column {items!r}" if items else ""
    return f"{task} (model {model!r}{rated}, provenance {ref})"


@contextmanager
def _reaching(rg: Any, client: Any, api_url: str | None) -> Iterator[None]:
    """Turn the SDK's bare ``httpx`` transport errors into one that names the server's URL."""
    import httpx

    try:
        yield
    except httpx.TransportError as error:
        url = getattr(client, "api_url", None) or api_url or os.environ.get("ARGILLA_API_URL")
        if not url:
            url = inspect.signature(rg.Argilla).parameters["api_url"].default
        message = (
            f"could not reach the Argilla server at {url} ({type(error).__name__}: {error}). Check that the "
            "server is running and reachable from here, and that api_url (or ARGILLA_API_URL) is its address."
        )
        # Not chained: the httpx error holds the request, and its headers hold the API key.
        raise ArgillaUnreachable(mask_url(message)) from None


# --- reading the dataset --------------------------------------------------------------------------


def _task_of(task: Any) -> tuple[Task, Mapping[str, str]]:
    """The task and its input column mapping, from a task or one of mapgen's callables."""
    if hasattr(task, "label") and hasattr(task, "generate") and not isinstance(task, Task):
        task = task.label  # a pipeline(): its data ends with the labelling step
    if not isinstance(task, Task) and isinstance(getattr(task, "task", None), Task):
        return task.task, dict(getattr(task, "input_columns", {}) or {})
    if not isinstance(task, Task):
        raise TypeError(
            f"task must be a mapgen Task (e.g. mapgen.UltraFeedbackTask.for_overall_quality()) or the "
            f"callable of mapgen.generate/label/pipeline, got {task!r}."
        )
    return task, {}


def _rows(ds: Any) -> list[dict[str, Any]]:
    if isinstance(ds, Mapping):
        raise TypeError("pass a datasets.Dataset or a list of rows (dicts), not a dict of columns.")
    return [dict(row) for row in ds]


def _name(text: str) -> str:
    name = _NAME.sub("_", text.lower()).strip("_")
    return name or "field"


def _length(text: Any) -> int | None:
    return len(text) if isinstance(text, str) else None


def _rating_value(value: Any, scale: tuple[int, int]) -> int | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:  # NaN
        return None
    return min(max(round(value), scale[0]), scale[1])


def _gap(ratings: Sequence[Any]) -> float | None:
    values = sorted((float(r) for r in ratings if isinstance(r, (int, float)) and r == r), reverse=True)
    return round(values[0] - values[1], 4) if len(values) >= 2 else None


def _record_ids(contents: list[Any]) -> list[str]:
    """Stable ids from each record's content; exact duplicates get ``-2``, ``-3``... in order."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for content in contents:
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:24]
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest]}")
    return ids


def _explanation(layout: ReviewLayout, row: Mapping[str, Any], kept: list[int]) -> str | None:
    """The suggestion for the text question: the layout's explanation output for a row, as one text."""
    if layout.explanation is None:
        return None
    if callable(layout.explanation):
        return layout.explanation(row, kept)
    value = row.get(layout.explanation)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (list, tuple)):
        parts = [
            f"Generation {i + 1}: {value[i]}"
            for i in kept
            if i < len(value) and isinstance(value[i], str) and value[i].strip()
        ]
        return "\n".join(parts) or None
    return None


def _text_fields(task: Task, layout: ReviewLayout) -> dict[str, str]:
    """The input columns to show beside the entries, each with its title, ``input`` first."""
    if layout.text_fields is not None:
        return dict(layout.text_fields)
    names = sorted((name for name in task.inputs if name != layout.items), key=lambda name: name != "input")
    return {name: "Instruction" if name == "input" else name.replace("_", " ").capitalize() for name in names}


def _generations_spec(
    rows: list[dict[str, Any]], task: Task, layout: ReviewLayout, input_columns: Mapping[str, str]
) -> ArgillaSpec:
    items = layout.items
    items_column = input_columns.get(items, items)
    titles = _text_fields(task, layout)
    text_inputs = [
        name
        for name in titles
        if any(isinstance(row.get(input_columns.get(name, name)), str) for row in rows)
    ]
    count = max((len(row.get(items_column) or []) for row in rows), default=0) or 1
    scale = layout.scale
    score_column = layout.rating_suggestion
    text_name, text_title = layout.text_question or ("rationale", "Why these ratings?")

    fields = [
        FieldSpec(
            _name(name),
            titles[name],
            required=all(isinstance(row.get(input_columns.get(name, name)), str) for row in rows),
        )
        for name in text_inputs
    ]
    fields += [FieldSpec(f"generation-{i}", f"Generation {i}", required=False) for i in range(1, count + 1)]
    # A missing (None) generation has no field, so a reviewer could not answer a required question on it
    always = [
        all(
            isinstance(row.get(items_column), list)
            and i < len(row[items_column])
            and isinstance(row[items_column][i], str)
            and bool(row[items_column][i])
            for row in rows
        )
        for i in range(count)
    ]
    if not any(always):
        always[0] = True  # Argilla needs one required question
    description = layout.rubric
    questions = [
        QuestionSpec(
            f"generation-{i + 1}-rating",
            f"Rate generation {i + 1}",
            "rating",
            description=description,
            values=tuple(range(scale[0], scale[1] + 1)),
            required=always[i],
        )
        for i in range(count)
    ]
    questions.append(QuestionSpec(text_name, text_title, "text", required=False))

    has = {name for row in rows for name in row}
    metadata = [MetadataSpec("generation_model", "Generation model", "terms")]
    if "labelling_model" in has:
        metadata.append(MetadataSpec("labelling_model", "Labelling model", "terms"))
    if text_inputs:
        metadata.append(MetadataSpec(f"{_name(text_inputs[0])}_length", "Instruction length", "integer"))
    metadata += [
        MetadataSpec(f"generation-{i}-length", f"Generation {i} length", "integer")
        for i in range(1, count + 1)
    ]
    if score_column and score_column in has:
        metadata.append(MetadataSpec("rating_gap", "Gap between the two best ratings", "float"))
    if "labelling_error" in has:
        metadata.append(MetadataSpec("labelling_failed", "Labelling failed", "terms"))
    metadata.append(_ROW_INDEX)

    records, contents = [], []
    for index, row in enumerate(rows):
        texts = row.get(items_column) or []
        field_values = {
            _name(name): row[input_columns.get(name, name)]
            for name in text_inputs
            if isinstance(row.get(input_columns.get(name, name)), str)
        }
        for i, text in enumerate(texts[:count]):
            if isinstance(text, str) and text:
                field_values[f"generation-{i + 1}"] = text
        kept = [i for i, text in enumerate(texts[:count]) if isinstance(text, str) and text]
        suggestions: dict[str, Any] = {}
        ratings = row.get(score_column) if score_column else None
        if isinstance(ratings, (list, tuple)):
            for i in kept:
                value = _rating_value(ratings[i], scale) if i < len(ratings) else None
                if value is not None:
                    suggestions[f"generation-{i + 1}-rating"] = value
        explanation = _explanation(layout, row, kept)
        if explanation:
            suggestions[text_name] = explanation
        meta: dict[str, Any] = {
            "generation_model": sorted({m for m in row.get("generation_model") or [] if isinstance(m, str)})
            or None,
            "labelling_model": row.get("labelling_model"),
        }
        if text_inputs:
            meta[f"{_name(text_inputs[0])}_length"] = _length(
                row.get(input_columns.get(text_inputs[0], text_inputs[0]))
            )
        for i in range(count):
            meta[f"generation-{i + 1}-length"] = _length(texts[i]) if i < len(texts) else None
        if isinstance(ratings, (list, tuple)):
            meta["rating_gap"] = _gap([ratings[i] for i in kept if i < len(ratings)])
        if "labelling_error" in has:
            meta["labelling_failed"] = "yes" if row.get("labelling_error") else "no"
        meta["row_index"] = index
        names = {m.name for m in metadata}
        records.append((field_values, suggestions, row.get("labelling_model"), _clean(meta, names), (index,)))
        contents.append(field_values)
    guidelines = layout.guidelines or _guidelines(task, per_instruction=False)
    return _spec(guidelines, fields, questions, metadata, records, contents)


def _spec(
    guidelines: str,
    fields: list[FieldSpec],
    questions: list[QuestionSpec],
    metadata: list[MetadataSpec],
    records: list[tuple[Any, ...]],
    contents: list[Any],
) -> ArgillaSpec:
    """The dataset's spec, each record with its id (from its fields' contents, :func:`_record_ids`)."""
    return ArgillaSpec(
        guidelines=guidelines,
        fields=fields,
        questions=questions,
        metadata=metadata,
        records=[
            RecordSpec(id=record_id, fields=f, suggestions=s, agent=a, metadata=m, position=p)
            for record_id, (f, s, a, m, p) in zip(_record_ids(contents), records, strict=True)
        ],
    )


def _is_chat(value: Any) -> bool:
    """Whether ``value`` is a conversation in the chat format (a list of ``{"role", "content"}``)."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(m, Mapping) and "role" in m for m in value)
    )


def _transcript(conversation: Sequence[Mapping[str, Any]]) -> str:
    """A conversation as text for reviewers: ``Role: content`` turns, a blank line apart."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m.get('content') or ''}" for m in conversation)


def _instruction_spec(
    rows: list[dict[str, Any]], task: Task, layout: ReviewLayout, input_columns: Mapping[str, str]
) -> ArgillaSpec:
    instructions_column = input_columns.get(layout.items, layout.items)
    entry = _name(layout.items.removesuffix("s"))  # "instructions": one "instruction" per record
    scale = layout.scale
    titles = _text_fields(task, layout)
    shown = [
        name
        for name in titles
        if any(isinstance(row.get(input_columns.get(name, name)), str) for row in rows)
    ]
    fields = [FieldSpec(_name(name), titles[name], required=False) for name in shown]
    fields.append(FieldSpec(entry, entry.replace("_", " ").capitalize()))
    text_name, text_title = layout.text_question or ("rationale", "Why this rating?")
    questions = [
        QuestionSpec(
            "rating",
            layout.rating_title,
            "rating",
            description=layout.rubric,
            values=tuple(range(scale[0], scale[1] + 1)),
        ),
        QuestionSpec(text_name, text_title, "text", required=False),
    ]
    has = {name for row in rows for name in row}
    metadata = [MetadataSpec("generation_model", "Generation model", "terms")]
    if "labelling_model" in has:
        metadata.append(MetadataSpec("labelling_model", "Labelling model", "terms"))
    metadata += [
        MetadataSpec(f"{_name(name)}_length", f"{name.replace('_', ' ').capitalize()} length", "integer")
        for name in shown
    ]
    metadata.append(
        MetadataSpec(f"{entry}_length", f"{entry.replace('_', ' ').capitalize()} length", "integer")
    )
    metadata.append(_ROW_INDEX)
    names = {m.name for m in metadata}

    entries = []  # (entry, generation model, rating, explanation, row, position)
    for index, row in enumerate(rows):
        values = row.get(instructions_column) or []
        models = row.get("generation_model") or []
        ratings = row.get(layout.rating_suggestion) if layout.rating_suggestion else None
        explained = row.get(layout.explanation) if isinstance(layout.explanation, str) else None
        for i, value in enumerate(values):
            model = models[i] if i < len(models) else None
            rating = ratings[i] if isinstance(ratings, (list, tuple)) and i < len(ratings) else None
            if callable(layout.explanation):
                explanation = layout.explanation(row, [i])
            elif isinstance(explained, (list, tuple)) and i < len(explained):
                explanation = explained[i] if isinstance(explained[i], str) else None
            else:
                explanation = None
            # Self-Instruct: a list of instructions each; a conversation: one transcript
            nested: list[tuple[tuple[int, ...], Any]]
            if _is_chat(value):
                nested = [((index, i), _transcript(value))]
            elif isinstance(value, (list, tuple)):
                nested = [((index, i, j), v) for j, v in enumerate(value)]
            else:
                nested = [((index, i), value)]
            for position, instruction in nested:
                if isinstance(instruction, str) and instruction.strip():
                    entries.append((instruction, model, rating, explanation, row, position))
    records, contents = [], []
    for instruction, model, rating, explanation, row, position in entries:
        field_values = {entry: instruction}
        for name in shown:
            if isinstance(row.get(input_columns.get(name, name)), str):
                field_values[_name(name)] = row[input_columns.get(name, name)]
        suggestions: dict[str, Any] = {}
        value = _rating_value(rating, scale)
        if value is not None:
            suggestions["rating"] = value
        if explanation and explanation.strip():
            suggestions[text_name] = explanation.strip()
        meta = {"generation_model": model, "labelling_model": row.get("labelling_model")}
        for name in shown:
            meta[f"{_name(name)}_length"] = _length(row.get(input_columns.get(name, name)))
        meta[f"{entry}_length"] = len(instruction)
        meta["row_index"] = position[0]
        records.append((field_values, suggestions, row.get("labelling_model"), _clean(meta, names), position))
        contents.append(field_values)
    guidelines = layout.guidelines or _guidelines(task, per_instruction=True)
    return _spec(guidelines, fields, questions, metadata, records, contents)


_SUFFIXES = {"label": "label", "rating": "rating", "text": "correction"}


def _answer_question(answer: AnswerField, rubric: str) -> QuestionSpec:
    """The question on one field of a structured answer: see the module docs."""
    title = answer.name.replace("_", " ").capitalize()
    name = f"{_name(answer.name)}-{_SUFFIXES[answer.question]}"
    if answer.labels:
        return QuestionSpec(name, f"{title}: the right label", "label", rubric, labels=answer.labels)
    if answer.scale:
        values = tuple(range(answer.scale[0], answer.scale[1] + 1))
        return QuestionSpec(name, f"{title}: the right value", "rating", rubric, values=values)
    description = f"{rubric} Lists and objects are JSON."
    return QuestionSpec(name, f"{title}: the right value", "text", description)


def _answer_suggestion(answer: AnswerField, value: Any) -> Any:
    """The model's value of one field as its question's suggestion (``None``: none that fits)."""
    if answer.labels:
        return answer_text(value) if answer_text(value) in answer.labels else None
    if answer.scale:
        fits = isinstance(value, int) and not isinstance(value, bool)
        return value if fits and answer.scale[0] <= value <= answer.scale[1] else None
    return answer_text(value) or None


def _answer_spec(
    rows: list[dict[str, Any]], task: Task, layout: ReviewLayout, input_columns: Mapping[str, str]
) -> ArgillaSpec:
    answers = layout.answer_fields
    titles = _text_fields(task, layout)
    outputs = {a.name for a in answers}
    shown = [
        name
        for name in titles
        if name not in outputs
        and any(isinstance(row.get(input_columns.get(name, name)), str) for row in rows)
    ]
    fields = [FieldSpec(_name(name), titles[name], required=False) for name in shown]
    fields += [
        FieldSpec(_name(a.name), a.name.replace("_", " ").capitalize(), required=False) for a in answers
    ]
    questions = [replace(_answer_question(a, layout.rubric), required=a.required) for a in answers]
    if not any(q.required for q in questions):
        questions[0] = replace(questions[0], required=True)  # Argilla needs one required question
    metadata = [MetadataSpec("generation_model", "Generation model", "terms")]
    metadata += [
        MetadataSpec(f"{_name(name)}_length", f"{name.replace('_', ' ').capitalize()} length", "integer")
        for name in shown
    ]
    metadata.append(_ROW_INDEX)
    names = {m.name for m in metadata}

    records, contents = [], []
    for index, row in enumerate(rows):
        columns: dict[str, list[Any]] = {
            a.name: value if isinstance(value := row.get(a.name), list) else [] for a in answers
        }
        models = row.get("generation_model") or []
        for i in range(max(len(values) for values in columns.values())):
            values = {a.name: columns[a.name][i] if i < len(columns[a.name]) else None for a in answers}
            if all(value is None for value in values.values()):
                continue  # a failed answer: nothing to review
            field_values = {
                _name(name): row[input_columns.get(name, name)]
                for name in shown
                if isinstance(row.get(input_columns.get(name, name)), str)
            }
            suggestions: dict[str, Any] = {}
            for answer, question in zip(answers, questions, strict=True):
                value = values[answer.name]
                if value is None or answer_text(value) == "":
                    continue
                field_values[_name(answer.name)] = answer_text(value)
                suggestion = _answer_suggestion(answer, value)
                if suggestion is not None:
                    suggestions[question.name] = suggestion
            model = models[i] if isinstance(models, list) and i < len(models) else None
            meta = {"generation_model": model, "row_index": index}
            for name in shown:
                meta[f"{_name(name)}_length"] = _length(row.get(input_columns.get(name, name)))
            records.append((field_values, suggestions, model, _clean(meta, names), (index, i)))
            contents.append(field_values)
    return ArgillaSpec(
        guidelines=layout.guidelines
        or (
            f"Structured answers written with mapgen ({type(task).__name__}), one per record, each field "
            "shown on its own. For each field, the model's value is suggested: keep it if it is right for "
            "the input, or correct it."
        ),
        fields=fields,
        questions=questions,
        metadata=metadata,
        records=[
            RecordSpec(id=record_id, fields=f, suggestions=s, agent=a, metadata=m, position=p)
            for record_id, (f, s, a, m, p) in zip(_record_ids(contents), records, strict=True)
        ],
    )


def _clean(meta: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k in names and v is not None}


def _guidelines(task: Task, *, per_instruction: bool) -> str:
    kind = type(task).__name__
    if per_instruction:
        return (
            f"Instructions written with mapgen ({kind}), one per record. Rate each instruction; where a "
            "model's rating is suggested, accept it or correct it, and say why in the rationale."
        )
    return (
        f"Generations rated with mapgen ({kind}). Read the instruction and each generation, then rate "
        "each generation on the scale in its question's description. The judge model's ratings and "
        "rationale are suggested: accept them or correct them."
    )


# --- building argilla objects ---------------------------------------------------------------------


def _import_argilla() -> Any:
    try:
        import argilla as rg
    except ImportError as error:
        raise ImportError(
            "Exporting to Argilla needs the argilla SDK (v2): pip install 'mapgen[argilla]'."
        ) from error
    return rg


def _client(rg: Any, api_url: str | None, api_key: str | None) -> rg.Argilla:
    # Read the environment now: the SDK reads it once, when argilla is first imported.
    api_url = api_url or os.environ.get("ARGILLA_API_URL")
    api_key = api_key or os.environ.get("ARGILLA_API_KEY")
    kwargs = {k: v for k, v in {"api_url": api_url, "api_key": api_key}.items() if v is not None}
    return rg.Argilla(**kwargs)


def _field(rg: Any, spec: FieldSpec, client: Any) -> Any:
    return rg.TextField(name=spec.name, title=spec.title, required=spec.required, client=client)


def _question(rg: Any, spec: QuestionSpec, client: Any) -> Any:
    if spec.kind == "label":
        return rg.LabelQuestion(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            labels=list(spec.labels),
            required=spec.required,
            client=client,
        )
    if spec.kind == "rating":
        return rg.RatingQuestion(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            values=list(spec.values),
            required=spec.required,
            client=client,
        )
    return rg.TextQuestion(
        name=spec.name, title=spec.title, description=spec.description, required=spec.required, client=client
    )


def _metadata(rg: Any, spec: MetadataSpec, client: Any) -> Any:
    kinds = {
        "terms": rg.TermsMetadataProperty,
        "integer": rg.IntegerMetadataProperty,
        "float": rg.FloatMetadataProperty,
    }
    return kinds[spec.kind](name=spec.name, title=spec.title, client=client)


def _record(rg: Any, spec: RecordSpec) -> Any:
    suggestions = [
        rg.Suggestion(question_name=question, value=value, agent=spec.agent)
        for question, value in spec.suggestions.items()
    ]
    return rg.Record(id=spec.id, fields=spec.fields, suggestions=suggestions, metadata=spec.metadata)


def _existing(client: Any, name: str, workspace: str | None) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when the dataset is not there yet
        return client.datasets(name=name, workspace=workspace)


def _check_compatible(existing: Any, wanted: Any, name: str) -> None:
    for kind in ("fields", "questions", "metadata"):
        have = {item.name for item in getattr(existing.settings, kind)}
        need = {item.name for item in getattr(wanted.settings, kind)}
        if need - have:
            raise ValueError(
                f"Argilla dataset {name!r} exists without the {kind} {sorted(need - have)} this data needs "
                f"(it has {sorted(have)}); push under another name, or delete it first."
            )
