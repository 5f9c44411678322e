"""``mapgen.generate``: add generations to every row of a dataset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from mapgen.core.columns import MESSAGES, METADATA, typed_columns
from mapgen.core.keywords import checked_keywords
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.errors import INPUT
from mapgen.llms.base import LLM
from mapgen.llms.jury import Jury
from mapgen.mapping.map_function import Answer, MapFunction, completion_metadata, paid_with
from mapgen.mapping.multi_round import call_rounds, check_backend
from mapgen.mapping.redo import (
    PREVIOUS,
    REDONE,
    falls_short,
    read_previous,
    redo_kinds,
    same_stored_answer,
    spent_before,
)
from mapgen.runtime.progress import counters
from mapgen.tasks.base import Task
from mapgen.tasks.rounds import RoundsTask
from mapgen.tasks.text_generation import TextGenerationTask


class Planned(NamedTuple):
    """One row's part of a batch: its prompt (``None`` and ``error`` when it has none), the generations it
    asks for, and its earlier answers (a ``redo`` map's: :func:`mapgen.mapping.redo.read_previous`)."""

    prompt: Prompt | None
    error: str | None
    asked: Sequence[int]
    previous: dict[str, list[Any]] | None


@dataclass(frozen=True)
class GenerateFunction(MapFunction):
    """The callable :func:`generate` returns; see there."""

    num_generations: int = 1
    redo: tuple[str, ...] = ()
    """The kinds of earlier answers to ask again (:mod:`mapgen.mapping.redo`); empty: ask every row."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.num_generations, bool) or not isinstance(self.num_generations, int):
            raise TypeError(f"num_generations must be an int, got {type(self.num_generations).__name__}.")
        if self.num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {self.num_generations}.")
        if isinstance(self.llm, Jury):  # its complete() would refuse only once a batch came
            raise TypeError(
                "a Jury rates: pass it to mapgen.label(jury, task); to spread generations over several "
                "LLMs, use mapgen.LLMPool."
            )
        check_backend(self.llm, self.task)
        object.__setattr__(self, "redo", redo_kinds(self.redo))
        if self.redo and isinstance(self.task, RoundsTask):
            raise TypeError(
                f"redo re-asks one answer at a time; {type(self.task).__name__} makes each in several rounds."
            )
        overwritten = sorted(set(self.output_types()) & set(self.columns().values()))
        if overwritten:  # a structured field named like the input, say
            raise ValueError(
                f"{type(self.task).__name__} writes column(s) {overwritten}, which it also reads: the map "
                "would replace its own input. Rename the output field, or read the input from another column "
                "with input_columns={task input: column}."
            )

    def __call__(self, batch: Mapping[str, Any], *args: Any) -> dict[str, list[Any]]:
        if isinstance(
            self.task, RoundsTask
        ):  # several rounds of model calls per row: mapgen.mapping.multi_round
            out = call_rounds(self, self.num_generations, batch, *args)
        else:
            out = super().__call__(batch, *args)
        if REDONE in batch and REDONE not in out:  # an earlier redo's flags: these answers are all new
            out[REDONE] = [[False] * self.num_generations for _ in range(len(batch[REDONE]))]
        return out

    def read_rows(self, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = super().read_rows(batch)
        if self.redo:  # each row carries its earlier answers, checked before anything is sent
            outputs = [name for name in self.output_types() if name != REDONE]
            required = [*self.task.outputs, "generation_errors", "generation_metadata"]
            previous = read_previous(batch, outputs, required, self.num_generations)
            rows = [{**row, PREVIOUS: answers} for row, answers in zip(rows, previous, strict=True)]
        return rows

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        planned, requests = self.plan(rows)
        answers = iter(self.reask(requests, self.complete(requests, rank=rank), rank=rank))
        types = self.output_types()
        columns: dict[str, list[Any]] = {name: [] for name in types}
        failures = 0
        for row in planned:
            row_answers: dict[int, Answer] = {}
            if row.prompt:
                row_answers = {i: next(answers) for i in row.asked}
            elif row.asked:  # no prompt: each generation asked fails with the row's input error
                failed = Completion.failed(row.error or "", INPUT)
                row_answers = dict.fromkeys(row.asked, (failed, self.parse_answer(failed)))
            failures += self._write_row(columns, row, row_answers)
        counters.add(failed=failures)
        return typed_columns(columns, types)

    def plan(self, rows: list[dict[str, Any]]) -> tuple[list[Planned], list[Request]]:
        """Each row's :class:`Planned`, and the requests the batch sends: every generation of every row
        that has a prompt, or with ``redo``, only the earlier answers that fell short."""
        schema = self.task.schema if self.llm.supports_schema else None
        planned: list[Planned] = []
        requests: list[Request] = []
        for row in rows:
            previous = row.get(PREVIOUS)
            asked: Sequence[int] = range(self.num_generations)
            if previous is not None:
                row = {name: value for name, value in row.items() if name != PREVIOUS}
                asked = self._fell_short(previous)
            prompt, error = self.prompt_for(row) if asked else (None, None)
            planned.append(Planned(prompt, error, asked, previous))
            if prompt is not None:
                requests += [Request(prompt, i, schema) for i in asked]
        return planned, requests

    def _fell_short(self, previous: dict[str, list[Any]]) -> list[int]:
        """The generations of a row whose earlier answer is of a kind in :attr:`redo`."""
        pairs = zip(previous["generation_metadata"], previous["generation_errors"], strict=True)
        return [i for i, (meta, error) in enumerate(pairs) if falls_short(meta, error, self.redo)]

    def requests_for(self, rows: list[dict[str, Any]]) -> tuple[list[Request], int]:
        planned, requests = self.plan(rows)
        return requests, sum(row.prompt is None and bool(row.asked) for row in planned)

    def output_types(self) -> dict[str, pa.DataType]:
        """The columns this function writes, each a list with one entry per generation."""
        per_generation = {
            **self.task.output_types(),
            "generation_model": pa.string(),
            "generation_prompt": MESSAGES,
            "raw_generation_responses": pa.string(),
            "generation_reasoning": pa.string(),
            "generation_errors": pa.string(),
            "generation_metadata": METADATA,
            **({REDONE: pa.bool_()} if self.redo else {}),
        }
        return {name: pa.list_(item) for name, item in per_generation.items()}

    def _write_row(self, columns: dict[str, list[Any]], row: Planned, answers: dict[int, Answer]) -> int:
        """Append one row's values to ``columns``, each generation from its new answer in ``answers`` or
        as the row's earlier answer was; return how many of the new answers failed."""
        messages = row.prompt.messages() if row.prompt else None
        entries = []
        for i in range(self.num_generations):
            answer = answers.get(i)
            if answer is not None and not same_stored_answer(answer[0], row.previous, i):
                entries.append(self._entry(messages, answer, row.previous, i))
            else:
                entries.append(self._kept(row.previous, i))
        for name in columns:
            columns[name].append([entry[name] for entry in entries])
        return sum(error is not None for _, (_, error) in answers.values())

    def _entry(
        self,
        messages: list[dict[str, str]] | None,
        answer: Answer,
        previous: dict[str, list[Any]] | None,
        i: int,
    ) -> dict[str, Any]:
        """Generation ``i``'s values, from a new answer."""
        completion, (values, error) = answer
        if previous is not None:  # a redo: the answer replaced was paid for too
            completion = paid_with(completion, spent_before(previous["generation_metadata"][i]))
        entry = {
            **{name: values.get(name) for name in self.task.outputs},
            "generation_model": completion.model or self.llm.model_name,
            "generation_prompt": messages,
            "raw_generation_responses": completion.text,
            "generation_reasoning": completion.reasoning,
            "generation_errors": error,
            "generation_metadata": completion_metadata(completion, self.provenance),
        }
        return entry if previous is None else {**entry, REDONE: True}

    @staticmethod
    def _kept(previous: dict[str, list[Any]] | None, i: int) -> dict[str, Any]:
        """Generation ``i``'s values as the row's earlier answer holds them (a redo keeps it)."""
        assert previous is not None  # only a redo map leaves a generation unasked
        return {**{name: values[i] for name, values in previous.items()}, REDONE: False}


@checked_keywords
def generate(
    llm: LLM,
    task: Task | None = None,
    num_generations: int = 1,
    *,
    input_columns: Mapping[str, str] | None = None,
    cache: bool = True,
    store: str | None = None,
    max_reasks: int = 2,
    redo: str | Iterable[str] = (),
) -> GenerateFunction:
    """A callable for ``ds.map(fn, batched=True)`` that adds ``num_generations`` answers per row.

    It writes the task's outputs (``generations`` for :class:`~mapgen.TextGenerationTask`), and beside
    them, one entry per generation, aligned: ``generation_model``, ``generation_prompt`` (the chat
    messages, text only: images stay in the row's own column), ``raw_generation_responses``,
    ``generation_reasoning`` (the model's reasoning trace, ``None`` where it gave none; the answer
    columns hold the answer alone, see :mod:`mapgen.mapping.reasoning`), ``generation_errors`` (``None`` when
    fine, else why) and ``generation_metadata`` (finish reason, token counts). A failure is ``None`` in
    place, never a shorter list. It works with ``num_proc=N`` and ``with_rank=True`` (rank ``r`` picks
    GPU ``r`` on local GPU backends), and ``datasets`` caches its result: a second run sends nothing.
    Every answer is also kept in the response store as it arrives (``cache=False`` turns that off), so a
    run that crashed, or a dataset built in memory that ``datasets`` never caches, re-sends only what is
    missing. ``store`` picks the response store (``sqlite:///<path>``, ``postgresql://...``; default
    ``$MAPGEN_STORE``, else the SQLite file in the cache folder): see :mod:`mapgen.store`.
    An answer that fails the task's answer model (:class:`~mapgen.StructuredTask`) is asked again up to
    ``max_reasks`` times, then written as ``None`` with its ``invalid_output`` error.

    ``redo`` maps a dataset that already holds this task's answers (an earlier generate map's output) and
    asks again only the answers of the kinds listed: ``"length"`` (cut at ``max_new_tokens``) or failure
    kinds of :mod:`mapgen.errors` (``"invalid_output"``, ``"http_429"``...); every other answer is kept as
    it is, with no request, and ``generation_redone`` says, per generation, which were asked again. So a
    first pass at ``max_new_tokens=256`` then ``redo=("length",)`` at 1,024 pays only for the cut answers.
    ``num_generations`` must be the earlier map's; see :mod:`mapgen.mapping.redo`.

    Raises:
        ValueError: ``num_generations`` below 1, an unknown ``redo`` kind; from ``ds.map``, before anything
            is sent, a row with another number of earlier answers than ``num_generations``.
        MissingColumnError: from ``ds.map``, a task input has no column, or with ``redo``, the dataset
            holds no earlier answers (no ``generation_metadata``...).
        TypeError: ``llm`` or ``task`` is not mapgen's; ``ds.map`` without ``batched=True``.

    Example:
        >>> import datasets, mapgen
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=16, seed=0)
        >>> ds = ds.map(mapgen.generate(llm, mapgen.TextGenerationTask()), batched=True)
        >>> [len(g) for g in ds["generations"]]
        [1, 1]
        >>> short = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=2, seed=0)
        >>> ds = ds.map(mapgen.generate(short), batched=True)  # cut at 2 tokens: finish_reason "length"
        >>> ds = ds.map(mapgen.generate(llm, redo=("length",)), batched=True)  # re-asks those at 16
        >>> ds["generation_redone"][:]
        [[True], [True]]
    """
    return GenerateFunction(
        llm=llm,
        task=task if task is not None else TextGenerationTask(),
        input_columns=dict(input_columns or {}),
        num_generations=num_generations,
        cache=cache,
        store=store,
        max_reasks=max_reasks,
        redo=redo,  # type: ignore[arg-type]  # checked and made a sorted tuple where the function is built
    )
