"""Provider batch APIs as a map mode: ``OpenAILLM(..., batch_api=True)`` (OpenAI's Batch API) and
``AnthropicLLM(..., batch_api=True)`` (Anthropic's Message Batches), half the price, within 24 hours.

The map function takes the response store's answers out first, as always (:meth:`mapgen.mapping.map_function.
MapFunction.complete`); :func:`complete` is what then happens to the requests left, instead of sending them
one by one:

1. Requests with a batch job recorded in the store (submitted by an earlier run, maybe one that was
   killed) are not submitted again: their job is polled and collected.
2. The others are written as the provider's batch lines (``custom_id``: the request's store key, 64
   characters of ``[0-9a-f]``, within every provider's pattern), cut to the provider's limits per job
   (:mod:`mapgen.llms.provider_batches`), and submitted; each job's id is committed to the store, for every
   key in it, before the next job is submitted and before control returns.
3. With ``batch_wait=True`` (the default) the jobs are polled every ``batch_poll_interval`` seconds, the
   ``Requests`` bar following what the provider has processed, until each ends; with
   ``batch_wait=False`` they are polled once, and :class:`~mapgen.errors.BatchPending` names the jobs
   still running: the same map run later collects them.
4. An ended job's answers go into the store as ordinary answers (so a later synchronous run reuses
   them), and its records are dropped. Requests that failed, expired or were cancelled in it get ``None``
   with their reason (``batch_expired``, ``batch_cancelled``, ``batch_failed``, ``http_<status>``), are not
   stored, and are submitted again by the next run. A job that cannot be polled or read now (the network)
   keeps its record: its requests fail for this run with the reason, and the next run collects the job.

Example:
    >>> custom_id("3f" * 32) == "3f" * 32
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mapgen.core.request import Completion, Request
from mapgen.errors import BATCH_FAILED, BatchPending, StoreError
from mapgen.llms._api import fatal_error
from mapgen.llms._http import APIError
from mapgen.llms.provider_batches import BatchProvider, JobStatus, split
from mapgen.runtime import interrupts
from mapgen.runtime.progress import counters, request_progress
from mapgen.store import BatchJob, ResponseStore

logger = logging.getLogger(__name__)

Deliver = Callable[[int, Completion], None]


def custom_id(key: str) -> str:
    """A request's ``custom_id`` in a batch job: its store key (a SHA-256 in hex), cut to 64 characters,
    the longest Anthropic's pattern ``^[a-zA-Z0-9_-]{1,64}$`` allows."""
    return key[:64]


def complete(
    llm: Any, store: ResponseStore, keys: list[str], requests: list[Request], deliver: Deliver
) -> list[Completion]:
    """The answers to ``requests`` (their store keys ``keys``, distinct, claimed by the caller) through
    ``llm``'s batch API, in order; ``deliver(i, completion)`` is called as each is collected (the caller
    stores it). See the module docs for the steps.

    Raises:
        BatchPending: ``llm.batch_wait`` is off and some jobs are still running.
        FatalAPIError: the provider refused the key, the model or the URL.
    """

    provider: BatchProvider = llm.batch_provider()
    position = {key: i for i, key in enumerate(keys)}
    results: list[Completion | None] = [None] * len(keys)
    request_progress.expect(len(keys))

    def give(key: str, completion: Completion) -> None:
        i = position[key]
        if results[i] is None:
            results[i] = completion
            deliver(i, completion)

    known = store.batch_jobs(keys)
    jobs: dict[str, list[str]] = {}  # job id -> its keys among ours
    for key, job in known.items():
        jobs.setdefault(job.job_id, []).append(key)
    ids = {key: job.custom_id for key, job in known.items()}
    for job_id, job_keys in jobs.items():
        logger.info(
            "%s batch job %s: %d request(s) submitted by an earlier run, collecting",
            provider.name,
            job_id,
            len(job_keys),
        )
    new = [key for key in keys if key not in known]
    lines = [provider.line(custom_id(key), requests[position[key]]) for key in new]
    owner = {custom_id(key): key for key in new}
    for chunk in split(lines, max_requests=provider.max_requests, max_bytes=provider.max_bytes):
        chunk_keys = [owner[line["custom_id"]] for line in chunk]
        try:
            job_id = provider.submit(chunk)
        except APIError as error:
            if error.fatal:
                raise fatal_error(error) from None
            logger.warning(
                "%s batch job of %d request(s) not submitted: %s", provider.name, len(chunk), error
            )
            for key in chunk_keys:
                give(key, Completion.failed(f"{error} (submitting a batch job)", error.kind))
                request_progress.advance()
            continue
        try:
            store.record_batch_jobs({key: BatchJob(job_id, custom_id(key)) for key in chunk_keys})
        except StoreError as error:
            raise StoreError(
                f"{error} The batch job {job_id} was submitted but could not be recorded: collect it with "
                "the provider's own tools, or it is paid again by the next run."
            ) from error
        counters.add(requests=len(chunk))
        logger.info("%s batch job %s submitted: %d request(s)", provider.name, job_id, len(chunk))
        jobs[job_id] = chunk_keys
        ids.update((key, custom_id(key)) for key in chunk_keys)

    shown = dict.fromkeys(jobs, 0)  # requests of each job the bar has advanced by
    running = dict(jobs)
    try:
        while running:
            _poll(provider, store, running, shown, ids, give)
            if not running or not llm.batch_wait:
                break
            logger.debug("%d batch job(s) running; next poll in %g s", len(running), llm.batch_poll_interval)
            time.sleep(llm.batch_poll_interval)
    except KeyboardInterrupt:
        store.flush()  # what was collected is kept
        raise interrupts.interrupted(
            f"interrupted while waiting for batch job(s) {', '.join(sorted(running))}: they are recorded in "
            "the response store and go on at the provider; run the same map again to collect them (nothing "
            "is submitted twice)."
        ) from None
    if running:
        store.flush()  # what was collected is kept
        raise BatchPending(sorted(running), sum(len(k) for k in running.values()))
    return [r if r is not None else Completion.failed("no answer", BATCH_FAILED) for r in results]


def _poll(
    provider: BatchProvider,
    store: ResponseStore,
    running: dict[str, list[str]],
    shown: dict[str, int],
    ids: dict[str, str],
    give: Callable[[str, Completion], None],
) -> None:
    """Poll each running job once: advance the bar by what it has processed, collect it if it ended (it
    leaves ``running``), fail its requests if it cannot be polled (a fatal error raises)."""

    for job_id, job_keys in list(running.items()):
        try:
            status = provider.poll(job_id)
        except APIError as error:
            if error.fatal and error.status != 404:
                raise fatal_error(error) from None
            logger.warning("%s batch job %s cannot be polled: %s", provider.name, job_id, error)
            _fail_job(store, job_keys, error, give, forget=error.status == 404)
            status = None
        if status is not None:
            step = min(status.processed, len(job_keys)) - shown[job_id]
            # INFO when it moved (or ended): a job waited on for hours polls quietly in between
            logger.log(
                logging.INFO if step > 0 or status.ended else logging.DEBUG,
                "%s batch job %s: %s, %d of %d processed",
                provider.name,
                job_id,
                status.status,
                status.processed,
                status.total,
            )
            for _ in range(max(0, step)):
                request_progress.advance()
            shown[job_id] += max(0, step)
            if not status.ended:
                continue
            _collect(provider, store, status, job_keys, ids, give)
        for _ in range(len(job_keys) - shown[job_id]):
            request_progress.advance()
        shown[job_id] = len(job_keys)
        del running[job_id]


def _collect(
    provider: BatchProvider,
    store: ResponseStore,
    status: JobStatus,
    keys: list[str],
    ids: dict[str, str],
    give: Callable[[str, Completion], None],
) -> None:
    """Deliver an ended job's answers and failures, store them, then drop its records."""
    try:
        answers = provider.results(status)
    except APIError as error:
        logger.warning(
            "%s batch job %s ended (%s); its results cannot be read: %s",
            provider.name,
            status.job_id,
            status.status,
            error,
        )
        # A job that failed as a whole is over: its requests are submitted again. Results that could not be
        # read now (the network) are read by the next run.
        _fail_job(store, keys, error, give, forget=error.kind == BATCH_FAILED)
        return
    for key in keys:
        answer = answers.get(ids[key])
        if answer is None:
            answer = Completion.failed(f"no result in batch {status.job_id} ({status.status})", BATCH_FAILED)
        give(key, answer)
    store.flush()  # the answers are committed before their job's records go
    store.forget_batch_jobs(keys)
    got = sum(answers.get(ids[key]) is not None for key in keys)
    logger.info("%s batch job %s collected: %d of %d answered", provider.name, status.job_id, got, len(keys))


def _fail_job(
    store: ResponseStore,
    keys: list[str],
    error: APIError,
    give: Callable[[str, Completion], None],
    *,
    forget: bool,
) -> None:
    note = "" if forget else "; the job is kept: the next run collects it"
    for key in keys:
        give(key, Completion.failed(f"{error}{note}", error.kind))
    if forget:
        store.forget_batch_jobs(keys)
