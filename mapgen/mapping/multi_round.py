"""``mapgen.generate`` for tasks that take several rounds of model calls per row
(:class:`~mapgen.tasks.rounds.RoundsTask`: multi-turn conversations, Magpie).

Each round builds the next request of every conversation still going, sends them all at once through
:meth:`~mapgen.mapping.map_function.MapFunction.complete` (so the response store, deduplication, claims and
the progress bar work as for any map) and feeds each answer back to its conversation. A failed answer ends
that conversation: ``None`` outputs, and the reason (which round, what kind) in ``generation_errors``.
A row's ``num_generations`` are independent conversations; generation ``i`` is asked with the same
generation index (so the same seed offset) in every round.

The columns are those of any generation map: ``generation_prompt`` keeps the messages of the first round
(what the conversation started from), ``raw_generation_responses`` the last answer, and
``generation_metadata`` the last finish reason with tokens and cost summed over every round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mapgen.core.columns import misfit, typed_columns, writable_text
from mapgen.core.request import Completion, Request
from mapgen.errors import ENGINE, INPUT, INVALID_OUTPUT, LENGTH, PARSE, InvalidOutput, error_text
from mapgen.llms.base import LLM
from mapgen.mapping import provenance
from mapgen.mapping.map_function import MapFunction
from mapgen.runtime import interrupts
from mapgen.runtime.progress import counters, request_progress
from mapgen.tasks.base import InputError, Task
from mapgen.tasks.parsing import noting_repairs
from mapgen.tasks.rounds import RoundsTask


def check_backend(llm: LLM, task: Task) -> None:
    """Refuse, before anything is sent, a task whose prompts end inside a message (Magpie's pre-query
    prefix) on a backend that cannot send such a prompt (OpenAI's own API, Hugging Face's)."""
    if getattr(task, "continues_final_message", False) and not llm.supports_continue_final_message:
        raise ValueError(
            f"{type(task).__name__} sends prompts that end inside a message (the chat template's text up to "
            f"where a user's text begins), which {type(llm).__name__}({llm.model_name!r}) cannot send: its "
            "API always starts a new assistant turn. Use a local engine (LlamaCppLLM, TransformersLLM, "
            "vLLM) or an OpenAI-compatible server that reads continue_final_message (vLLM, SGLang) "
            "through OpenAILLM(base_url=...). Nothing was sent."
        )


@dataclass
class _Conversation:
    """One generation of one row, through its rounds."""

    index: int
    state: dict[str, Any] | None = None
    first: list[dict[str, str]] | None = None
    last: Completion | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    cost: float | None = None
    from_store: list[bool] = field(default_factory=list)
    error: str | None = None
    repaired: bool = False
    """Whether a round's answer was read only after repairing its JSON."""
    retries: int = 0
    """The retries its rounds' requests took (:attr:`~mapgen.core.request.Completion.retries`)."""


def call_rounds(
    fn: MapFunction, num_generations: int, batch: Mapping[str, Sequence[Any]], *args: Any
) -> dict[str, list]:
    """``fn(batch, [indices], [rank])`` for a :class:`RoundsTask`, ``num_generations`` conversations a row:
    ``MapFunction.__call__`` with the dataset indices, which tasks that read no column need to tell rows
    apart."""
    indices = args[0] if args and isinstance(args[0], (list, tuple)) else None
    rank = args[-1] if args and not isinstance(args[-1], (list, tuple)) else None
    rows = fn.read_rows(batch)
    provenance.record(fn)
    task = _rounds_task(fn)
    if task.needs_row_index and indices is None:
        raise TypeError(
            f"{type(task).__name__} draws a new sample for each row, and tells rows apart by their index: "
            "call ds.map(fn, batched=True, with_indices=True). Nothing was sent."
        )
    fn.llm.preflight()
    interrupts.watch_parent()
    request_progress.follow_map()  # a new ds.map gets a Requests bar of its own
    with interrupts.reported():
        return run_rounds(fn, rows, num_generations=num_generations, indices=indices, rank=rank)


def run_rounds(
    fn: MapFunction,
    rows: list[dict[str, Any]],
    *,
    num_generations: int,
    indices: Sequence[int] | None,
    rank: int | None,
) -> dict[str, list]:
    """The rounds of every row's conversations, then the columns of a generation map."""
    task = _rounds_task(fn)
    n = num_generations
    schema = task.schema if fn.llm.supports_schema else None
    per_row: list[list[_Conversation]] = []
    for position, row in enumerate(rows):
        # With row indices, generation i of row r is sample r * n + i: each row draws its own.
        base = indices[position] * n if task.needs_row_index and indices is not None else 0
        conversations = [_Conversation(base + i) for i in range(n)]
        error = fn.row_error(row)
        for conversation in conversations:
            try:
                if error is None:
                    conversation.state = task.start(row)
            except InputError as refused:
                error = fn.input_error(refused)
            if error is not None:
                conversation.error = error_text(INPUT, error)
        per_row.append(conversations)

    going = [c for conversations in per_row for c in conversations if c.error is None]
    for number in range(1, task.max_rounds + 1):
        asked = [(c, p) for c in going if (p := task.next_prompt(c.state or {})) is not None]
        if not asked:
            break
        answers = fn.complete([Request(p, c.index, schema) for c, p in asked], rank=rank)
        for (conversation, prompt), answer in zip(asked, answers, strict=True):
            _advance(fn, conversation, prompt.messages(), answer, number)
        going = [c for c, _ in asked if c.error is None]
    for conversation in going:  # still asking after max_rounds: a task bug, bounded all the same
        if task.next_prompt(conversation.state or {}) is not None:
            conversation.error = error_text(ENGINE, f"not complete after {task.max_rounds} rounds")
    return _columns(fn, per_row)


def _rounds_task(fn: MapFunction) -> RoundsTask:
    """``fn``'s task, a :class:`RoundsTask` (the generate function calls here for those only)."""
    assert isinstance(fn.task, RoundsTask)
    return fn.task


def _advance(
    fn: MapFunction,
    conversation: _Conversation,
    messages: list[dict[str, str]],
    answer: Completion,
    number: int,
) -> None:
    conversation.first = conversation.first or messages
    conversation.last = answer
    conversation.prompt_tokens += answer.prompt_tokens or 0
    conversation.completion_tokens += answer.completion_tokens or 0
    if answer.cached_tokens is not None:
        conversation.cached_tokens = (conversation.cached_tokens or 0) + answer.cached_tokens
    if answer.cost is not None:
        conversation.cost = (conversation.cost or 0.0) + answer.cost
    conversation.from_store.append(answer.from_store)
    conversation.retries += answer.retries
    if answer.text is None:
        kind = answer.error_kind or ENGINE
        conversation.error = error_text(kind, f"round {number}: {answer.error or 'no answer'}")
        return
    try:
        with noting_repairs() as repairs:
            state = _rounds_task(fn).advance(conversation.state or {}, answer.text)
        if repairs and answer.cut:  # as in parse_answer: what the limit cut off is not known
            raise InvalidOutput("read only after repairing its JSON")
        conversation.state = state
        conversation.repaired = conversation.repaired or bool(repairs)
    except Exception as error:  # a parser's exception is data, as in parse_answer
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        kind, reason = (LENGTH, fn.cut_at(answer)) if answer.cut else (PARSE, writable_text(reason))
        conversation.error = error_text(kind, f"round {number}: {reason}")


def _columns(fn: MapFunction, per_row: list[list[_Conversation]]) -> dict[str, list]:
    task = _rounds_task(fn)
    types = fn.output_types()
    columns: dict[str, list[Any]] = {name: [] for name in types}
    for conversations in per_row:
        results = [_result(task, c) if c.error is None else {} for c in conversations]
        counters.add(failed=sum(c.error is not None for c in conversations))
        for name in task.output_types():
            columns[name].append([result.get(name) for result in results])
        columns["generation_model"].append(
            [(c.last.model if c.last else None) or fn.llm.model_name for c in conversations]
        )
        columns["generation_prompt"].append([c.first for c in conversations])
        columns["raw_generation_responses"].append([c.last.text if c.last else None for c in conversations])
        columns["generation_errors"].append([c.error for c in conversations])
        columns["generation_metadata"].append([_metadata(c, fn.provenance) for c in conversations])
        for values in columns.values():  # columns other steps add to a generation map: unknown here
            if len(values) < len(columns["generation_errors"]):
                values.append([None] * len(conversations))
    return typed_columns(columns, types)


def _result(task: RoundsTask, conversation: _Conversation) -> dict[str, Any]:
    """The output values of a complete conversation, or none and an ``invalid_output`` error where one
    does not fit its column (:func:`~mapgen.core.columns.misfit`): it would fail the write of the batch."""
    result = task.result(conversation.state or {})
    unfit = misfit(result, task.output_types())
    if unfit is None:
        return result
    conversation.error = error_text(INVALID_OUTPUT, unfit)
    return {}


def _metadata(conversation: _Conversation, provenance: str) -> dict[str, Any]:
    last = conversation.last
    return {
        "provenance": provenance,
        "finish_reason": last.finish_reason if last else None,
        "prompt_tokens": conversation.prompt_tokens if last else None,
        "completion_tokens": conversation.completion_tokens if last else None,
        "from_store": all(conversation.from_store) if last else False,
        "cost": conversation.cost,
        "cached_tokens": conversation.cached_tokens,
        "schema_style": last.schema_style if last else None,
        "repaired": conversation.repaired,
        "retries": conversation.retries,
    }
