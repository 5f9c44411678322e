"""What every mapgen callable shares: reading a batch's rows, checking columns, rank, fingerprint."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import uuid
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

import pyarrow as pa
from datasets.fingerprint import Hasher

from mapgen._version import OUTPUT_FORMAT_VERSION
from mapgen.core.columns import TypedList, answer_came, misfit, writable_text
from mapgen.core.config import dataclass_fingerprint, knob
from mapgen.core.fingerprint import register_fingerprint_reducer
from mapgen.core.keywords import CheckedKeywords
from mapgen.core.prices import priced
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, OnComplete, Request
from mapgen.core.units import NANO_USD
from mapgen.errors import (
    ENGINE,
    INVALID_ANSWER,
    INVALID_OUTPUT,
    LENGTH,
    PARSE,
    CacheWarning,
    MissingColumnError,
    error_kind,
    error_text,
)
from mapgen.llms.base import LLM
from mapgen.mapping import batch_mode, provenance
from mapgen.mapping.reasoning import opens_reasoning, with_reasoning
from mapgen.runtime import event_loop, gc_pause, interrupts, turns
from mapgen.runtime.progress import counters, request_progress
from mapgen.store import ResponseStore, StoreURL, open_store, request_key, store_url
from mapgen.store.keys import store_identity
from mapgen.tasks.base import InputError, ParseError, Task
from mapgen.tasks.parsing import noting_repairs

logger = logging.getLogger(__name__)

Parsed = tuple[dict[str, Any], str | None]
"""What a task read from one answer: its outputs and ``None``, or ``{}`` and why there are none."""
Answer = tuple[Completion, Parsed]
"""One answer and what the task read from it (:meth:`MapFunction.reask`)."""

ACALL_IN_A_LOOP = (
    "fn.acall is for datasets' async map, which cannot run inside an event loop that is already running "
    "(a Jupyter notebook, or code under asyncio.run): pass fn itself, ds.map(fn, batched=True); its "
    "requests still run concurrently, on mapgen's own loop thread. From async code of your own, await "
    "one batch with `await asyncio.to_thread(fn, batch)`."
)


@dataclass(frozen=True)
class MapFunction(CheckedKeywords):
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
    store: str | None = knob(None)
    """Which response store: ``sqlite:///<path>`` or ``postgresql://...`` (default: ``$MAPGEN_STORE``, else
    the SQLite file in ``$MAPGEN_CACHE_DIR``). Where answers are kept, not what they are: no fingerprint."""
    max_reasks: int = 2
    """How many times an answer that fails the task's answer model (:class:`~mapgen.InvalidOutput`), or has a
    value its column cannot hold, is asked again before the row gets ``None`` and the validation error (not
    one cut at the token limit: see :meth:`parse_answer`); it changes output, so it counts."""
    _provenance: str = field(init=False, repr=False, compare=False)
    """:attr:`provenance`, set when the function is built."""

    step: ClassVar[str] = "generate"
    """What the function does to a dataset, as provenance records and dataset cards name it."""

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
        if self.store is not None:
            store_url(self.store)  # a misspelt URL fails here, before anything is sent
            object.__setattr__(self, "store", StoreURL(self.store))  # its repr hides the password
        if isinstance(self.max_reasks, bool) or not isinstance(self.max_reasks, int) or self.max_reasks < 0:
            raise ValueError(f"max_reasks must be an int >= 0, got {self.max_reasks!r}.")
        if getattr(self.llm, "batch_api", False) and not self.cache:
            raise ValueError(
                "batch_api=True keeps its job ids in the response store: drop cache=False (or batch_api)."
            )
        # What datasets hashes this function to; each answer's metadata refers to its provenance by it.
        object.__setattr__(self, "_provenance", _hash_or_warn(self) or uuid.uuid4().hex[:16])
        provenance.remember(self)
        interrupts.report_uncaught()  # a Ctrl-C that ends a num_proc map here prints as one line
        if self.task.sends_images and not self.llm.supports_images:
            raise ValueError(
                f"{type(self.task).__name__} sends images, which {type(self.llm).__name__} cannot: use a "
                "vision model behind an OpenAI-compatible server, mapgen.OpenAILLM(model, base_url=...)."
            )
        unknown = set(self.input_columns) - set(self.task.inputs)
        if unknown:
            raise ValueError(
                f"input_columns names {sorted(unknown)}, which {type(self.task).__name__} does not read; "
                f"its inputs are {list(self.task.inputs)}."
            )

    def __call__(self, batch: Mapping[str, Sequence[Any]], *args: Any) -> dict[str, list[Any]]:
        # datasets passes (batch), (batch, indices), (batch, rank) or (batch, indices, rank).
        rank = args[-1] if args and not isinstance(args[-1], (list, tuple)) else None
        rows = self.read_rows(batch)
        self.llm.preflight()
        provenance.record(self)
        interrupts.watch_parent()
        request_progress.follow_map()  # a new ds.map gets a Requests bar of its own
        with interrupts.reported(), gc_pause.paused():
            return self._process_overlapped(rows, rank=rank)

    @property
    def acall(self) -> Callable[..., Coroutine[Any, Any, dict[str, list[Any]]]]:
        """The same as calling the function, for ``datasets``' async map: ``ds.map(fn.acall, batched=True)``.

        ``datasets`` then keeps many batches in flight, so an API backend's ``max_concurrency`` window
        stays full across batch boundaries instead of draining at the end of each batch. Backends that
        are not safe to call from several threads (local engines) run one batch at a time, as usual.

        Raises:
            RuntimeError: read inside a running event loop (Jupyter, code under ``asyncio.run``), where
                ``datasets``' async map cannot run (it drives the loop itself): the message says to pass
                ``fn``, whose requests still run concurrently on mapgen's own loop thread.

        Example:
            >>> import asyncio, mapgen
            >>> fn = mapgen.generate(mapgen.OpenAILLM("m", base_url="http://127.0.0.1:9/v1", api_key="k"))
            >>> callable(fn.acall)
            True
            >>> async def notebook_cell():
            ...     return fn.acall
            >>> asyncio.run(notebook_cell())
            Traceback (most recent call last):
            RuntimeError: fn.acall is for datasets' async map, ...
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._acall
        # Raised here, while ds.map(fn.acall) is being called: datasets' own error would come after it had
        # queued the batches on the caller's loop, with a stray CancelledError traceback from them.
        raise RuntimeError(ACALL_IN_A_LOOP)

    async def _acall(self, batch: Mapping[str, Sequence[Any]], *args: Any) -> dict[str, list[Any]]:
        interrupts.watch_parent()  # here on the main thread, where a num_proc worker takes its signals
        request_progress.follow_map()  # here, where datasets' map is up the stack (not in the thread below)
        if getattr(self.llm, "concurrent_batches", False):
            event_loop.begin()  # the thread below copies this context: an interrupt from now on stops it
            try:
                return await asyncio.to_thread(self, batch, *args)
            except (asyncio.CancelledError, KeyboardInterrupt):
                event_loop.interrupt()  # Ctrl-C in datasets' loop cancels us; the thread must stop sending
                raise
        return self(batch, *args)

    def process(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        raise NotImplementedError

    def _process_in_turn(self, rows: list[dict[str, Any]], rank: int | None) -> dict[str, list[Any]]:
        """:meth:`process`, preparing its requests in this batch's turn (:mod:`mapgen.runtime.turns`)."""
        with turns.turn():
            return self.process(rows, rank=rank)

    def _process_overlapped(self, rows: list[dict[str, Any]], *, rank: int | None) -> dict[str, list[Any]]:
        """:meth:`process`, with the first rows' requests in flight while the rest of the batch is prepared.

        Prompts, store keys and claims cost ~0.07 ms a row: done for a whole batch of 1,000 before its
        first request, they leave an API backend's window empty for ~70 ms a batch. So the first
        ``max_concurrency`` rows (enough to fill the window) are processed on a thread of their own while
        this thread prepares the others; rows are independent, so the two halves' columns are simply
        joined. Local engines, which run one batch at a time, and batch APIs, which would submit two
        jobs, take the batch whole. A task whose ``prompt()`` raises on a row after the head stops the
        map once the head's requests (at most ``max_concurrency``, stored) are answered."""
        head_rows = getattr(self.llm, "max_concurrency", 0)  # a pool of backends has none: no split
        overlap = getattr(self.llm, "concurrent_batches", False) and not getattr(self.llm, "batch_api", False)
        if not overlap or head_rows < 1 or len(rows) < 2 * head_rows:
            return self._process_in_turn(rows, rank) if overlap else self.process(rows, rank=rank)
        # Started here, not under the GIL contention of the two halves: the loop, the store's connection.
        event_loop.background_loop()
        if self.cache:
            open_store(self.store)
        context = contextvars.copy_context()
        context.run(event_loop.begin)  # one run for an interrupt: Ctrl-C stops both halves
        head_turn: Future[turns.Turn] = Future()
        head: Future[dict[str, list[Any]]] = Future()

        def head_half() -> None:
            with turns.turn() as mine:
                head_turn.set_result(mine)
                try:
                    head.set_result(self.process(rows[:head_rows], rank=rank))
                except BaseException as error:  # known before the turn ends: the rest is then not sent
                    head.set_exception(error)

        # A daemon: after Ctrl-C and its grace, a head still waiting on the server does not hold up the exit.
        thread = threading.Thread(target=context.copy().run, args=(head_half,), daemon=True)
        thread.name = "mapgen-batch-head"
        thread.start()
        try:
            head_turn.result().over.wait()  # the rest prepares once the head has handed its requests over
            if head.done() and (error := head.exception()) is not None:
                raise error  # e.g. a task's prompt() failed on a head row
            rest = context.run(self._process_in_turn, rows[head_rows:], rank)
        except KeyboardInterrupt:
            if context.run(event_loop.interrupted):
                # the wait for the answers in flight was had (or cut) in run()
                context.run(event_loop.abandon)
                raise
            event_loop.interrupt()  # Ctrl-C while preparing: the head's queued requests are dropped
            try:
                wait([head], timeout=event_loop.INTERRUPT_GRACE)  # what is in flight lands; a 2nd Ctrl-C: not
            finally:
                context.run(event_loop.abandon)
            raise
        except BaseException:
            wait([head])  # the head's paid answers are stored before the error leaves
            raise
        first = head.result()
        return {
            name: TypedList(first[name] + values, values.arrow_type)
            if isinstance(values, TypedList)
            else first[name] + values
            for name, values in rest.items()
        }

    def complete(self, requests: list[Request], *, rank: int | None) -> list[Completion]:
        """Answers for ``requests``, in order: the one door through which every step reaches its LLM.

        With ``cache`` on, a request is identified by its store key (backend config, prompt, generation
        index, schema): answers already in the response store are reused, identical requests are sent
        once and the answer shared, and each new valid answer is stored the moment it arrives (see
        :mod:`mapgen.store`). With ``cache`` off, every request is sent and sampled on its own.
        """
        if not requests:
            return []
        if not self.cache:
            return counted_cuts(self._send(requests, rank=rank))

        store = open_store(self.store)
        keys = self.store_keys(requests)
        first: dict[str, int] = {}  # each key's first request
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        # Stored answers are made writable as fresh ones are in valid() (those stored before that was too).
        answers: dict[str, Completion] = {key: writable(c) for key, c in store.get_many(first).items()}
        pending = [key for key in first if key not in answers]
        counters.add(reused=len(requests) - len(pending))  # stored answers, and repeats of a request
        logger.debug(
            "%d of %d requests answered from the response store (or repeats of another in this batch)",
            len(requests) - len(pending),
            len(requests),
        )
        # A claim on each key we send, so that another run on this store (a second process, a batch
        # of datasets' async map) waits for our answer instead of paying for it again; released when
        # the answer is stored, or in the end.
        owner = uuid.uuid4().hex
        claimed: list[str] = []
        try:
            while pending:
                mine = store.claim(pending, owner)
                claimed += mine
                logger.debug(
                    "claimed %d of %d answers to send in the response store", len(mine), len(pending)
                )
                if mine:

                    def save(j: int, completion: Completion, mine: list[str] = mine) -> None:
                        if completion.text is None:
                            store.release([mine[j]], owner, wait=False)
                        else:
                            store.put(mine[j], completion, model=completion.model or self.llm.model_name)
                            interrupts.kept()

                    asked = [requests[first[key]] for key in mine]
                    if getattr(self.llm, "batch_api", False):
                        fresh = self._submit(store, mine, asked, on_complete=save)
                    else:
                        fresh = self._send(asked, rank=rank, on_complete=save)
                    answers.update(zip(mine, fresh, strict=True))
                held = [key for key in pending if key not in answers]  # in flight in another run
                if held:
                    turns.handing_over()  # waiting, not preparing: the next batch may prepare
                    logger.info(
                        "waiting for %d answer(s) that another run (a process or batch on the same store) "
                        "claimed and is sending",
                        len(held),
                    )
                    theirs = {key: writable(c) for key, c in store.wait_for(held).items()}
                    counters.add(reused=len(theirs))
                    logger.info(
                        "%d of %d claimed answer(s) came from the other run; the rest are sent here",
                        len(theirs),
                        len(held),
                    )
                    answers.update(theirs)
                pending = [key for key in held if key not in answers]  # it failed there: ours now
        finally:
            # After every answer of this call is committed: the claims of those still pending end, and
            # the answers are durable before the batch returns.
            store.release(claimed, owner)
        # A repeat of a request in this call shares its answer, paid for once: to it, a reused answer.
        return counted_cuts(
            [
                answers[key]
                if i == first[key] or answers[key].text is None
                else replace(answers[key], from_store=True)
                for i, key in enumerate(keys)
            ]
        )

    def store_keys(self, requests: Sequence[Request]) -> list[str]:
        """Each request's key in the response store (:func:`mapgen.store.request_key`), in order: the
        backend by its store name (:meth:`~mapgen.llms.base.LLM.store_fingerprint`), not its module path."""
        llm_key = Hasher.hash(store_identity(self.llm.store_fingerprint()))
        return [request_key(llm_key, request) for request in requests]

    def requests_for(self, rows: list[dict[str, Any]]) -> tuple[list[Request], int]:
        """The requests a batch of ``rows`` (from :meth:`read_rows`) sends at its first ask, before any
        re-ask, and how many rows send none (their input is invalid): what :func:`mapgen.estimate`
        counts, built by the same code as the map's."""
        raise NotImplementedError

    def reask(
        self, requests: list[Request], completions: list[Completion], *, rank: int | None
    ) -> list[Answer]:
        """``completions`` (the answers to ``requests``), each with what the task parsed from it
        (:meth:`read_answer`), where each answer that failed the task's answer model is asked again, up to
        ``max_reasks`` times, as a new request (``attempt`` 1, 2...: its own store key and seed). A re-ask
        that gets no answer at all keeps the invalid one and its error. An answer cut at the token limit is
        not asked again (its error is a ``length`` one: the same limit would cut it again). Every re-ask is
        counted (``counters["reasks"]``), and an answer that replaces an invalid one carries its tokens,
        cost and retries (both were paid for: the dataset's totals must not drop the first). Each answer is
        parsed once: the caller writes its row from the pairs.
        """
        answers = [self.read_answer(completion) for completion in completions]
        for attempt in range(1, self.max_reasks + 1):
            invalid = [i for i, (completion, (_, error)) in enumerate(answers) if _invalid(completion, error)]
            if not invalid:
                break
            counters.add(reasks=len(invalid))
            again = self.complete([replace(requests[i], attempt=attempt) for i in invalid], rank=rank)
            for i, completion in zip(invalid, again, strict=True):
                if completion.text is not None:
                    answers[i] = self.read_answer(paid_with(completion, answers[i][0]))
        return answers

    def _send(
        self, requests: list[Request], *, rank: int | None, on_complete: OnComplete | None = None
    ) -> list[Completion]:
        counters.add(requests=len(requests))
        request_progress.expect(len(requests))
        turns.handing_over()
        checked: dict[int, Completion] = {}

        def answered(i: int, completion: Completion) -> None:
            checked[i] = completion = spent(self.llm, valid(completion, self.llm))
            if on_complete is not None:
                on_complete(i, completion)
            request_progress.advance()

        completions = self.llm.complete(requests, rank=rank, on_complete=answered)
        return [checked.get(i) or spent(self.llm, valid(c, self.llm)) for i, c in enumerate(completions)]

    def _submit(
        self, store: ResponseStore, keys: list[str], requests: list[Request], *, on_complete: OnComplete
    ) -> list[Completion]:
        """:meth:`_send` through the provider's batch API (``batch_api=True``,
        :mod:`mapgen.mapping.batch_mode`)."""
        turns.handing_over()
        checked: dict[int, Completion] = {}

        def answered(i: int, completion: Completion) -> None:
            checked[i] = completion = spent(self.llm, valid(completion, self.llm))
            on_complete(i, completion)

        completions = batch_mode.complete(self.llm, store, keys, requests, answered)
        return [checked.get(i) or spent(self.llm, valid(c, self.llm)) for i, c in enumerate(completions)]

    def read_answer(self, completion: Completion) -> Answer:
        """``completion`` and what the task read from it (:meth:`parse_answer`), marked ``repaired``
        (:attr:`~mapgen.core.request.Completion.repaired`, which its metadata writes) where the task read it
        only after repairing its JSON (:func:`~mapgen.tasks.parsing.noting_repairs`)."""
        with noting_repairs() as repairs:
            parsed = self.parse_answer(completion)
        if repairs and parsed[1] is None:
            completion = replace(completion, repaired=True)
        return completion, parsed

    def parse_answer(self, completion: Completion) -> Parsed:
        """The task's outputs for one answer and ``None``, or ``{}`` and why there are none.

        Any exception from a parser is a parse error of that answer: a malformed answer, or a parser that
        did not expect it, must not stop the run. Values that their column's Arrow type cannot hold (an int
        beyond ``int64``: :func:`~mapgen.core.columns.misfit`) fail the answer as ``invalid_output`` (asked
        again), before they could fail the write of the whole batch; stored answers are parsed here too.
        An answer cut at the token limit (``finish_reason`` ``length``) that fails either way fails as
        ``length: cut at max_new_tokens=N``, not asked again; one that reads is kept, but not one that reads
        only after its JSON was repaired (:func:`~mapgen.tasks.parsing.parse_model`): what the limit cut
        off (the rest of a list, of a number) is not known.
        """
        if completion.text is None:
            return {}, error_text(completion.error_kind or ENGINE, completion.error or "no answer")
        try:
            with noting_repairs() as repairs:
                parsed = self.task.parse(completion.text)
            unfit = misfit(parsed, self._answer_types)
        except ParseError as error:
            problem = error_text(getattr(error, "kind", PARSE), str(error))
        except Exception as error:
            problem = error_text(PARSE, f"{type(error).__name__}: {error}")
        else:
            if unfit is None and not (repairs and completion.cut):
                return parsed, None
            # a misfit would fail the write of the whole batch; a cut answer read by repair fails as a cut
            problem = error_text(INVALID_OUTPUT, unfit or "read only after repairing its JSON")
        if completion.cut:  # why it cannot be read; the same limit would cut a re-ask again
            return {}, error_text(LENGTH, self.cut_at(completion))
        return {}, writable_text(problem)  # a parser may quote what it could not read

    def answer_types(self) -> Mapping[str, pa.DataType]:
        """The Arrow type of each value the task's ``parse`` returns for one answer, which
        :meth:`parse_answer` checks it against (:func:`~mapgen.core.columns.misfit`): the task's output
        columns' types."""
        return self.task.output_types()

    @cached_property
    def _answer_types(self) -> Mapping[str, pa.DataType]:
        """:meth:`answer_types`, once: the same mapping each answer, whose check :func:`misfit` compiles once
        (kept in the instance's ``__dict__``, out of its fields and fingerprint)."""
        return self.answer_types()

    def cut_at(self, completion: Completion) -> str:
        """Why an answer cut at the token limit (:attr:`~mapgen.core.request.Completion.cut`) failed:
        ``cut at max_new_tokens=16``, the limit of the backend (the member of a pool) that wrote it."""
        limit = getattr(_member(self.llm, completion.model), "max_new_tokens", None)
        return f"cut at max_new_tokens={limit}" if limit is not None else "cut at the token limit"

    def prompt_for(self, row: Mapping[str, Any]) -> tuple[Prompt | None, str | None]:
        """The row's prompt and ``None``, or ``None`` and why the row cannot be prompted, naming its dataset
        column: an empty input, or one the task refuses (:class:`~mapgen.tasks.base.InputError`: a
        conversation that does not end with a user turn, an image that cannot be read). The row gets an
        ``input`` error; the run goes on."""
        error = self.row_error(row)
        if error is not None:
            return None, error
        try:
            return self.task.prompt(row), None
        except InputError as refused:
            return None, self.input_error(refused)

    def input_error(self, refused: InputError) -> str:
        """An :class:`~mapgen.tasks.base.InputError` as the row's reason, naming the dataset column."""
        return f"column {self.columns().get(refused.input, refused.input)!r}: {refused}"

    def read_rows(self, batch: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """The batch as rows keyed by the task's input names, after checking the columns exist and that
        ``datasets`` passed a batch (``batched=True``), not one row."""
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"{type(self).__name__} reads the whole batch: do not pass input_columns to ds.map; name "
                "the columns on mapgen's side instead, e.g. mapgen.generate(llm, input_columns={'input': "
                "'question'}). Nothing was sent."
            )
        columns = self.columns()
        present = list(batch.keys())
        missing = [column for column in columns.values() if column not in present]
        if missing:
            raise MissingColumnError(
                f"{type(self.task).__name__} reads column(s) {missing}, which the dataset does not have. "
                f"Columns present: {present}. Rename them, or pass input_columns={{task input: column}}."
            )
        values = {name: batch[column] for name, column in columns.items()}
        if _is_one_row(batch, values.values()):
            raise TypeError(
                f"{type(self).__name__} takes batches of rows: call ds.map(fn, batched=True). It was given "
                "one row, as Dataset.map passes without batched=True; nothing was sent."
            )
        size = len(next(iter(values.values()))) if values else len(batch[present[0]])
        return [{name: column[i] for name, column in values.items()} for i in range(size)]

    def output_types(self) -> dict[str, pa.DataType]:
        """The columns this function writes, each with its Arrow type."""
        raise NotImplementedError

    def columns(self) -> dict[str, str]:
        """Task input name -> the dataset column it is read from."""
        return {name: self.input_columns.get(name, name) for name in self.task.inputs}

    def row_error(self, row: Mapping[str, Any]) -> str | None:
        """Why a row cannot be prompted (an input that is missing, empty or blank), naming the dataset's
        columns, or ``None``. Such a row gets ``None`` outputs and this reason; the run goes on.

        Example:
            >>> import mapgen
            >>> fn = mapgen.generate(mapgen.LlamaCppLLM(), input_columns={"input": "question"})
            >>> fn.row_error({"input": "  "})
            "column(s) ['question'] are empty"
        """
        columns = self.columns()
        empty = [columns.get(name, name) for name, value in row.items() if _is_empty(value)]
        return f"column(s) {empty} are empty" if empty else None

    @property
    def provenance(self) -> str:
        """The reference each answer's metadata carries to this function's provenance record: its
        fingerprint (see :mod:`mapgen.mapping.provenance`)."""
        return self._provenance

    def fingerprint(self) -> dict[str, Any]:
        return {"mapgen_output_format": OUTPUT_FORMAT_VERSION, **dataclass_fingerprint(self)}


def _hash_or_warn(fn: MapFunction) -> str | None:
    try:
        return Hasher.hash(fn)
    except Exception as error:
        warnings.warn(
            f"{type(fn).__name__} cannot be hashed ({type(error).__name__}: {error}), so datasets will give "
            "its map a random fingerprint and never reuse the result. Keep task and backend fields plain "
            "data, or functions that pickle (defined at module level).",
            CacheWarning,
            stacklevel=3,
        )
        return None


def valid(completion: Completion, llm: Any = None) -> Completion:
    """``completion`` if its text is a string (or it failed), else a failed ``invalid_answer``: the check
    that every backend's answers pass before they are parsed or stored. Reasoning that the text starts with
    moves to the completion's reasoning here (:func:`mapgen.mapping.reasoning.with_reasoning`): a ``<think>``
    block, or the text before ``</think>`` where ``llm`` (the member of a pool that wrote it) says its prompt
    opened the block (:func:`~mapgen.mapping.reasoning.opens_reasoning`)."""
    if completion.text is None or isinstance(completion.text, str):
        said = llm is not None and opens_reasoning(_member(llm, completion.model))
        opened = bool(completion.opened_reasoning) or said
        if completion.opened_reasoning is not None:  # read here, once: no stored answer carries it
            completion = replace(completion, opened_reasoning=None)
        return with_reasoning(writable(completion), opened=opened)
    return Completion.failed(f"answer is a {type(completion.text).__name__}, not text", INVALID_ANSWER)


def writable(completion: Completion) -> Completion:
    """``completion`` with text and reasoning that a column can hold: a lone surrogate (a server's JSON may
    escape one, ``"\\ud800"``), which would fail the write of the whole batch, made U+FFFD
    (:func:`~mapgen.core.columns.writable_text`). Fresh answers pass here (:func:`valid`), and so do stored
    ones (:meth:`MapFunction.complete`), kept before this check."""
    text, reasoning = completion.text, completion.reasoning
    clean_text = text if text is None else writable_text(text)
    clean_reasoning = reasoning if reasoning is None else writable_text(reasoning)
    if clean_text is text and clean_reasoning is reasoning:
        return completion
    return replace(completion, text=clean_text, reasoning=clean_reasoning)


def paid_with(answer: Completion, earlier: Completion) -> Completion:
    """``answer`` with the tokens, cost and retries of the invalid ``earlier`` answer it replaces added to
    its own (a count unknown on one side is the other's). An ``earlier`` answer reused from the store was
    paid for by another run, and counts nothing now (as :func:`mapgen.summary` counts reused answers)."""
    if earlier.from_store:
        return answer

    def total(a: Any, b: Any) -> Any:
        return a if b is None else b if a is None else a + b

    spent = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost", "retries")
    return replace(answer, **{name: total(getattr(answer, name), getattr(earlier, name)) for name in spent})


def _invalid(completion: Completion, error: str | None) -> bool:
    """Whether an answer came but failed the task's answer model (worth asking again)."""
    return completion.text is not None and error is not None and error_kind(error) == INVALID_OUTPUT


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_one_row(batch: Mapping[str, Any], values: Any) -> bool:
    """Whether ``datasets`` passed one row (``batched=False``) instead of a batch of rows."""
    from datasets.formatting.formatting import LazyRow

    if isinstance(batch, LazyRow):
        return True
    return any(isinstance(value, (str, bytes, int, float, bool, dict)) or value is None for value in values)


def completion_metadata(completion: Completion, provenance: str | None = None) -> dict[str, Any]:
    return {
        "provenance": provenance,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "from_store": completion.from_store,
        "cost": completion.cost,
        "cached_tokens": completion.cached_tokens,
        "schema_style": completion.schema_style,
        "repaired": completion.repaired,
        "retries": completion.retries,
    }


def counted_cuts(completions: list[Completion]) -> list[Completion]:
    """``completions``, the answers a map's rows get, after adding those cut at the token limit
    (:attr:`~mapgen.core.request.Completion.cut`, stored ones too) to :data:`mapgen.counters`' ``truncated``,
    which the ``Requests`` bar shows beside failures. Such an answer is never asked again (see
    :meth:`MapFunction.parse_answer`), so each is counted once."""
    cut = sum(completion.cut for completion in completions)
    if cut:
        counters.add(truncated=cut)
    return completions


def spent(llm: Any, completion: Completion) -> Completion:
    """``completion``, a fresh answer from ``llm`` (or a member of it, an :class:`~mapgen.LLMPool`, named by
    its ``model``), priced if it is not yet (local engines; the API backends price as they read), and
    added to :data:`mapgen.counters`' ``prompt_tokens``, ``completion_tokens`` and ``cost`` (in nano-USD), and
    to ``priced`` or ``unpriced`` when an answer came (counted as :func:`mapgen.usage` counts it)."""
    if completion.from_store:
        return completion
    if completion.cost is None and completion.text is not None:
        completion = priced(_member(llm, completion.model), [completion])[0]
    came = answer_came(completion_metadata(completion))
    counters.add(
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        cost=round(completion.cost / NANO_USD) if completion.cost is not None else 0,
        priced=int(completion.cost is not None),
        unpriced=int(came and completion.cost is None),
    )
    return completion


def _member(llm: Any, model: str | None) -> Any:
    """The member of a pool that wrote an answer (by its model name), else ``llm`` itself."""
    for member in getattr(llm, "members", ()):
        if member.model_name == model:
            return member
    return llm
