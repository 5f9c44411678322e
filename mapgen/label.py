"""``mapgen.label``: rate the generations of every row (AI feedback)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.core.columns import MESSAGES, METADATA, typed_columns
from mapgen.core.keywords import checked_keywords
from mapgen.core.request import Completion, Request
from mapgen.errors import INPUT, LENGTH, PARSE, InputError, error_text, split_error
from mapgen.llms.base import LLM
from mapgen.mapping.map_function import Answer, MapFunction, completion_metadata
from mapgen.runtime.progress import counters
from mapgen.tasks.labelling import LabellingTask, weighted_score

TOP_LOGPROBS = 20
"""How many alternatives per token a probability-weighted rating asks for: enough to hold every digit
of a 1-to-5 scale even when a flat distribution puts other tokens among them."""


@dataclass(frozen=True)
class LabelFunction(MapFunction):
    """The callable :func:`label` returns; see there."""

    task: LabellingTask  # (checked in __post_init__)
    step: ClassVar[str] = "label"
    weighted_ratings: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.task, LabellingTask):
            raise TypeError(
                f"label() needs a labelling task (e.g. mapgen.UltraFeedbackTask.for_overall_quality()), got "
                f"{type(self.task).__name__}; use mapgen.generate() for generation tasks."
            )
        if self.weighted_ratings:
            if not self.llm.supports_logprobs:
                raise ValueError(
                    f"weighted_ratings=True needs log-probabilities, which {type(self.llm).__name__} "
                    "does not return; use a backend that does (LlamaCppLLM) or leave weighted_ratings off."
                )
            if self.task.scale[1] > 9:
                raise ValueError(
                    f"weighted_ratings=True reads one digit per score; {type(self.task).__name__} scores "
                    f"{self.task.scale[0]} to {self.task.scale[1]}, which takes two digits for 10."
                )

    @property
    def weighted_column(self) -> str:
        """The probability-weighted score's column: ``weighted_rating`` (or ``weighted_<score output>``)."""
        return f"weighted_{self.task.score_output}"

    def output_types(self) -> dict[str, pa.DataType]:
        """The columns this function writes."""
        task = self.task
        each = pa.list_ if task.one_request_per_item else (lambda item: item)
        types = {
            **task.output_types(),
            "labelling_model": pa.string(),
            "labelling_prompt": each(MESSAGES),
            "raw_labelling_response": each(pa.string()),
            "labelling_reasoning": each(pa.string()),
            "labelling_error": pa.string(),
            "labelling_metadata": each(METADATA),
        }
        if self.weighted_ratings:
            types[self.weighted_column] = pa.list_(pa.float64())
        return types

    def answer_types(self) -> Mapping[str, pa.DataType]:
        """The type of each value one answer's parse returns (what it is checked against): the task's
        output types, and with ``one_request_per_item`` (an answer per text) a list output's item type."""
        types = self.task.output_types()
        if not self.task.one_request_per_item:
            return types
        return {name: kind.value_type if pa.types.is_list(kind) else kind for name, kind in types.items()}

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        task = self.task
        plans = [self._plan(row) for row in rows]
        requests = [request for plan in plans for request in plan.requests]
        answers = iter(self.reask(requests, self.complete(requests, rank=rank), rank=rank))
        types = self.output_types()
        # The columns with one entry per text (a prompt is itself a list when it covers every text).
        aligned = [
            name
            for name, kind in types.items()
            if pa.types.is_list(kind) and (task.one_request_per_item or name != "labelling_prompt")
        ]
        columns: dict[str, list[Any]] = {name: [] for name in types}
        for plan in plans:
            values = self._assemble(task, plan, [next(answers) for _ in plan.requests], aligned)
            for name in types:
                columns[name].append(values.get(name))
        return typed_columns(columns, types)

    def requests_for(self, rows: list[dict[str, Any]]) -> tuple[list[Request], int]:
        plans = [self._plan(row) for row in rows]
        return [r for plan in plans for r in plan.requests], sum(plan.error is not None for plan in plans)

    def _plan(self, row: dict[str, Any]) -> _RowPlan:
        task = self.task
        texts = row.get(task.items)
        size = len(texts) if isinstance(texts, (list, tuple)) else 0
        error = self.row_error({name: value for name, value in row.items() if name != task.items})
        if error is None and not isinstance(texts, (list, tuple)):
            column = self.columns()[task.items]
            error = f"column {column!r} must hold a list of texts, got {type(texts).__name__}"
        kept = [i for i, text in enumerate(texts or ()) if isinstance(text, str) and text.strip()]
        if error is None and not kept:
            error = f"no {task.items} to rate in column {self.columns()[task.items]!r} (all None or empty)"
        if error is not None:
            return _RowPlan(size=size, error=error_text(INPUT, error))
        assert isinstance(texts, (list, tuple))  # else error says why not
        top = TOP_LOGPROBS if self.weighted_ratings else 0
        try:
            if task.one_request_per_item:
                schema = task.schema_for(1) if self.llm.supports_schema else None
                prompts = [task.prompt({**row, task.item: texts[i]}) for i in kept]
            else:
                schema = task.schema_for(len(kept)) if self.llm.supports_schema else None
                prompts = [task.prompt({**row, task.items: [texts[i] for i in kept]})]
        except InputError as refused:  # an input the task cannot prompt from (not text): this row only
            return _RowPlan(size=size, error=error_text(INPUT, self.input_error(refused)))
        requests = [Request(prompt, 0, schema, top_logprobs=top) for prompt in prompts]
        return _RowPlan(size=len(texts), kept=kept, requests=requests)

    def _assemble(
        self, task: LabellingTask, plan: _RowPlan, answers: list[Answer], aligned: list[str]
    ) -> dict[str, Any]:
        types = task.output_types()
        per_text = [name for name, kind in types.items() if pa.types.is_list(kind)]
        # Every list column keeps the row's length, also when the whole row failed.
        values: dict[str, Any] = {name: [None] * plan.size for name in aligned}
        values["labelling_model"] = self.llm.model_name
        if plan.error is not None:
            counters.add(failed=1)
            values["labelling_error"] = plan.error
            return values
        problems: list[str] = []
        if task.one_request_per_item:
            for i, request, answer in zip(plan.kept, plan.requests, answers, strict=True):
                completion, (parsed, problem) = answer
                values["labelling_prompt"][i] = request.prompt.messages()
                values["raw_labelling_response"][i] = completion.text
                values["labelling_reasoning"][i] = completion.reasoning
                values["labelling_metadata"][i] = completion_metadata(completion, self.provenance)
                if problem:
                    kind, message = split_error(problem)
                    problems.append(error_text(kind or PARSE, f"text {i + 1}: {message}"))
                for name in per_text:
                    values[name][i] = parsed.get(name)
                if self.weighted_ratings and parsed:
                    values[self.weighted_column][i] = self._weighted(task, completion, 1)[0]
        else:
            [request], [(completion, (parsed, problem))] = plan.requests, answers
            values["labelling_prompt"] = request.prompt.messages()
            values["raw_labelling_response"] = completion.text
            values["labelling_reasoning"] = completion.reasoning
            values["labelling_metadata"] = completion_metadata(completion, self.provenance)
            if problem:
                problems.append(problem)
            for name in types:
                if name not in per_text:
                    values[name] = parsed.get(name)
                    continue
                found = parsed.get(name)
                if found is None:
                    continue
                if not isinstance(found, (list, tuple)):
                    problems.append(error_text(PARSE, f"{name} should be a list, got {type(found).__name__}"))
                    continue
                if len(found) > len(plan.kept) and name == task.score_output:
                    problems.append(
                        error_text(
                            PARSE, f"{len(found)} ratings for {len(plan.kept)} texts, extra ones ignored"
                        )
                    )
                for i, value in zip(plan.kept, found, strict=False):
                    values[name][i] = value
            if self.weighted_ratings and completion.text is not None:
                for i, value in zip(plan.kept, self._weighted(task, completion, len(plan.kept)), strict=True):
                    values[self.weighted_column][i] = value
        scores = values.get(task.score_output)
        if not problems and isinstance(scores, list):
            missing = [i + 1 for i in plan.kept if scores[i] is None]
            if missing:
                cut = _cut(task, plan, answers, missing)  # the limit, not the judge, left them out
                kind, why = (LENGTH, f"{self.cut_at(cut)}: ") if cut else (PARSE, "")
                problems.append(
                    error_text(kind, f"{why}no {task.score_output} for text(s) {missing} of {plan.size}")
                )
        if problems:
            counters.add(failed=1)
        # Each part keeps its kind, so the row's value starts with the first one's.
        values["labelling_error"] = "; ".join(problems) or None
        return values

    @staticmethod
    def _weighted(task: LabellingTask, completion: Completion, count: int) -> list[float | None]:
        positions: list[int | None] = list(task.score_positions(completion.text or ""))[:count]
        positions += [None] * (count - len(positions))
        return [weighted_score(p, completion.tokens, completion.top_logprobs, task.scale) for p in positions]


def _cut(task: LabellingTask, plan: _RowPlan, answers: list[Answer], missing: list[int]) -> Completion | None:
    """The answer cut at the token limit that left texts ``missing`` (numbered from 1) without a score, if
    one was: the row's one answer, or with ``one_request_per_item`` the answer of a missing text."""
    if task.one_request_per_item:
        pairs = zip(plan.kept, answers, strict=True)
        return next((c for i, (c, _) in pairs if i + 1 in missing and c.cut), None)
    return next((c for c, _ in answers if c.cut), None)


@dataclass
class _RowPlan:
    """What one row sends: its number of texts, which of them are rated, and their requests."""

    size: int
    kept: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    error: str | None = None


@checked_keywords
def label(
    llm: LLM,
    task: LabellingTask,
    *,
    input_columns: Mapping[str, str] | None = None,
    weighted_ratings: bool = False,
    cache: bool = True,
    store: str | None = None,
    max_reasks: int = 2,
) -> LabelFunction:
    """A callable for ``ds.map(fn, batched=True)`` that rates each row's generations with ``task``.

    It writes the task's outputs (for :class:`~mapgen.UltraFeedbackTask`: ``rating``, one float or
    ``None`` per generation, and ``rationale``), and beside them ``labelling_model``,
    ``labelling_prompt`` (chat messages), ``raw_labelling_response``, ``labelling_reasoning`` (the
    judge's reasoning trace, when it returned one; see :mod:`mapgen.mapping.reasoning`), ``labelling_error``
    (``None`` when every generation got a rating, else why not) and ``labelling_metadata`` (finish
    reason, token counts). Ratings stay aligned with ``generations``: a ``None`` generation is not shown
    to the judge and gets a ``None`` rating; a judge that answers for fewer texts leaves the rest ``None``.

    Backends that constrain output (``llm.supports_schema``) get the task's JSON schema, sized to the
    row's number of texts, so answers parse by construction; others are read by the task's tolerant
    parser. With ``weighted_ratings=True`` (backends that return log-probabilities, such as
    :class:`~mapgen.LlamaCppLLM`) it also writes ``weighted_rating``: per generation, the rating
    values weighted by the probabilities the judge gave each digit. Small models pick nearly the same
    digit for everything; the weighted rating still ranks their answers (see ``docs/labelling.md``).
    Answers are kept in the response store as they arrive (``cache=False`` turns it off; ``store`` picks
    which: see :func:`mapgen.generate`).

    Example:
        >>> import datasets, mapgen
        >>> ds = datasets.Dataset.from_dict(
        ...     {"input": ["What is 2 + 2?"], "generations": [["4", None, "2 + 2 is 5."]]}
        ... )
        >>> judge = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=200, seed=0)
        >>> fn = mapgen.label(judge, mapgen.UltraFeedbackTask.for_overall_quality(), weighted_ratings=True)
        >>> row = ds.map(fn, batched=True)[0]
        >>> len(row["rating"]), row["rating"][1], row["weighted_rating"][1]
        (3, None, None)
    """
    return LabelFunction(
        llm=llm,
        task=task,
        input_columns=dict(input_columns or {}),
        weighted_ratings=weighted_ratings,
        cache=cache,
        store=store,
        max_reasks=max_reasks,
    )
