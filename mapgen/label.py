"""``mapgen.label``: rate the generations of every row (AI feedback)."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import pyarrow as pa

from mapgen.core.columns import MESSAGES, METADATA, typed_columns
from mapgen.core.config import added
from mapgen.core.keywords import checked_keywords
from mapgen.core.request import Completion, Request
from mapgen.errors import INPUT, LENGTH, PARSE, InputError, error_text, split_error
from mapgen.llms.base import LLM
from mapgen.llms.jury import Jury
from mapgen.mapping.jury import jury_row, jury_types
from mapgen.mapping.map_function import Answer, MapFunction, completion_metadata
from mapgen.runtime.progress import counters
from mapgen.tasks.labelling import LabellingTask, mean_scores, weighted_score

PER_REQUEST = ("labelling_prompt", "raw_labelling_response", "labelling_reasoning", "labelling_metadata")
"""The columns with one entry per request sent: with ``swap=True``, a list of the given order's and the
reversed order's."""

TOP_LOGPROBS = 20
"""How many alternatives per token a probability-weighted rating asks for: enough to hold every digit
of a 1-to-5 scale even when a flat distribution puts other tokens among them."""


@dataclass(frozen=True)
class LabelFunction(MapFunction):
    """The callable :func:`label` returns; see there."""

    task: LabellingTask  # (checked in __post_init__)
    step: ClassVar[str] = "label"
    weighted_ratings: bool = False
    swap: bool = added(False)
    """Judge each row's texts again in reverse order (see :func:`label`); it changes what is written."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.task, LabellingTask):
            raise TypeError(
                f"label() needs a labelling task (e.g. mapgen.UltraFeedbackTask.for_overall_quality()), got "
                f"{type(self.task).__name__}; use mapgen.generate() for generation tasks."
            )
        if not isinstance(self.swap, bool):
            raise TypeError(f"swap must be True or False, got {self.swap!r}.")
        if self.swap and self.task.one_request_per_item:
            raise ValueError(
                f"swap=True judges a row's texts in both orders, and {type(self.task).__name__} rates each "
                "text in a prompt of its own (per_generation=True, or a critique task), where order has no "
                "meaning: use a task that rates the texts together, or leave swap off. Nothing was sent."
            )
        if self.weighted_ratings and self.task.score_output not in self.task.output_types():
            raise ValueError(
                f"weighted_ratings=True weighs a numeric score, and {type(self.task).__name__} writes none "
                f"({list(self.task.output_types())})."
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
        if self.swap:
            types.update({name: pa.list_(types[name]) for name in PER_REQUEST})
            types["rating_consistency"] = pa.bool_()
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
            if pa.types.is_list(kind) and (task.one_request_per_item or name not in PER_REQUEST)
        ]
        columns: dict[str, list[Any]] = {name: [] for name in types}
        for plan in plans:
            got = [next(answers) for _ in plan.requests]
            if self.swap:
                values = self._assemble_swapped(task, plan, got, aligned)
            else:
                values = self._assemble(task, plan, got, aligned)
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
        if error is None and task.num_items is not None and (size != task.num_items or len(kept) != size):
            error = (
                f"{type(task).__name__} compares exactly {task.num_items} {task.items}, none of them None or "
                f"empty; column {self.columns()[task.items]!r} holds {len(kept)} of {size}"
            )
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
                if self.swap and len(kept) > 1:  # the same texts in reverse: a request of its own
                    prompts.append(task.prompt({**row, task.items: [texts[i] for i in reversed(kept)]}))
        except InputError as refused:  # an input the task cannot prompt from (not text): this row only
            return _RowPlan(size=size, error=error_text(INPUT, self.input_error(refused)))
        requests = [Request(prompt, 0, schema, top_logprobs=top) for prompt in prompts]
        return _RowPlan(size=len(texts), kept=kept, requests=requests)

    def _assemble(
        self,
        task: LabellingTask,
        plan: _RowPlan,
        answers: list[Answer],
        aligned: list[str],
        *,
        count: bool = True,
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
            missing = sorted(i + 1 for i in plan.kept if scores[i] is None)  # (swap: kept is reversed)
            if missing:
                cut = _cut(task, plan, answers, missing)  # the limit, not the judge, left them out
                kind, why = (LENGTH, f"{self.cut_at(cut)}: ") if cut else (PARSE, "")
                problems.append(
                    error_text(kind, f"{why}no {task.score_output} for text(s) {missing} of {plan.size}")
                )
        if problems and count:
            counters.add(failed=1)
        # Each part keeps its kind, so the row's value starts with the first one's.
        values["labelling_error"] = "; ".join(problems) or None
        return values

    def _assemble_swapped(
        self, task: LabellingTask, plan: _RowPlan, answers: list[Answer], aligned: list[str]
    ) -> dict[str, Any]:
        """One row judged in both orders (``swap=True``): each verdict read as a row of its own, the
        reversed one with its texts put back in place, then merged by the task (its
        :meth:`~mapgen.LabellingTask.merge_orders`)."""
        if len(plan.requests) < 2:  # nothing sent, or one text: no order to swap
            values = self._assemble(task, plan, answers, aligned)
            values.update({name: [values[name]] for name in PER_REQUEST if values.get(name) is not None})
            return values
        # The reversed prompt's k-th text is kept[-1 - k]: read in that order, its values land in place.
        orders = (
            _RowPlan(size=plan.size, kept=plan.kept, requests=plan.requests[:1]),
            _RowPlan(size=plan.size, kept=plan.kept[::-1], requests=plan.requests[1:]),
        )
        given, reverse = (
            self._assemble(task, order, [answer], aligned, count=False)
            for order, answer in zip(orders, answers, strict=True)
        )
        outputs = list(task.output_types())
        merged, agree = task.merge_orders(
            {name: given.get(name) for name in outputs}, {name: reverse.get(name) for name in outputs}
        )
        values = {**given, **merged}
        if self.weighted_ratings:
            column = self.weighted_column
            values[column] = mean_scores(given[column], reverse[column])
        for name in PER_REQUEST:
            values[name] = [given[name], reverse[name]]
        problems = []
        # The reversed verdict was read back into the row's order: its texts are numbered as the row's.
        reversed_order = "reversed order (texts numbered as in the row)"
        for which, verdict in (("given order", given), (reversed_order, reverse)):
            if verdict["labelling_error"] is not None:
                kind, message = split_error(verdict["labelling_error"])
                problems.append(error_text(kind or PARSE, f"{which}: {message}"))
        if problems:
            counters.add(failed=1)
        values["labelling_error"] = "; ".join(problems) or None
        values["rating_consistency"] = None if problems else agree
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


@dataclass(frozen=True)
class JuryLabelFunction(LabelFunction):
    """The callable :func:`label` returns for a :class:`~mapgen.Jury`: each member rates as a judge of its
    own (a :class:`LabelFunction` with the same options), all at once, and
    :func:`mapgen.mapping.jury.jury_row` combines their columns."""

    judges: tuple[LabelFunction, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.llm, Jury):
            raise TypeError(
                f"JuryLabelFunction rates with a mapgen.Jury, got {self.llm!r}: use mapgen.label()."
            )
        options = {f.name: getattr(self, f.name) for f in fields(LabelFunction) if f.init}
        judges = tuple(LabelFunction(**{**options, "llm": member}) for member in self.llm.members)
        object.__setattr__(self, "judges", judges)

    @property
    def verdicts(self) -> list[str]:
        """The outputs the jury aggregates: the task's score (``rating``; for a task without one, such as
        :class:`~mapgen.PairwiseJudgeTask`, its first output: ``preference``) and the weighted score."""
        outputs = list(self.task.output_types())
        score = self.task.score_output if self.task.score_output in outputs else outputs[0]
        return [score, self.weighted_column] if self.weighted_ratings else [score]

    def output_types(self) -> dict[str, pa.DataType]:
        return jury_types(super().output_types(), self.verdicts)

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        with ThreadPoolExecutor(len(self.judges), thread_name_prefix="mapgen-jury") as threads:
            runs = [
                threads.submit(contextvars.copy_context().run, judge.process, rows, rank=rank)
                for judge in self.judges
            ]
            outputs = [run.result() for run in runs]  # a member's exception (misconfiguration) stops the map
        types, verdicts = self.output_types(), self.verdicts
        columns: dict[str, list[Any]] = {name: [] for name in types}
        for i in range(len(rows)):
            members = [{name: values[i] for name, values in output.items()} for output in outputs]
            for name, value in jury_row(members, verdicts, self.provenance).items():
                columns[name].append(value)
        return typed_columns(columns, types)

    def requests_for(self, rows: list[dict[str, Any]]) -> tuple[list[Request], int]:
        # What a dry run asks: each member's requests have their own store keys, prices and limits.
        raise TypeError(
            "estimate() takes one judge at a time: estimate a jury's members, "
            "[mapgen.estimate(ds, judge) for judge in fn.judges], and add them up."
        )


@checked_keywords
def label(
    llm: LLM,
    task: LabellingTask,
    *,
    input_columns: Mapping[str, str] | None = None,
    weighted_ratings: bool = False,
    swap: bool = False,
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

    ``llm`` may be a :class:`~mapgen.Jury`: each member rates as a judge of its own, and the row gets
    ``labelling_model`` (the members), ``ratings_by_judge`` (one rating list per member, aligned with it),
    their mean in ``rating`` and ``jury_agreement`` (see :mod:`mapgen.mapping.jury` and
    ``docs/labelling.md``).

    With ``swap=True`` each row is judged twice, its texts in the given order and then in reverse (a
    request of its own, kept in the store like any other), the second verdict is put back in the given
    order, and the row gets the mean of the two ratings per text (``None`` where either verdict has
    none; so does ``weighted_rating``) and ``rating_consistency``: ``True`` when both verdicts rank the
    texts the same way, ``False`` when the order changed the ranking (position bias), ``None`` when a
    verdict failed or the row has one text to rate (one request, nothing to swap). ``labelling_prompt``,
    ``raw_labelling_response``, ``labelling_reasoning`` and ``labelling_metadata`` then hold one entry per
    order, given first; ``labelling_error`` names the order that failed (``parse: reversed order (texts
    numbered as in the row): ...``); other outputs are the given order's.
    :class:`~mapgen.PairwiseJudgeTask` writes ``preference`` as ``"inconsistent"`` where the orders
    disagree. Tasks that rate each text in a prompt of its own
    (``per_generation=True``, critique tasks) have no order to swap: ``ValueError``.

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
    function = JuryLabelFunction if isinstance(llm, Jury) else LabelFunction
    return function(
        llm=llm,
        task=task,
        input_columns=dict(input_columns or {}),
        weighted_ratings=weighted_ratings,
        swap=swap,
        cache=cache,
        store=store,
        max_reasks=max_reasks,
    )
