"""Human labels back from Argilla: the submitted responses to a dataset that
:func:`mapgen.push_to_argilla` made, as columns aligned with the generations.

The records are matched to the data by recomputing what a push of the data would send
(:func:`mapgen.integrations.argilla.argilla_spec`): each record's id is a digest of its content, and its
``row_index`` metadata names its row, so a record that the data no longer has (a row edited, removed or
moved since the push) is found and named instead of being put on the wrong row.

Columns, for the rating layouts (a record per row rating each generation, or a record per generated
entry), each cell one entry per generation (``None`` for a row nobody reviewed):

- ``human_rating``: the annotators' consensus, the median of their ratings (a float: the mean of the two
  middle ratings when their number is even), ``None`` for a generation nobody rated;
- ``human_ratings``: a rating per annotator who reviewed the row (any of its records), in the order of
  their user ids, the same for every generation of the row: position ``k`` is one person throughout the
  row, ``None`` where they left that generation unrated (:func:`mapgen.agreement` skips ``None``);
  ``None`` for a generation nobody rated;
- ``human_annotators``: how many annotators submitted the review of that generation.

Where a generation is itself a list (Self-Instruct's instructions), each of its entries gets its own
value, so the cell is a list per generation (``None`` in each column for a generation that is ``None``, a
failed one). For a structured answer (one record per answer, a question per field) the consensus of
field ``f`` is ``human_f`` (the median of ratings; the majority label or text, or ``None`` on a tie) and
the answers are ``human_f_responses`` (positions as in ``human_ratings``); ``human_annotators`` as
above. Only submitted responses count: drafts and discarded records are left out, and text questions
(``rationale``) are not read.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mapgen.core.keywords import checked_keywords
from mapgen.core.urls import mask_url
from mapgen.integrations.argilla import (
    _SUFFIXES,
    ArgillaSpec,
    RecordSpec,
    _client,
    _existing,
    _import_argilla,
    _is_chat,
    _name,
    _reaching,
    _rows,
    _task_of,
    argilla_spec,
    task_from_provenance,
)

if TYPE_CHECKING:
    import argilla as rg
    import datasets

Item = tuple[int, ...]  # (row, generation) or (row, generation, entry)


@checked_keywords
def pull_from_argilla(
    ds: datasets.Dataset | Iterable[Mapping[str, Any]],
    task: Any = None,
    *,
    name: str,
    workspace: str | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    client: rg.Argilla | None = None,
    store: str | None = None,
) -> Any:
    """``ds`` with the human reviews of the Argilla dataset ``name`` (made by
    :func:`mapgen.push_to_argilla` from ``ds``, whole or a sample) as columns aligned with the
    generations: ``human_rating`` (the annotators' consensus: the median rating), ``human_ratings`` (a
    list per generation of each annotator's rating, position ``k`` one annotator of the row throughout)
    and ``human_annotators`` (how many annotators reviewed each generation); a row nobody reviewed gets
    ``None`` in each. See the module docs for the other layouts. Pulling again replaces these columns.

    ``task``, ``store``: as in :func:`mapgen.push_to_argilla` (default: the task the provenance names).
    The server: ``client``, or ``api_url`` and ``api_key`` (default: ``ARGILLA_API_URL``,
    ``ARGILLA_API_KEY``). Returns a ``datasets.Dataset`` for a dataset, else a list of rows (dicts).

    Raises:
        ValueError: there is no Argilla dataset ``name`` (push first), it was made from another task
            (other questions), or ``ds`` changed since it was pushed: a record matches none of its rows,
            or sits on another row (the message names the row and the fields that differ).
        ArgillaUnreachable: the server cannot be reached (a ``ConnectionError`` naming its URL).

    Example (needs an Argilla server, and reviews on it):
        >>> reviewed = mapgen.pull_from_argilla(ds, name="review")  # doctest: +SKIP
        >>> reviewed[0]["human_rating"], reviewed[0]["human_ratings"]  # doctest: +SKIP
        ([4.5, 2.0], [[4, 5], [2, 2]])
    """
    rows = _rows(ds)
    task = task_from_provenance(rows, store=store) if task is None else task
    spec = argilla_spec(rows, task, store=store)
    rg_module = _import_argilla()
    with _reaching(rg_module, client, api_url):
        client = client or _client(rg_module, api_url, api_key)
        dataset = _existing(client, name, workspace)
        if dataset is None:
            where = f" in workspace {workspace!r}" if workspace else ""
            server = mask_url(str(client.api_url))
            raise ValueError(
                f"there is no Argilla dataset {name!r}{where} on {server}: push the data for "
                f"review first (mapgen.push_to_argilla(ds, name={name!r})), or check the name and workspace."
            )
        _check_questions(dataset, spec, name)
        records = list(dataset.records(with_responses=True, with_suggestions=False))
    by_id = {r.id: r for r in spec.records}
    questions = {q.name: q for q in spec.questions}
    families = _families(spec, task)
    answers: dict[str, dict[Item, dict[str, Any]]] = defaultdict(dict)  # family -> item -> user -> value
    reviewers: dict[Item, set[str]] = defaultdict(set)
    for record in records:
        wanted = _matching(record, by_id, spec, len(rows), name)
        submitted = [r for r in record.responses if r.status == "submitted"]
        for response in submitted:
            user = str(response.user_id)
            if response.question_name not in families:
                continue  # a text question: not read
            family, generation = families[response.question_name]
            item = wanted.position if generation is None else (wanted.position[0], generation)
            answers[family].setdefault(item, {})[user] = response.value
            reviewers[item].add(user)
        for user in {str(r.user_id) for r in submitted}:  # a rating left blank still counts as reviewed
            for item in _items(wanted, families):
                reviewers[item].add(user)
    shapes = _shapes(rows, task)
    nested = any(isinstance(slot, int) for shape in shapes for slot in shape)
    reviewed = {item[0] for item in reviewers}
    people = _people(reviewers)
    columns: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    for question, (family, _) in families.items():
        kinds[family] = questions[question].kind
    for family, kind in kinds.items():
        given = answers[family]
        agreed = {item: _consensus(values, kind) for item, values in given.items()}
        listed = {item: [values.get(user) for user in people[item[0]]] for item, values in given.items()}
        consensus, responses = _column_names(family)
        columns[consensus] = [_cells(i, s, agreed.get, reviewed, nested) for i, s in enumerate(shapes)]
        columns[responses] = [_cells(i, s, listed.get, reviewed, nested) for i, s in enumerate(shapes)]
    counts = Counter({item: len(users) for item, users in reviewers.items()})
    columns["human_annotators"] = [
        _cells(i, shape, counts.__getitem__, reviewed, nested) for i, shape in enumerate(shapes)
    ]
    return _with_columns(ds, rows, columns, kinds, nested)


def _check_questions(dataset: Any, spec: ArgillaSpec, name: str) -> None:
    have = {q.name for q in dataset.settings.questions}
    need = {q.name for q in spec.questions}
    if need != have:
        raise ValueError(
            f"Argilla dataset {name!r} was not made from this data and task: its questions are "
            f"{sorted(have)}, this data's would be {sorted(need)}. Pull with the task (and data) that was "
            "pushed: pull_from_argilla(ds, task, name=...)."
        )


def _families(spec: ArgillaSpec, task: Any) -> dict[str, tuple[str, int | None]]:
    """Each question read back -> (what it rates: ``"rating"`` or an answer field, the generation it rates
    when one record covers several, else ``None``)."""
    layout = _task_of(task)[0].review()
    if layout.answer_fields:
        return {f"{_name(a.name)}-{_SUFFIXES[a.question]}": (a.name, None) for a in layout.answer_fields}
    if layout.per_generation:
        return {"rating": ("rating", None)}
    return {
        q.name: ("rating", int(q.name.split("-")[1]) - 1)
        for q in spec.questions
        if q.kind == "rating" and q.name.startswith("generation-")
    }


def _items(record: RecordSpec, families: Mapping[str, tuple[str, int | None]]) -> list[Item]:
    """The items one record reviews: its generations (a record per row), else its own position."""
    generations = sorted({g for _, g in families.values() if g is not None})
    if not generations:
        return [record.position]
    shown = [g for g in generations if f"generation-{g + 1}" in record.fields]
    return [(record.position[0], g) for g in shown]


def _matching(
    record: Any, by_id: Mapping[str, RecordSpec], spec: ArgillaSpec, count: int, name: str
) -> RecordSpec:
    """The record of the data that an Argilla record reviews, or a ``ValueError`` naming what changed."""
    row = dict(record.metadata or {}).get("row_index")
    wanted = by_id.get(str(record.id))
    fix = "Pull with the data as it was pushed (the same rows, in the same order), or push it again."
    if wanted is not None and (row is None or row == wanted.position[0]):
        return wanted
    prefix = f"the data changed since it was pushed to Argilla dataset {name!r}:"
    if wanted is not None:
        raise ValueError(
            f"{prefix} the record of row {row} there is row {wanted.position[0]} here (were rows filtered, "
            f"sorted or shuffled?). {fix}"
        )
    if not isinstance(row, int):
        raise ValueError(f"{prefix} its record {record.id} matches no row here. {fix}")
    if row >= count:
        raise ValueError(f"{prefix} it holds a record of row {row}, and the data has {count} rows. {fix}")
    there = dict(record.fields)
    candidates = [r.fields for r in spec.records if r.position[0] == row] or [{}]
    here = max(candidates, key=lambda fields: sum(there.get(k) == v for k, v in fields.items()))
    differ = [k for k in sorted({*there, *here}) if there.get(k) != here.get(k)]
    said = "; ".join(f"{k!r} is {_short(there.get(k))} there and {_short(here.get(k))} here" for k in differ)
    raise ValueError(f"{prefix} row {row} differs: {said}. {fix}")


def _short(value: Any) -> str:
    if value is None:
        return "missing"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _shapes(rows: list[dict[str, Any]], task: Any) -> list[list[int | None]]:
    """Per row, per generation: ``None`` for one reviewed item, or the number of entries of a generation
    that is a list (each reviewed on its own)."""
    fn_task, input_columns = _task_of(task)
    layout = fn_task.review()
    shapes: list[list[int | None]] = []
    for row in rows:
        if layout.answer_fields:
            lengths = [len(v) for a in layout.answer_fields if isinstance(v := row.get(a.name), list)]
            shapes.append([None] * max(lengths, default=0))
            continue
        values = row.get(input_columns.get(layout.items, layout.items)) or []
        if not layout.per_generation:
            shapes.append([None] * len(values))
            continue
        shapes.append([len(v) if isinstance(v, (list, tuple)) and not _is_chat(v) else None for v in values])
    return shapes


def _people(reviewers: Mapping[Item, set[str]]) -> dict[int, list[str]]:
    """Per row, the user ids of everyone who reviewed any of its items, in order: ``human_ratings``'s
    positions, so that position ``k`` is one person for every generation of the row."""
    by_row: dict[int, set[str]] = defaultdict(set)
    for item, users in reviewers.items():
        by_row[item[0]] |= users
    return {row: sorted(users) for row, users in by_row.items()}


def _cells(
    index: int, shape: list[int | None], value: Callable[[Item], Any], reviewed: set[int], nested: bool
) -> Any:
    """A row's cell: ``value`` of each item, in the row's shape; ``None`` for a row nobody reviewed. In a
    column of lists per generation (``nested``) a generation that is no list (``None``, failed) is
    ``None``: a bare value there would not fit the column's type."""
    if index not in reviewed:
        return None
    return [
        (None if nested else value((index, i)))
        if entries is None
        else [value((index, i, j)) for j in range(entries)]
        for i, entries in enumerate(shape)
    ]


def _consensus(given: Mapping[str, Any], kind: str) -> Any:
    """The median of ratings; the value most annotators gave of labels and texts (``None`` on a tie)."""
    values = list(given.values())
    if kind == "rating":
        return float(statistics.median(values))
    top = Counter(values).most_common(2)
    return top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None


def _column_names(family: str) -> tuple[str, str]:
    if family == "rating":
        return "human_rating", "human_ratings"
    return f"human_{family}", f"human_{family}_responses"


def _with_columns(
    ds: Any, rows: list[dict[str, Any]], columns: dict[str, list[Any]], kinds: dict[str, str], nested: bool
) -> Any:
    """``ds`` with ``columns`` in place of any it had of those names: a Dataset, or rows as given."""
    import datasets

    if not isinstance(ds, datasets.Dataset):
        return [{**row, **{k: v[i] for k, v in columns.items()}} for i, row in enumerate(rows)]

    def listed(feature: Any, depth: int) -> Any:
        for _ in range(depth + (1 if nested else 0)):
            feature = datasets.List(feature)
        return feature

    features: dict[str, Any] = {"human_annotators": listed(datasets.Value("int64"), 1)}
    for family, kind in kinds.items():
        consensus, responses = _column_names(family)
        scalar = "int64" if kind == "rating" else "string"
        features[consensus] = listed(datasets.Value("float64" if kind == "rating" else "string"), 1)
        features[responses] = listed(datasets.Value(scalar), 2)
    ds = ds.remove_columns([c for c in columns if c in ds.column_names])
    for column, values in columns.items():
        ds = ds.add_column(column, values, feature=features[column])
    return ds
