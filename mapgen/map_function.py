"""What every mapgen callable shares: reading a batch's rows, checking columns, rank, fingerprint."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets.fingerprint import Hasher

from mapgen._version import OUTPUT_FORMAT_VERSION
from mapgen.config import dataclass_fingerprint, knob
from mapgen.fingerprint import register_fingerprint_reducer
from mapgen.llms.base import LLM, Completion, OnComplete, Request
from mapgen.progress import counters, request_progress
from mapgen.store import default_store, request_key
from mapgen.tasks.base import ParseError, Task


class MissingColumnError(ValueError):
    """A task needs a column the dataset does not have."""


@dataclass(frozen=True)
class MapFunction:
    """Base of the callables that :func:`mapgen.generate` and :func:`mapgen.label` return.

    Called by ``Dataset.map(fn, batched=True)`` with a batch (a dict of columns), and with the worker's
    rank after it when ``with_rank=True``; returns the new columns.
    """

    llm: LLM
    task: Task
    input_columns: Mapping[str, str] = field(default_factory=dict)
    """Task input name -> dataset column, for datasets whose columns are named differently."""
    cache: bool = knob(True)
    """Reuse and keep answers in the response store (:mod:`mapgen.store`); ``False`` always sends."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_fingerprint_reducer(cls)

    def __post_init__(self) -> None:
        if not isinstance(self.llm, LLM):
            raise TypeError(f"llm must be a mapgen LLM (e.g. mapgen.OpenAILLM(...)), got {self.llm!r}.")
        if not isinstance(self.task, Task):
            raise TypeError(
                f"task must be a mapgen Task (e.g. mapgen.TextGenerationTask()), got {self.task!r}."
            )
        if not isinstance(self.input_columns, Mapping):
            raise TypeError(
                f"input_columns must map task inputs to column names, got {self.input_columns!r}."
            )
        _warn_if_unhashable(self)
        unknown = set(self.input_columns) - set(self.task.inputs)
        if unknown:
            raise ValueError(
                f"input_columns names {sorted(unknown)}, which {type(self.task).__name__} does not read; "
                f"its inputs are {list(self.task.inputs)}."
            )

    def __call__(self, batch: Mapping[str, Sequence[Any]], *args: Any) -> dict[str, list[Any]]:
        # datasets passes (batch), (batch, indices), (batch, rank) or (batch, indices, rank).
        rank = args[-1] if args and not isinstance(args[-1], (list, tuple)) else None
        return self.process(self.read_rows(batch), rank=rank)

    async def acall(self, batch: Mapping[str, Sequence[Any]], *args: Any) -> dict[str, list[Any]]:
        """The same as calling the function, for ``datasets``' async map: ``ds.map(fn.acall, batched=True)``.

        ``datasets`` then keeps many batches in flight, so an API backend's ``max_concurrency`` window
        stays full across batch boundaries instead of draining at the end of each batch. Backends that
        are not safe to call from several threads (local engines) run one batch at a time, as usual.
        Not for Jupyter, where ``datasets``' async map cannot run inside the notebook's loop: there, pass
        ``fn`` itself (its requests still run concurrently on mapgen's own loop).
        """
        if getattr(self.llm, "concurrent_batches", False):
            return await asyncio.to_thread(self, batch, *args)
        return self(batch, *args)

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        raise NotImplementedError

    def complete(self, requests: list[Request], *, rank: int | None) -> list[Completion]:
        """Answers for ``requests``, in order: the one door through which every step reaches its LLM.

        With ``cache`` on, answers already in the response store are reused and each new successful
        answer is stored the moment it arrives (see :mod:`mapgen.store`).
        """
        if not requests:
            return []
        if not self.cache:
            return self._send(requests, rank=rank)

        store = default_store()
        llm_key = Hasher.hash(self.llm.fingerprint())
        keys = [request_key(llm_key, request) for request in requests]
        answers: list[Completion | None] = [None] * len(requests)
        stored = store.get_many(keys)
        missing = []
        for i, key in enumerate(keys):
            if key in stored:
                answers[i] = stored[key]
            else:
                missing.append(i)
        counters.add(reused=len(requests) - len(missing))
        if missing:

            def save(j: int, completion: Completion) -> None:
                store.put(keys[missing[j]], completion)

            fresh = self._send([requests[i] for i in missing], rank=rank, on_complete=save)
            for i, completion in zip(missing, fresh, strict=True):
                answers[i] = completion
        return answers  # type: ignore[return-value]  # every slot is filled above

    def _send(
        self, requests: list[Request], *, rank: int | None, on_complete: OnComplete | None = None
    ) -> list[Completion]:
        counters.add(requests=len(requests))
        request_progress.expect(len(requests))

        def answered(i: int, completion: Completion) -> None:
            if on_complete is not None:
                on_complete(i, completion)
            request_progress.advance()

        return self.llm.complete(requests, rank=rank, on_complete=answered)

    def parse_answer(self, completion: Completion) -> tuple[dict[str, Any], str | None]:
        """The task's outputs for one answer and ``None``, or ``{}`` and why there are none.

        Any exception from a parser is a parse error of that answer: a malformed answer, or a parser that
        did not expect it, must not stop the run.
        """
        if completion.text is None:
            return {}, completion.error or "no answer"
        try:
            return self.task.parse(completion.text), None
        except ParseError as error:
            return {}, f"parse error: {error}"
        except Exception as error:
            return {}, f"parse error: {type(error).__name__}: {error}"

    def read_rows(self, batch: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """The batch as rows keyed by the task's input names, after checking the columns exist."""
        columns = {name: self.input_columns.get(name, name) for name in self.task.inputs}
        present = list(batch.keys())
        missing = [column for column in columns.values() if column not in present]
        if missing:
            raise MissingColumnError(
                f"{type(self.task).__name__} reads column(s) {missing}, which the dataset does not have. "
                f"Columns present: {present}. Rename them, or pass input_columns={{task input: column}}."
            )
        values = {name: batch[column] for name, column in columns.items()}
        size = len(next(iter(values.values()))) if values else len(batch[present[0]])
        return [{name: column[i] for name, column in values.items()} for i in range(size)]

    def fingerprint(self) -> dict[str, Any]:
        return {"mapgen_output_format": OUTPUT_FORMAT_VERSION, **dataclass_fingerprint(self)}


class CacheWarning(UserWarning):
    """A mapgen callable that ``datasets`` cannot fingerprint: its maps will never be reused."""


def _warn_if_unhashable(fn: MapFunction) -> None:
    try:
        Hasher.hash(fn)
    except Exception as error:
        warnings.warn(
            f"{type(fn).__name__} cannot be hashed ({type(error).__name__}: {error}), so datasets will give "
            "its map a random fingerprint and never reuse the result. Keep task and backend fields plain "
            "data, or functions that pickle (defined at module level).",
            CacheWarning,
            stacklevel=3,
        )


def check_row_values(row: Mapping[str, Any]) -> str | None:
    """The reason a row cannot be prompted (an empty input), or ``None``. Such a row gets ``None``
    outputs and the reason, and the run goes on."""
    empty = [name for name, value in row.items() if value is None]
    return f"input column(s) {empty} are None" if empty else None


def completion_metadata(completion: Completion) -> dict[str, Any]:
    return {
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "from_store": completion.from_store,
    }
