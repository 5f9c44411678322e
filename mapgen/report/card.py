"""``mapgen.dataset_card``: a Hugging Face dataset card that says how every mapgen column was made.

It reads only the dataset and the provenance records (:mod:`mapgen.mapping.provenance`): each answer's
metadata names the map function that wrote it, and that function's record holds the model, backend, sampling
parameters, task, template and prompt format. Token totals, costs, error kinds, answers cut at the token
limit and the ratings' distribution are counted from the columns themselves, so the card is right for the
rows at hand (after a ``filter`` or ``select``, too).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, constants

from mapgen._version import __version__
from mapgen.core.keywords import checked_keywords
from mapgen.core.request import CUT_AT_LIMIT
from mapgen.core.units import format_cost
from mapgen.errors import error_kinds
from mapgen.mapping.provenance import judge_checks, lookup
from mapgen.mapping.steps import recorded_steps
from mapgen.report.card_cleaning import cleaning_lines
from mapgen.report.card_judges import judge_lines
from mapgen.report.preview import example_rows
from mapgen.report.ratings import IMAGE, RatingCounts, rating_svg
from mapgen.report.summary import summary
from mapgen.report.totals import ModelUsage, answer_metadata, metadata_columns, usage

MAPGEN_URL = "https://github.com/mapgen/mapgen"
_STEPS = {"generation": "generate", "labelling": "label"}
_BATCH = 10_000
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
_SIZES += [(10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B")]
_SIZES += [(10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
EXAMPLE_ROWS = 3
"""How many of the dataset's rows the card shows."""
PLACEHOLDER_REPO = "<user>/<dataset>"
"""The loading snippet's repo id when the card is made without one."""


class MapgenDatasetCard(DatasetCard):
    """A :class:`huggingface_hub.DatasetCard` with the files its text shows beside it (``files``: name ->
    text; the rating chart, :data:`mapgen.report.ratings.IMAGE`), which :meth:`save` writes beside the
    ``README.md`` and :meth:`push_to_hub` uploads in the same commit."""

    def __init__(
        self, content: str, ignore_metadata_errors: bool = False, files: dict[str, str] | None = None
    ):
        super().__init__(content, ignore_metadata_errors=ignore_metadata_errors)
        self.files = dict(files or {})

    def save(self, filepath: Path | str) -> None:
        """Write the card to ``filepath`` and its ``files`` into the same folder."""
        super().save(filepath)
        for name, text in self.files.items():
            (Path(filepath).parent / name).write_text(text, encoding="utf-8")

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        repo_type: str | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        revision: str | None = None,
        create_pr: bool | None = None,
        parent_commit: str | None = None,
    ) -> Any:
        """Upload the card as ``README.md`` and its ``files`` beside it, in one commit (as
        :meth:`huggingface_hub.RepoCard.push_to_hub`, which uploads the card alone). Returns the
        :class:`huggingface_hub.CommitInfo`."""
        repo_type = repo_type or self.repo_type
        self.validate(repo_type=repo_type)
        texts = {constants.REPOCARD_NAME: str(self), **self.files}
        operations = [CommitOperationAdd(path, text.encode("utf-8")) for path, text in texts.items()]
        return HfApi(token=token).create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "Update dataset card",
            commit_description=commit_description,
            repo_type=repo_type,
            revision=revision,
            create_pr=create_pr,
            parent_commit=parent_commit,
        )


@dataclass
class Step:
    """One map function's part of the dataset: its metadata column and its record (``None`` if lost)."""

    column: str
    reference: str | None
    totals: ModelUsage
    record: dict[str, Any] | None = None
    models: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cut: int = 0
    """Answers cut at the token limit (a ``finish_reason`` in :data:`mapgen.core.request.CUT_AT_LIMIT`)."""

    @property
    def name(self) -> str:
        return _STEPS.get(self.column.removesuffix("_metadata"), self.column.removesuffix("_metadata"))


@checked_keywords
def dataset_card(ds: Any, *, repo_id: str | None = None, store: str | None = None) -> MapgenDatasetCard:
    """A :class:`huggingface_hub.DatasetCard` for ``ds`` that records how its mapgen columns were made.

    It opens with a snippet that loads the dataset (``load_dataset(repo_id)``; a placeholder id without
    ``repo_id``), the first 3 rows (texts cut at 200 characters, Markdown-escaped, URL credentials masked;
    without the prompt, raw-response and metadata columns, and without columns empty in all 3), and, where
    a label step wrote ratings (the score columns its provenance record names: ``rating``,
    ``weighted_rating``...), their distribution: a table of counts per score, and a bar chart, the SVG file
    ``rating_distribution.svg`` in the card's ``files``, which ``card.save(path)`` writes beside the card
    and ``card.push_to_hub`` / :func:`mapgen.push_to_hub` upload beside the ``README.md``. Where the
    dataset measured its judge (:mod:`mapgen.report.card_judges`), a section says how far: its agreement
    with people (``human_rating``, from :func:`mapgen.pull_from_argilla`: :func:`mapgen.agreement`'s
    table, with n and bootstrap intervals), its position consistency (``rating_consistency``) and a
    jury's agreement (``jury_agreement``, with the members' models).

    For each step (each map function whose answers are in the dataset, found through the ``provenance``
    reference in ``generation_metadata`` / ``labelling_metadata``): the model(s), backend, sampling
    parameters, task with its fields, template and system prompt, the prompt format, answers (and how many
    came from the response store), answers cut at the token limit (``finish_reason`` ``length``), token and
    cost totals, error counts by kind, and the fingerprint chain:
    each step's map-function fingerprint, then the dataset's own ``_fingerprint``. Its YAML header
    (:class:`huggingface_hub.DatasetCardData`) has the tags ``synthetic`` and ``mapgen``, the size
    category and the chain. The records come from this process, else from the response store ``store``
    (default: the default store): a step run with ``cache=False`` in another process is listed with its
    models and totals and the note that its record is missing. No key or token is ever in a record.

    A ``DatasetDict`` gets one card for all its splits: their rows counted together, the chain ending
    with each split's fingerprint.

    Raises:
        TypeError: ``ds`` is not a ``datasets.Dataset`` or ``DatasetDict`` (of splits with the same columns).
        ValueError: ``ds`` has no column written by mapgen.

    Example:
        >>> import datasets, mapgen
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0)
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit."]})
        >>> ds = ds.map(mapgen.generate(llm), batched=True)
        >>> card = mapgen.dataset_card(ds, repo_id="me/fruits")
        >>> card.data.tags, card.data.size_categories
        (['synthetic', 'mapgen'], ['n<1K'])
        >>> "SmolLM2-135M-Instruct.Q4_1" in card.text and "{{ input }}" in card.text
        True
        >>> 'ds = load_dataset("me/fruits")' in card.text, "| `input` | Name a fruit. |" in card.text
        (True, True)
    """
    import datasets
    from huggingface_hub import DatasetCardData

    if isinstance(ds, datasets.DatasetDict):  # the splits' rows together; the chain ends with each split
        tail = [f"dataset[{name}]:{split._fingerprint}" for name, split in ds.items()]
        try:
            ds = datasets.concatenate_datasets(list(ds.values()))
        except ValueError as error:
            raise TypeError(f"dataset_card takes splits with the same columns: {error}") from None
    elif isinstance(ds, datasets.Dataset):
        tail = [f"dataset:{ds._fingerprint}"]
    else:
        raise TypeError(f"dataset_card takes a datasets.Dataset or DatasetDict, got {type(ds).__name__}.")
    steps = _steps(ds, store)
    cleaning = recorded_steps(ds)
    if not steps and not cleaning:
        raise ValueError(
            f"the dataset has no column written by mapgen (generation_metadata, labelling_metadata) and no "
            f"cleaning step (mapgen.dedup, decontaminate, verify); its columns are {ds.column_names}."
        )
    chain = [f"{step.name}:{step.reference}" for step in steps] + tail
    data = DatasetCardData(
        pretty_name=repo_id.split("/")[-1] if repo_id else None,
        size_categories=[_size_category(len(ds))],
        tags=["synthetic", "mapgen"],
        mapgen={
            "version": __version__,
            "fingerprint_chain": chain,
            **(
                {"cleaning": [{k: r.get(k) for k in ("step", "parameters", "result")} for r in cleaning]}
                if cleaning
                else {}
            ),
        },
    )
    charts = _rating_counts(ds, steps)
    judges = [step.record["llm"] for step in steps if step.record and step.record.get("step") == "label"]
    body = _body(ds, steps, chain, repo_id, charts, judge_checks(judges, store=store))
    files = {IMAGE: rating_svg(charts)} if charts else {}
    return MapgenDatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}", files=files)


def _steps(ds: Any, store: str | None) -> list[Step]:
    columns = metadata_columns(ds)
    steps: list[Step] = []
    for column in columns:
        prefix = column.removesuffix("_metadata")
        named = (f"{prefix}_errors", f"{prefix}_error")
        errors = _error_kinds(ds, next((c for c in named if c in ds.column_names), None))
        models = _values(ds, f"{prefix}_model")
        for reference, (totals, cut) in _totals(ds, column).items():
            steps.append(Step(column, reference, totals, models=sorted(models), errors=errors, cut=cut))
    records = lookup([s.reference for s in steps if s.reference], store=store)
    for step in steps:
        step.record = records.get(step.reference) if step.reference else None
    # In the order they ran, as far as the rows tell: a redo after the map whose answers it redid (the rows
    # list a column's steps in the order their answers first appear, which says nothing of that).
    steps.sort(key=lambda step: (columns.index(step.column), bool(_options(step).get("redo"))))
    return steps


def _options(step: Step) -> dict[str, Any]:
    return dict((step.record or {}).get("options") or {})


def _batches(ds: Any, column: str):
    for table in ds.select_columns([column]).with_format("arrow").iter(batch_size=_BATCH):
        array = table.column(0).combine_chunks()
        while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            array = pc.list_flatten(array)
        yield array


def _totals(ds: Any, column: str) -> dict[str | None, tuple[ModelUsage, int]]:
    """Per provenance reference: what the answers in ``column`` add up to (:class:`ModelUsage`), and how
    many of them were cut at the token limit (reused ones too: the answer is cut wherever it came from)."""
    found: dict[str | None, ModelUsage] = {}
    cut: Counter[str | None] = Counter()
    for array in _batches(ds, column):  # in batches: a million rows' metadata is not read at once
        for meta in answer_metadata(array.to_pylist()):
            reference = meta.get("provenance")
            found.setdefault(reference, ModelUsage()).add(meta)
            cut[reference] += meta.get("finish_reason") in CUT_AT_LIMIT
    return {reference: (totals, cut[reference]) for reference, totals in found.items()}


def _rating_counts(ds: Any, steps: list[Step]) -> list[RatingCounts]:
    """The distribution of each score column the steps' records name, that ``ds`` still has."""
    scales: dict[str, tuple[int, int]] = {}
    for step in steps:
        for column, (low, high) in ((step.record or {}).get("scores") or {}).items():
            scales.setdefault(column, (low, high))
    return [
        RatingCounts.of(column, scale, (array.to_pylist() for array in _batches(ds, column)))
        for column, scale in scales.items()
        if column in ds.column_names
    ]


def _values(ds: Any, column: str) -> set[str]:
    if column not in ds.column_names:
        return set()
    return {v for array in _batches(ds, column) for v in pc.unique(array.drop_null()).to_pylist()}


def _error_kinds(ds: Any, column: str | None) -> Counter[str]:
    """Failed values in an error column by kind (a labelling error lists a kind per failed text)."""
    kinds: Counter[str] = Counter()
    if column is None:
        return kinds
    for array in _batches(ds, column):
        counts = pc.value_counts(array.drop_null())
        values, numbers = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        for text, count in zip(values, numbers, strict=True):
            for kind in error_kinds(text) or ["unknown"]:
                kinds[kind] += count
    return kinds


def _size_category(rows: int) -> str:
    return next((name for bound, name in _SIZES if rows < bound), "n>1T")


def _fenced(text: str, language: str = "") -> str:
    """``text`` in a code fence longer than any run of backticks inside it (templates may hold fences)."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{language}\n{text}\n{fence}"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=repr)


def _body(
    ds: Any,
    steps: list[Step],
    chain: list[str],
    repo_id: str | None,
    charts: list[RatingCounts],
    checks: list[dict[str, Any]],
) -> str:
    title = repo_id or "Dataset made with mapgen"
    lines = [
        f"# {title}",
        "",
        f"This dataset was made with [mapgen]({MAPGEN_URL}) {__version__}: {len(ds)} rows, columns "
        + ", ".join(f"`{c}`" for c in ds.column_names)
        + ".",
        *_cut_lines(ds, steps),
        "",
        *_loading_lines(repo_id),
        *_example_lines(ds),
        *_rating_lines(charts),
        *judge_lines(ds, [chart.column for chart in charts], checks),
        *cleaning_lines(ds),
    ]
    if steps:
        lines.append("## How the columns were made")
    for number, step in enumerate(steps, 1):
        lines += ["", *_step_section(number, step)]
    lines += [
        "",
        "## Fingerprint chain",
        "",
        "Each step's map-function fingerprint (what `datasets` caches the map under; it changes with the "
        "model, sampling parameters, task and template), then the dataset's own `_fingerprint` (each "
        "split's, for a `DatasetDict`):",
        "",
        *[f"{i}. `{link}`" for i, link in enumerate(chain, 1)],
        "",
        "## Totals",
        "",
        "| step | answers requested | reused from the response store | prompt tokens | completion tokens "
        "| cost (USD) | cut at the token limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, step in enumerate(steps, 1):
        t = step.totals
        lines.append(
            f"| {number}. {step.name} | {t.requests} | {t.reused} | {t.prompt_tokens} | "
            f"{t.completion_tokens} | {_cost(t.cost, t.unpriced)} | {step.cut} |"
        )
    lines += ["", *_usage_lines(ds)]
    return "\n".join(lines).rstrip() + "\n"


def _redo_lines(record: dict[str, Any], step: Step) -> list[str]:
    """What a ``redo`` map asked again (:mod:`mapgen.mapping.redo`): its answers are those it redid."""
    kinds = record["options"].get("redo")
    if not kinds:
        return []
    said = ", ".join(f"`{kind}`" for kind in kinds)
    answers = step.totals.requests + step.totals.reused
    return [
        f"- asked again: {answers} answer(s) of an earlier generate map that were {said}; every other answer "
        "of it kept as it was (`generation_redone` says which)"
    ]


def _cut_lines(ds: Any, steps: list[Step]) -> list[str]:
    """The warning that some answers stopped at the token limit (counted as :func:`mapgen.summary` counts
    them), by step, and the ``filter`` that picks out their rows."""
    found = summary(ds)
    if not found.truncated:
        return []
    answers = sum(step.totals.requests + step.totals.reused for step in steps)
    by_step = ", ".join(f"{step.cut} by {step.name} (`{step.column}`)" for step in steps if step.cut)
    column = max(steps, key=lambda step: step.cut).column
    is_list, reasons = found.cut[column]
    said = ", ".join(f"`{reason}`" for reason in reasons)
    test = (
        f'm["finish_reason"] == "{reasons[0]}"'
        if len(reasons) == 1
        else f'm["finish_reason"] in {tuple(reasons)}'
    )
    select = (
        f'any(m and {test} for m in row["{column}"])' if is_list else f'(m := row["{column}"]) and {test}'
    )
    return [
        "",
        f"**{found.truncated} of {answers} answers were cut at the token limit** ({by_step}): the model had "
        f"more to say when it reached `max_new_tokens` (`finish_reason` {said}). "
        f"`ds.filter(lambda row: {select})` picks out their rows"
        + (f" (those of `{column}`)." if len([step for step in steps if step.cut]) > 1 else "."),
    ]


def _loading_lines(repo_id: str | None) -> list[str]:
    snippet = f'from datasets import load_dataset\n\nds = load_dataset("{repo_id or PLACEHOLDER_REPO}")'
    lines = ["## Load it", "", _fenced(snippet, "python"), ""]
    if repo_id is None:
        lines += [
            f"`{PLACEHOLDER_REPO}` stands for the dataset's repo on the Hub: "
            "`mapgen.push_to_hub(ds, repo_id)` writes its id here.",
            "",
        ]
    return lines


def _example_lines(ds: Any) -> list[str]:
    """The first rows, without what only repeats or describes the answers: each step's metadata (which
    the totals below sum up), its prompt (the row's own columns, as chat messages) and raw response."""
    leave_out = set(metadata_columns(ds))
    for column in metadata_columns(ds):
        prefix = column.removesuffix("_metadata")
        leave_out |= {f"{prefix}_prompt", f"raw_{prefix}_response", f"raw_{prefix}_responses"}
    rows = example_rows(ds, rows=EXAMPLE_ROWS, leave_out=leave_out)
    if not rows:
        return []
    shown = min(EXAMPLE_ROWS, len(ds))
    return [
        "## Example rows",
        "",
        f"The first {shown} of {len(ds)} rows. Long texts are cut (…); the prompt, raw-response and metadata "
        "columns are left out, and so are columns empty in all of these rows.",
        *rows,
        "",
    ]


def _rating_lines(charts: list[RatingCounts]) -> list[str]:
    if not charts:
        return []
    names = ", ".join(f"`{chart.column}`" for chart in charts)
    lines = ["## Ratings", "", f"![How many answers got each score ({names})]({IMAGE})", ""]
    for chart in charts:
        low, high = chart.scale
        note = " (a weighted rating counts at its nearest score)" if chart.rounded else ""
        lines += [f"`{chart.column}`, from {low} to {high}{note}:", "", *chart.markdown(), ""]
    return lines


def _cost(cost: float | None, unpriced: int) -> str:
    return "unknown" if cost is None else format_cost(cost, unpriced)


def _usage_lines(ds: Any) -> list[str]:
    """:func:`mapgen.usage`'s table: tokens, cost, requests and store reuse by model."""

    return ["By model:", "", _fenced(str(usage(ds)))]


def _step_section(number: int, step: Step) -> list[str]:
    record = step.record
    head = f"### {number}. {step.name} (`{step.column}`, map function `{step.reference}`)"
    errors = ", ".join(f"{kind}: {count}" for kind, count in step.errors.most_common()) or "none"
    models = ", ".join(f"`{m}`" for m in step.models) or "(none written)"
    if record is None:
        return [
            head,
            "",
            f"- models: {models}",
            f"- failed, by kind: {errors}",
            f"- cut at the token limit (`finish_reason` `length`): {step.cut}",
            "",
            "The record of this step is not in this process or the response store: it ran with "
            "`cache=False` in another process, with another store (pass `store=`), before mapgen recorded "
            "provenance, or the store was cleared.",
        ]
    llm, task = record["llm"], record["task"]
    lines = [
        head,
        "",
        f"- columns: {', '.join(f'`{c}`' for c in record['columns'])}",
        f"- model: `{llm['model']}` (written: {models})",
        f"- backend: `{llm['backend']}`",
        f"- task: `{task['class']}`",
        f"- prompt format: {record['prompt_format']}",
        f"- options: {', '.join(f'{k}={v!r}' for k, v in record['options'].items())}",
        *_redo_lines(record, step),
        f"- failed, by kind: {errors}",
        f"- cut at the token limit (`finish_reason` `length`): {step.cut}",
        f"- mapgen {record['mapgen_version']} (output format {record['output_format']})",
        "",
        "Sampling parameters and backend settings (the backend's fingerprint fields; never keys):",
        "",
        _fenced(_json(llm["parameters"]), "json"),
        "",
        "Task fields:",
        "",
        _fenced(_json(task["fields"]), "json"),
    ]
    if task.get("system_prompt"):
        lines += ["", "System prompt:", "", _fenced(task["system_prompt"], "text")]
    if task.get("template") is not None:
        lines += ["", "Template (Jinja2 over the row's columns):", "", _fenced(task["template"], "jinja")]
    else:
        lines += ["", f"The task builds its prompts in code (code digest `{task['source']}`)."]
    return lines
