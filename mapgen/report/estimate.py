"""``mapgen.estimate``: what a map would send, and what it would cost, before it runs (a dry run).

The requests are built by the map function's own code
(:meth:`~mapgen.mapping.map_function.MapFunction.requests_for`) and looked up in the response store under the
map's own keys (:meth:`~MapFunction.store_keys`), so the count is what the map would send: store hits and
repeats of a request (sent once) taken out, rows whose input is invalid counted apart. Re-asks of answers that
fail a task's answer model are not foreseen.

Tokens come, in order of preference, from:

- the model's tokenizer (:meth:`~mapgen.llms.base.LLM.token_counter`), where one is available offline
  (:class:`~mapgen.LlamaCppLLM`'s GGUF file, a :class:`~mapgen.TransformersLLM` model whose tokenizer is
  in local files): input tokens counted exactly;
- a *pilot*: a few of the requests (``pilot``, default :data:`DEFAULT_PILOT`), sent for real and chosen
  spread over the range of prompt lengths (the pending requests sorted by length, one from each
  ``1/pilot`` of them); their reported usage gives input tokens per character, scaled to every request,
  and the mean output tokens per answer. The pilot's answers go to the response store, so the map reuses
  them: the estimate counts them apart (``pilot_requests``), not among the requests still to send;
- else a rule of thumb (:data:`CHARS_PER_TOKEN`) for input, and ``max_new_tokens`` as the output's upper
  bound. ``pilot=0`` sends nothing at all.

Cost comes from :func:`mapgen.core.prices.price_for` (the backend's ``price_per_million``, else the maintained
price table), time from the pilot's latency under ``max_concurrency`` and the ``rpm``/``tpm`` limits (API
backends), or from the pilot's seconds per output token (local engines).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mapgen.core.keywords import checked_keywords
from mapgen.core.prices import price_for
from mapgen.core.prompt import Prompt
from mapgen.core.request import Completion, Request
from mapgen.llms.base import LLM
from mapgen.mapping.map_function import MapFunction
from mapgen.report.summary import table
from mapgen.store import open_store
from mapgen.tasks.rounds import RoundsTask

DEFAULT_PILOT = 8
"""How many requests the pilot sends by default: enough for a mean within a few percent on prompts of
steady shape, few enough to cost next to nothing."""

CHARS_PER_TOKEN = 4.0
"""Characters per token when neither a tokenizer nor a pilot can say (English text, BPE tokenizers)."""

ROWS_PER_CHUNK = 1000
"""Rows read, planned and looked up in the store at a time."""

TOKENIZER, PILOT, RULE_OF_THUMB, MAX_NEW_TOKENS = "tokenizer", "pilot", "rule of thumb", "max_new_tokens"


@dataclass(frozen=True)
class Estimate:
    """What a map would send and cost; :func:`estimate` makes one. Printed, a short table.

    ``answers`` count generations (one per ``num_generations`` per row, as the map asks them),
    ``requests`` the calls that carry them (fewer where an API backend asks a row's generations in one
    request with ``n``: an API that has it, no ``seed``, ``use_n`` not ``False``). Tokens and cost cover
    ``requests`` only: what the map still has to pay for.
    """

    model: str
    rows: int
    invalid_rows: int
    """Rows whose input is invalid (empty, refused by the task): the map writes ``None`` and sends nothing."""
    answers_asked: int
    """Answers the map asks for (rows x ``num_generations``, or one per labelling request)."""
    stored: int
    """Answers the response store already holds (the pilot's included): the map reuses them."""
    repeated: int
    """Answers identical to another of this map (same prompt, index, schema): sent once, shared."""
    answers: int
    """Answers the map still has to request."""
    requests: int
    """Requests (API calls, engine calls) carrying those answers."""
    pilot_requests: int
    """Requests the pilot sent just now (answered ones are in the store and counted in ``stored``)."""
    input_tokens: int
    input_method: str
    """``tokenizer`` (counted), ``pilot`` (the pilot's tokens per character) or ``rule of thumb``."""
    output_tokens: int
    output_method: str
    """``pilot`` (the pilot's mean per answer) or ``max_new_tokens`` (the upper bound)."""
    cost: float | None
    """USD, or ``None`` where no price is known (pass ``price_per_million=(input, output)``)."""
    seconds: float | None
    """Expected wall time of the map, or ``None`` when nothing bounds it (no pilot, no limits)."""
    time_method: str
    """What sets :attr:`seconds`: ``max_concurrency``, ``rpm``, ``tpm``, ``pilot tokens/s`` or ``unknown``."""
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        approx = {TOKENIZER: "", PILOT: "~", RULE_OF_THUMB: "~"}
        lines = [
            ("model", self.model),
            (
                "rows",
                f"{self.rows:,}"
                + (f" ({self.invalid_rows:,} invalid: nothing sent)" * bool(self.invalid_rows)),
            ),
            (
                "answers",
                f"{self.answers_asked:,} asked: {self.stored:,} in the store, {self.repeated:,} repeated, "
                f"{self.answers:,} to send",
            ),
            ("requests", f"{self.requests:,} (pilot: {self.pilot_requests:,} sent)"),
            (
                "input tokens",
                f"{approx[self.input_method]}{self.input_tokens:,} ({_METHODS[self.input_method]})",
            ),
            (
                "output tokens",
                ("~" if self.output_method == PILOT else "at most ")
                + f"{self.output_tokens:,} ({_METHODS[self.output_method]})",
            ),
            ("cost", "unknown (no price known)" if self.cost is None else f"${self.cost:,.4f}"),
            ("time", "unknown" if self.seconds is None else f"~{self.seconds:,.1f} s ({self.time_method})"),
        ]
        lines += [("note", note) for note in self.notes]
        return table(lines)


_METHODS = {
    TOKENIZER: "counted with the model's tokenizer",
    PILOT: "from the pilot's usage",
    RULE_OF_THUMB: f"{CHARS_PER_TOKEN:g} characters per token",
    MAX_NEW_TOKENS: "max_new_tokens per answer, the upper bound",
}


@checked_keywords
def estimate(ds: Any, fn: MapFunction, *, pilot: int = DEFAULT_PILOT) -> Estimate:
    """What ``ds.map(fn, batched=True)`` would send and cost, sending at most ``pilot`` requests.

    ``fn`` is what :func:`mapgen.generate` or :func:`mapgen.label` returns; ``ds`` a ``datasets.Dataset``.
    How tokens, cost and time are found, and what the pilot does: see :mod:`mapgen.report.estimate`.

    Raises:
        MissingColumnError: ``fn`` reads a column ``ds`` lacks (as the map would).
        TypeError: ``fn`` is not a generate or label function, or its task has several rounds per row
            (Magpie, conversations), whose later prompts depend on the answers.
        ValueError: ``pilot`` < 0, or the backend cannot run (a missing key), before the pilot is sent.

    Example:
        >>> import datasets, mapgen
        >>> ds = datasets.Dataset.from_dict({"input": ["Name a fruit.", "Name a fruit.", ""]})
        >>> fn = mapgen.generate(mapgen.LlamaCppLLM(max_new_tokens=16, seed=0), cache=False)
        >>> guess = mapgen.estimate(ds, fn, pilot=0)
        >>> guess.requests, guess.invalid_rows, guess.input_method, guess.output_tokens
        (2, 1, 'tokenizer', 32)
    """
    if not isinstance(fn, MapFunction):
        raise TypeError(
            f"estimate() takes what mapgen.generate() or mapgen.label() returns, got {type(fn).__name__}; "
            "for a pipeline, estimate its steps: estimate(ds, fn.generate)."
        )
    if isinstance(fn.task, RoundsTask):
        raise TypeError(
            f"{type(fn.task).__name__} asks several rounds per row, each prompt built from the answers "
            "before it: they cannot be foreseen without running the map."
        )
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 0:
        raise ValueError(f"pilot must be an int >= 0, got {pilot!r}.")
    llm = fn.llm
    found = _plan(ds, fn)
    calls = _calls(llm, found.pending)
    notes: list[str] = []

    sent: list[list[Request]] = []
    piloted: list[tuple[list[Request], list[Completion]]] = []
    pilot_seconds = 0.0
    if pilot and calls:
        llm.preflight()  # a missing key raises here, before anything is sent
        sent = _spread(calls, pilot)
        started = time.perf_counter()
        answered = fn.complete([r for call in sent for r in call], rank=None)
        pilot_seconds = time.perf_counter() - started
        position = 0
        for call in sent:
            piloted.append((call, answered[position : position + len(call)]))
            position += len(call)
        failed = [c for _, cs in piloted for c in cs if c.text is None]
        if failed:
            notes.append(f"{len(failed)} pilot answer(s) failed, e.g. {failed[0].error}")
        if fn.cache:  # the store now holds the answered ones: the map will not pay for them again
            kept = {id(call) for call, cs in piloted if all(c.text is not None for c in cs)}
            found.stored += sum(len(call) for call in sent if id(call) in kept)
            calls = [call for call in calls if id(call) not in kept]
        else:
            notes.append("cache=False: the map will send the pilot's requests again")
    answers = sum(len(call) for call in calls)

    counter = llm.token_counter()
    usable = [
        (call, cs)
        for call, cs in piloted
        if all(c.prompt_tokens is not None and c.text is not None for c in cs)
    ]
    characters = sum(_characters(call[0].prompt) for call in calls)
    pilot_characters = sum(_characters(call[0].prompt) for call, _ in usable)
    per_character = 1 / CHARS_PER_TOKEN
    if pilot_characters:
        # A call's answers hold shares of its usage (n answers of one request): together, its prompt.
        per_character = sum(c.prompt_tokens or 0 for _, cs in usable for c in cs) / pilot_characters
    if counter is not None:
        input_tokens, input_method = sum(counter(call[0].prompt) for call in calls), TOKENIZER
    elif pilot_characters:
        input_tokens, input_method = round(characters * per_character), PILOT
    else:
        input_tokens, input_method = round(characters / CHARS_PER_TOKEN), RULE_OF_THUMB

    # An answer's completion tokens (its share, where one request carried several); where a backend
    # reports none, its text's characters at the prompt's tokens per character.
    outputs = [
        c.completion_tokens if c.completion_tokens is not None else len(c.text or "") * per_character
        for _, cs in usable
        for c in cs
    ]
    if outputs:
        output_tokens, output_method = round(answers * sum(outputs) / len(outputs)), PILOT
    else:
        output_tokens, output_method = answers * llm.max_new_tokens, MAX_NEW_TOKENS

    price = price_for(llm)
    cost = None
    if price is not None and calls:
        # Priced per request, at the mean request's usage: a table's tiers go by one request's tokens.
        batch = bool(getattr(llm, "batch_api", False))
        cost = price.cost(input_tokens / len(calls), output_tokens / len(calls), batch=batch) * len(calls)
    elif price is not None:
        cost = 0.0
    elif llm.billed_per_token:  # a local engine has no price per token
        notes.append(f"no price known for {llm.model_name}: pass price_per_million=(input, output)")

    pilot_output = round(sum(outputs))
    seconds, time_method = _seconds(
        llm, len(calls), input_tokens + output_tokens, output_tokens, sent, pilot_seconds, pilot_output
    )
    return Estimate(
        model=llm.model_name,
        rows=found.rows,
        invalid_rows=found.invalid_rows,
        answers_asked=found.asked,
        stored=found.stored,
        repeated=found.repeated,
        answers=answers,
        requests=len(calls),
        pilot_requests=len(sent),
        input_tokens=input_tokens,
        input_method=input_method,
        output_tokens=output_tokens,
        output_method=output_method,
        cost=cost,
        seconds=seconds,
        time_method=time_method,
        notes=tuple(notes),
    )


@dataclass
class _Found:
    rows: int = 0
    invalid_rows: int = 0
    asked: int = 0
    stored: int = 0
    repeated: int = 0
    pending: list[Request] = field(default_factory=list)


def _plan(ds: Any, fn: MapFunction) -> _Found:
    """Every request of the map, by the map's own code, less store hits and repeats (with the store on)."""
    found = _Found()
    seen: set[str] = set()
    store = open_store(fn.store) if fn.cache else None
    for start in range(0, len(ds), ROWS_PER_CHUNK):
        rows = fn.read_rows(ds[start : start + ROWS_PER_CHUNK])
        requests, invalid = fn.requests_for(rows)
        found.rows += len(rows)
        found.invalid_rows += invalid
        found.asked += len(requests)
        if store is None:  # cache=False: every request is sent, each sampled on its own
            found.pending += requests
            continue
        first: dict[str, Request] = {}
        for key, request in zip(fn.store_keys(requests), requests, strict=True):
            if key not in seen and key not in first:
                first[key] = request
        found.repeated += len(requests) - len(first)
        seen.update(first)
        hits = store.get_many(list(first))
        found.stored += len(hits)
        found.pending += [request for key, request in first.items() if key not in hits]
    return found


def _calls(llm: LLM, requests: list[Request]) -> list[list[Request]]:
    """The requests as the backend sends them, by its own rule (:meth:`~mapgen.llms.base.LLM.call_groups`:
    an API asks a row's generations in one call with ``n`` where it has it; else one call each)."""
    return [[request for _, request in group] for group in llm.call_groups(requests)]


def _spread(calls: list[list[Request]], count: int) -> list[list[Request]]:
    """``count`` calls spread over the range of prompt lengths: one from each ``1/count`` of the calls
    sorted by length (the middle one), so a few stand for short and long prompts alike."""
    ordered = sorted(calls, key=lambda call: _characters(call[0].prompt))
    count = min(count, len(ordered))
    return [ordered[int((i + 0.5) * len(ordered) / count)] for i in range(count)]


def _characters(prompt: Prompt) -> int:
    return sum(len(message.content) for message in prompt.turns)


def _seconds(
    llm: LLM,
    calls: int,
    tokens: int,
    output_tokens: int,
    pilot: Sequence[list[Request]],
    pilot_seconds: float,
    pilot_output: int,
) -> tuple[float | None, str]:
    """The map's expected wall time and what sets it (the largest of the bounds that are known)."""
    if not calls:
        return 0.0, "nothing to send"
    limits = llm.send_limits()
    if limits is None:
        if pilot_output:  # local engines answer one request after another, in each process
            return output_tokens * pilot_seconds / pilot_output, "pilot tokens/s"
        return None, "unknown"
    bounds: dict[str, float] = {}
    if pilot:
        waves = math.ceil(len(pilot) / limits.max_concurrency)
        bounds["max_concurrency"] = math.ceil(calls / limits.max_concurrency) * pilot_seconds / waves
    if limits.rpm:
        bounds["rpm"] = 60.0 * calls / limits.rpm
    if limits.tpm:
        bounds["tpm"] = 60.0 * tokens / limits.tpm
    if not bounds:
        return None, "unknown"
    slowest = max(bounds, key=bounds.__getitem__)
    return bounds[slowest], slowest
