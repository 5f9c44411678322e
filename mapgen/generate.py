"""``mapgen.generate``: add generations to every row of a dataset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mapgen.core.columns import MESSAGES, METADATA, typed_columns
from mapgen.core.keywords import checked_keywords
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.errors import INPUT
from mapgen.llms.base import LLM
from mapgen.llms.jury import Jury
from mapgen.mapping.map_function import Answer, MapFunction, completion_metadata
from mapgen.mapping.multi_round import call_rounds, check_backend
from mapgen.runtime.progress import counters
from mapgen.tasks.base import Task
from mapgen.tasks.rounds import RoundsTask
from mapgen.tasks.text_generation import TextGenerationTask


@dataclass(frozen=True)
class GenerateFunction(MapFunction):
    """The callable :func:`generate` returns; see there."""

    num_generations: int = 1

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
            return call_rounds(self, self.num_generations, batch, *args)
        return super().__call__(batch, *args)

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        n = self.num_generations
        planned, requests = self.plan(rows)
        answers = iter(self.reask(requests, self.complete(requests, rank=rank), rank=rank))
        types = self.output_types()
        columns: dict[str, list[Any]] = {name: [] for name in types}
        failures = 0
        for prompt, row_error in planned:
            if prompt:
                row_answers = [next(answers) for _ in range(n)]
            else:
                assert row_error is not None  # prompt_for gives a prompt or why there is none
                failed = Completion.failed(row_error, INPUT)
                row_answers = [(failed, self.parse_answer(failed))] * n
            failures += self._write_row(columns, prompt.messages() if prompt else None, row_answers)
        counters.add(failed=failures)
        return typed_columns(columns, types)

    def plan(
        self, rows: list[dict[str, Any]]
    ) -> tuple[list[tuple[Prompt | None, str | None]], list[Request]]:
        """Each row's prompt and ``None`` (or ``None`` and why not), and the requests they send."""
        schema = self.task.schema if self.llm.supports_schema else None
        planned = [self.prompt_for(row) for row in rows]
        n = self.num_generations
        return planned, [Request(p, i, schema) for p, _ in planned if p is not None for i in range(n)]

    def requests_for(self, rows: list[dict[str, Any]]) -> tuple[list[Request], int]:
        planned, requests = self.plan(rows)
        return requests, sum(prompt is None for prompt, _ in planned)

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
        }
        return {name: pa.list_(item) for name, item in per_generation.items()}

    def _write_row(
        self,
        columns: dict[str, list[Any]],
        messages: list[dict[str, str]] | None,
        answers: list[Answer],
    ) -> int:
        """Append one row's values to ``columns``; return how many of its answers failed."""
        completions = [completion for completion, _ in answers]
        parsed = [result for _, result in answers]
        for name in self.task.outputs:
            columns[name].append([values.get(name) for values, _ in parsed])
        columns["generation_model"].append([c.model or self.llm.model_name for c in completions])
        columns["generation_prompt"].append([messages] * len(completions))
        columns["raw_generation_responses"].append([c.text for c in completions])
        columns["generation_reasoning"].append([c.reasoning for c in completions])
        columns["generation_errors"].append([error for _, error in parsed])
        columns["generation_metadata"].append([completion_metadata(c, self.provenance) for c in completions])
        return sum(error is not None for _, error in parsed)


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

    Example:
        >>> import datasets, mapgen
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a color."]})
        >>> llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=16, seed=0)
        >>> ds = ds.map(mapgen.generate(llm, mapgen.TextGenerationTask()), batched=True)
        >>> [len(g) for g in ds["generations"]]
        [1, 1]
    """
    return GenerateFunction(
        llm=llm,
        task=task if task is not None else TextGenerationTask(),
        input_columns=dict(input_columns or {}),
        num_generations=num_generations,
        cache=cache,
        store=store,
        max_reasks=max_reasks,
    )
