"""Provenance: how each mapgen column was made, recorded by the map functions themselves.

A dataset card (:func:`mapgen.dataset_card`) must say, for every column mapgen wrote, which model,
backend, sampling parameters, task, template and prompt format made it, also for a dataset loaded from
disk in a new process, and after a re-run that ``datasets`` served from its cache without calling the
function at all. So the record lives in two places:

- every answer's metadata (``generation_metadata`` / ``labelling_metadata``) carries a short
  reference, ``provenance``: the map function's fingerprint (:func:`mapgen.fingerprint`, what
  ``datasets`` hashes). It travels with the rows through ``select``, ``filter``, ``concatenate``,
  ``save_to_disk``, parquet and the Hub, and a cached re-run returns the rows that hold it;
- the full record (:func:`describe`), plain JSON, is kept once per reference: in this process's registry
  (every map function built here, also when only ``num_proc`` workers called it), and, when the function
  uses the response store (``cache=True``, the default), in that store under the key
  ``provenance:<reference>`` (a namespace that store keys, SHA-256 digests, never enter; both SQLite
  and PostgreSQL stores keep it with no schema change; ``mapgen cache clear`` clears it with the answers).

A function run with ``cache=False`` keeps its record in its process only: a card made in another
process names the reference and says the record is missing.

The record holds the LLM's fingerprint fields (model, sampling parameters, where requests go: never keys,
which are no part of a fingerprint), with any password in a URL masked.

Example:
    >>> import mapgen
    >>> fn = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.0, seed=0), mapgen.TextGenerationTask())
    >>> record = describe(fn)
    >>> record["reference"] == mapgen.fingerprint(fn), record["llm"]["parameters"]["temperature"]
    (True, 0.0)
    >>> record["task"]["template"], record["prompt_format"]
    ('{{ input }}', "the model's own chat template (from the GGUF file)")
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from mapgen._version import OUTPUT_FORMAT_VERSION, __version__
from mapgen.core.config import dataclass_fingerprint, fingerprint_state, qualified_name
from mapgen.core.request import Completion
from mapgen.core.urls import mask_url
from mapgen.llms.base import LLM
from mapgen.store import open_store, store_url


class MapFunction(Protocol):
    """What a provenance record reads from a map function
    (:class:`mapgen.mapping.map_function.MapFunction`)."""

    # Read-only: a map function is a frozen dataclass.
    @property
    def step(self) -> str: ...
    @property
    def llm(self) -> LLM: ...
    @property
    def task(self) -> Any: ...
    @property
    def cache(self) -> bool: ...
    @property
    def store(self) -> str | None: ...
    @property
    def provenance(self) -> str: ...

    def output_types(self) -> Mapping[str, Any]: ...


STORE_PREFIX = "provenance:"
"""Store keys of provenance records: ``provenance:<reference>``."""

_FUNCTIONS: dict[str, MapFunction] = {}  # every map function built in this process, by reference
_REGISTRY: dict[str, dict[str, Any]] = {}  # their records, described on first need
_STORED: set[tuple[str, str]] = set()  # (reference, store URL) written by this process
_LOCK = threading.Lock()


def describe(fn: MapFunction) -> dict[str, Any]:
    """The full provenance record of one map function, as plain JSON data.

    Keys: ``reference``, ``step`` (``generate`` or ``label``), ``function`` (its class), ``columns``
    (what it writes), ``options`` (``num_generations``, ``redo``, ``weighted_ratings``, ``swap``,
    ``max_reasks``, ``input_columns``), ``items`` (a label step's rated column, as the dataset names it:
    what its per-text outputs are aligned with; ``None`` for other steps), ``scores`` (a label step's score
    columns, its task's ``score_output`` and the probability-weighted one it writes, each with the task's
    scale: ``{"rating": [1, 5]}``; empty for other steps), ``llm`` (``backend``, ``model``,
    ``parameters``: the backend's fingerprint fields), ``task`` (``class``, ``fields``, ``template``,
    ``system_prompt``, ``source``: a digest of its code and the values it reads, as
    :meth:`mapgen.Task.fingerprint` has it), ``prompt_format``, ``mapgen_version`` and ``output_format``.
    """
    llm, task = fn.llm, fn.task
    task_fields = {k: v for k, v in dataclass_fingerprint(task).items() if k not in ("type", *_PROMPT_TEXT)}
    options = {
        name: fingerprint_state(getattr(fn, name))
        for name in ("num_generations", "redo", "weighted_ratings", "swap", "max_reasks", "input_columns")
        if hasattr(fn, name)
    }
    record = {
        "reference": fn.provenance,
        "step": fn.step,
        "function": qualified_name(type(fn)),
        "columns": list(fn.output_types()),
        "options": options,
        "items": _rated_column(fn),
        "scores": _score_columns(fn),
        "llm": describe_llm(llm),
        "task": {
            "class": qualified_name(type(task)),
            "fields": task_fields,
            "template": template if isinstance(template := getattr(task, "template", None), str) else None,
            "system_prompt": getattr(task, "system_prompt", None),
            "source": fingerprint_state(task).get("source"),  # as fingerprinted
        },
        "prompt_format": llm.describe_prompt_format(),
        "mapgen_version": __version__,
        "output_format": OUTPUT_FORMAT_VERSION,
    }
    # Plain JSON, every URL's secrets masked, by the parser that refuses them in a config's URLs: a
    # store's password, or anything a backend of another make let through, must not reach a card.
    return json.loads(json.dumps(record, default=repr), object_hook=lambda d: _masked(d, mask_url))


_PROMPT_TEXT = ("template", "system_prompt")


def describe_llm(llm: LLM) -> dict[str, Any]:
    """A provenance record's ``llm`` part: ``backend``, ``model`` and ``parameters`` (the backend's
    fingerprint fields: never keys), plain JSON with every URL's password masked."""
    parameters = {k: v for k, v in llm.fingerprint().items() if k != "type"}
    record = {"backend": qualified_name(type(llm)), "model": llm.model_name, "parameters": parameters}
    return json.loads(json.dumps(record, default=repr), object_hook=lambda d: _masked(d, mask_url))


JUDGE_CHECK_PREFIX = STORE_PREFIX + "judge_check:"
"""The store's namespace of :func:`mapgen.judge_check` results: records, as the map functions' are (never
counted as answers, nor cleared by model or age), under a name no fingerprint takes."""


def judge_check_key(llm: Mapping[str, Any]) -> str:
    """The store key of the :func:`mapgen.judge_check` result of the judge that ``llm`` (a record's ``llm``
    part, :func:`describe_llm`) describes: the same for the judge of a label step, so a card finds it."""
    return JUDGE_CHECK_PREFIX + hashlib.sha256(json.dumps(llm, sort_keys=True).encode()).hexdigest()


def record_judge_check(llm: LLM, result: Mapping[str, Any], *, store: str | None = None) -> None:
    """Keep ``result`` (plain JSON: what :func:`mapgen.judge_check` measured) in the response store
    ``store`` under ``llm``'s :func:`judge_check_key`; the latest check of a judge replaces the one before."""
    key = judge_check_key(describe_llm(llm))
    open_store(store_url(store)).put(key, Completion(text=json.dumps(dict(result), sort_keys=True)))


def judge_checks(llms: list[Mapping[str, Any]], *, store: str | None = None) -> list[dict[str, Any]]:
    """The :func:`mapgen.judge_check` results kept for the judges ``llms`` (records' ``llm`` parts), in
    their order, each once; judges never checked are left out."""
    keys = list(dict.fromkeys(judge_check_key(llm) for llm in llms))
    stored = open_store(store).get_many(keys) if keys else {}
    return [json.loads(stored[key].text or "{}") for key in keys if key in stored]


def _rated_column(fn: MapFunction) -> str | None:
    """The dataset column a label step rated (its task's ``items``, renamed by ``input_columns``)."""
    items = getattr(fn.task, "items", None) if fn.step == "label" else None
    if not isinstance(items, str):
        return None
    return dict(getattr(fn, "input_columns", None) or {}).get(items, items)


def _score_columns(fn: MapFunction) -> dict[str, list[int]]:
    """A label step's columns that hold scores, each with its scale (what a card charts)."""
    score, scale = getattr(fn.task, "score_output", None), getattr(fn.task, "scale", None)
    if fn.step != "label" or not isinstance(score, str) or scale is None:
        return {}
    written = [name for name in (score, f"weighted_{score}") if name in fn.output_types()]
    return {name: [int(scale[0]), int(scale[1])] for name in written}


def _masked(values: dict[str, Any], mask: Any) -> dict[str, Any]:
    # Every string, and those of lists: mask_url changes only a URL's secrets (or a keyword string's).
    def masked(value: Any) -> Any:
        if isinstance(value, list):
            return [masked(v) for v in value]
        return mask(value) if isinstance(value, str) else value

    return {k: masked(v) for k, v in values.items()}


def remember(fn: MapFunction) -> None:
    """Keep ``fn`` in this process's registry: map functions call it when they are built, so the process
    that calls ``ds.map`` knows the record also when only its ``num_proc`` workers ran the function."""
    _FUNCTIONS.setdefault(fn.provenance, fn)


def map_function(reference: str) -> MapFunction | None:
    """The map function built in this process whose answers carry ``reference``, or ``None`` (built in
    another process): what reads a task back from a dataset (:func:`mapgen.push_to_argilla`) asks."""
    return _FUNCTIONS.get(reference)


def _forget() -> None:
    """Empty this process's registry, as a new process starts (for tests)."""
    with _LOCK:
        _FUNCTIONS.clear()
        _REGISTRY.clear()
        _STORED.clear()


def _described(ref: str) -> dict[str, Any] | None:
    with _LOCK:
        if ref not in _REGISTRY and ref in _FUNCTIONS:
            _REGISTRY[ref] = describe(_FUNCTIONS[ref])
        return _REGISTRY.get(ref)


def record(fn: MapFunction) -> None:
    """Keep ``fn``'s record in this process, and in its response store when it uses one; once per process
    and store. Map functions call it at every batch: it is a set look-up after the first."""
    ref = fn.provenance
    _FUNCTIONS.setdefault(ref, fn)
    if not fn.cache:
        return
    url = store_url(fn.store)
    with _LOCK:
        if (ref, url) in _STORED:
            return
        _STORED.add((ref, url))
    # put() never raises: a store that cannot be written warns once, and the run goes on.
    open_store(url).put(STORE_PREFIX + ref, Completion(text=json.dumps(_described(ref), sort_keys=True)))


def lookup(references: list[str], *, store: str | None = None) -> dict[str, dict[str, Any]]:
    """The records of ``references`` that this process or the response store ``store`` (default: the
    default store) holds; those found nowhere are left out."""
    found = {ref: record for ref in references if (record := _described(ref)) is not None}
    missing = [ref for ref in references if ref not in found]
    if missing:
        stored = open_store(store).get_many([STORE_PREFIX + ref for ref in missing])
        for key, completion in stored.items():
            found[key.removeprefix(STORE_PREFIX)] = json.loads(completion.text or "{}")
    return found
