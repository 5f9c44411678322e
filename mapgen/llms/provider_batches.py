"""Providers' batch APIs: how requests are written as batch lines, submitted, polled and read back.

One class per provider, apart from the map-mode driver (:mod:`mapgen.mapping.batch_mode`) that decides what to
submit and keeps the job ids in the response store:

- :class:`OpenAIBatches`: OpenAI's Batch API. The lines ``{"custom_id", "method": "POST", "url":
  "/v1/chat/completions", "body"}`` go up as one JSONL file (``purpose="batch"``), then ``POST /batches``
  with ``completion_window="24h"``; the results come back as the batch's output and error files.
- :class:`AnthropicBatches`: Anthropic's Message Batches API. The lines ``{"custom_id", "params"}`` (the
  Messages body) go up in one ``POST /v1/messages/batches``; the results come back as JSONL from the
  batch's ``results_url``.

Each class caps a job at the provider's limits (:attr:`BatchProvider.max_requests` and
:attr:`BatchProvider.max_bytes`, class constants a test may lower); :func:`split` cuts a list of lines
to fit. Errors of the provider's API come out as :class:`~mapgen.llms._http.APIError` (scrubbed of keys).

Example:
    >>> lines = [{"custom_id": str(i), "body": {"x": "y" * 10}} for i in range(5)]
    >>> [len(job) for job in split(lines, max_requests=2, max_bytes=10_000)]
    [2, 2, 1]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from mapgen.core.prices import priced
from mapgen.core.request import Completion, Request
from mapgen.errors import BATCH_CANCELLED, BATCH_EXPIRED, BATCH_FAILED, http_kind
from mapgen.llms._http import APIError, to_api_error


@dataclass(frozen=True)
class JobStatus:
    """A batch job as last polled: the provider's ``status``, whether it has ``ended`` (its results can
    be read), and how many of its ``total`` requests are ``processed`` so far."""

    job_id: str
    status: str
    ended: bool
    processed: int
    total: int


class BatchProvider:
    """A provider's batch API for one backend config (see the module docs)."""

    name: ClassVar[str]
    max_requests: ClassVar[int]
    """The most requests one job takes."""
    max_bytes: ClassVar[int]
    """The most bytes one job's requests take (the JSONL file at OpenAI, the request body at Anthropic)."""

    def line(self, custom_id: str, request: Request) -> dict[str, Any]:
        """One request as a line of a job, named ``custom_id``."""
        raise NotImplementedError

    def submit(self, lines: list[dict[str, Any]]) -> str:
        """Create a job answering ``lines`` (within the limits); its id. Raises :class:`APIError`."""
        raise NotImplementedError

    def poll(self, job_id: str) -> JobStatus:
        """The job's status now. Raises :class:`APIError`."""
        raise NotImplementedError

    def results(self, status: JobStatus) -> dict[str, Completion]:
        """An ended job's answers by ``custom_id``: each a completion, or a failed one with its reason and
        kind (a request absent from the results is the caller's to fail). Raises :class:`APIError`."""
        raise NotImplementedError


def split(lines: list[dict[str, Any]], *, max_requests: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """``lines`` cut in order into jobs of at most ``max_requests`` lines and ``max_bytes`` bytes of JSON
    (one line each, and its newline). A line over ``max_bytes`` alone goes in a job of its own: the provider
    refuses it with its own reason, which the caller reports on that request."""
    jobs: list[list[dict[str, Any]]] = []
    size = 0
    for line in lines:
        length = len(json.dumps(line).encode()) + 1
        if not jobs or len(jobs[-1]) >= max_requests or size + length > max_bytes:
            jobs.append([])
            size = 0
        jobs[-1].append(line)
        size += length
    return jobs


_UNFINISHED = {"batch_expired": BATCH_EXPIRED, "batch_cancelled": BATCH_CANCELLED}
"""OpenAI's error codes for requests a job never ran, and their kinds."""


class OpenAIBatches(BatchProvider):
    """OpenAI's Batch API (https://platform.openai.com/docs/guides/batch) through the official ``openai``
    client, for :class:`~mapgen.OpenAILLM` with ``batch_api=True``."""

    name = "openai"
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024
    endpoint = "/v1/chat/completions"
    ENDED: ClassVar[frozenset[str]] = frozenset({"completed", "failed", "expired", "cancelled"})

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self.llm.resolved_api_key() or "none",
                base_url=self.llm.resolved_base_url,
                timeout=self.llm.timeout,
                max_retries=self.llm.max_retries,  # the SDK's backoff, honouring Retry-After
                default_headers=self.llm.extra_headers(),
            )
        return self._client

    def line(self, custom_id: str, request: Request) -> dict[str, Any]:
        style = self.llm.schema_styles[0] if request.schema is not None else None
        body = self.llm.wire.body(self.llm, request, 1, style)
        return {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}

    def submit(self, lines: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        with self._errors():
            upload = self.client().files.create(file=("mapgen-batch.jsonl", data), purpose="batch")
            batch = self.client().batches.create(
                input_file_id=upload.id, endpoint=self.endpoint, completion_window="24h"
            )
        return batch.id

    def poll(self, job_id: str) -> JobStatus:
        with self._errors():
            batch = self.client().batches.retrieve(job_id)
        counts = batch.request_counts
        total = counts.total if counts else 0
        processed = (counts.completed + counts.failed) if counts else 0
        return JobStatus(job_id, batch.status, batch.status in self.ENDED, processed, total)

    def results(self, status: JobStatus) -> dict[str, Completion]:
        with self._errors():
            batch = self.client().batches.retrieve(status.job_id)
            if batch.status == "failed":
                errors = batch.errors.data if batch.errors and batch.errors.data else []
                reason = "; ".join(f"line {e.line}: {e.message}" for e in errors[:3]) or "no reason given"
                raise _JobFailed(f"batch {batch.id} failed: {reason}")
            lines = [
                json.loads(text)
                for file_id in (batch.output_file_id, batch.error_file_id)
                if file_id
                for text in self.client().files.content(file_id).text.splitlines()
                if text.strip()
            ]
        answers: dict[str, Completion] = {}
        for line in lines:
            custom_id, response, error = line.get("custom_id"), line.get("response"), line.get("error")
            if not isinstance(custom_id, str):
                continue
            if isinstance(response, dict) and response.get("status_code") == 200:
                try:
                    answer = self.llm.wire.completions(response.get("body"), 1)
                    answers[custom_id] = priced(self.llm, answer, batch=True)[0]  # at the batch discount
                except APIError as invalid:
                    answers[custom_id] = Completion.failed(str(invalid), invalid.kind)
            elif isinstance(response, dict):
                code = response.get("status_code")
                detail = ((response.get("body") or {}).get("error") or {}).get("message", "")
                kind = http_kind(code) if isinstance(code, int) else BATCH_FAILED
                reason = f"HTTP {code} in batch {status.job_id}: {detail}"
                answers[custom_id] = Completion.failed(reason, kind)
            else:
                code = (error or {}).get("code") or ""
                kind = _UNFINISHED.get(code, BATCH_FAILED)
                message = (error or {}).get("message") or f"no answer (batch {status.status})"
                answers[custom_id] = Completion.failed(f"{message} (batch {status.job_id})", kind)
        return answers

    def _errors(self) -> _Translated:
        return _Translated(self.llm.secrets(), self.llm.timeout)


# Keyed by str | None: looked up with a field of a JSON answer, which may be missing.
ANTHROPIC_ERROR_STATUS: Mapping[str | None, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's error ``type`` values and the HTTP status each comes with (API reference, "Errors"): an
``errored`` batch result carries the type only, and becomes the ``http_<status>`` kind the same request
sent alone would have had."""

_ANTHROPIC_UNFINISHED: Mapping[str | None, str] = {"expired": BATCH_EXPIRED, "canceled": BATCH_CANCELLED}
"""Anthropic's result types for requests a batch never ran, and their kinds."""


class AnthropicBatches(BatchProvider):
    """Anthropic's Message Batches API (https://docs.anthropic.com/en/api/creating-message-batches)
    through the official ``anthropic`` client's low-level request path (its retries on, honouring
    ``retry-after``), for :class:`~mapgen.AnthropicLLM` with ``batch_api=True``. The bodies are the backend's
    own (:attr:`~mapgen.AnthropicLLM.wire`), so a batch request is exactly what the map would have posted
    to ``/v1/messages``.

    Example:
        >>> import mapgen
        >>> llm = mapgen.AnthropicLLM("claude-sonnet-4-5", api_key="sk-ant-x", max_new_tokens=8)
        >>> AnthropicBatches(llm).line("k1", Request(mapgen.Prompt("Hi")))
        {'custom_id': 'k1', 'params': {'model': 'claude-sonnet-4-5', 'max_tokens': 8, \
'messages': [{'role': 'user', 'content': 'Hi'}], 'temperature': 0.7}}
    """

    name = "anthropic"
    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024
    path = "/v1/messages/batches"

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import anthropic

            self._client = anthropic.Anthropic(
                api_key=self.llm.resolved_api_key() or "none",
                base_url=self.llm.resolved_base_url,
                timeout=self.llm.timeout,
                max_retries=self.llm.max_retries,  # the SDK's backoff, honouring retry-after
                default_headers={"anthropic-version": self.llm.api_version, **self.llm.extra_headers()},
            )
        return self._client

    def line(self, custom_id: str, request: Request) -> dict[str, Any]:
        style = self.llm.schema_styles[0] if request.schema is not None else None
        return {"custom_id": custom_id, "params": self.llm.wire.body(self.llm, request, 1, style)}

    def submit(self, lines: list[dict[str, Any]]) -> str:
        batch = self._call("post", self.path, body={"requests": lines})
        return _field(batch, "id", str)

    def poll(self, job_id: str) -> JobStatus:
        batch = self._call("get", f"{self.path}/{job_id}")
        counts = batch.get("request_counts") or {}
        total = sum(v for v in counts.values() if isinstance(v, int))
        processed = sum(counts.get(k) or 0 for k in ("succeeded", "errored", "canceled", "expired"))
        status = _field(batch, "processing_status", str)
        return JobStatus(job_id, status, status == "ended", processed, total)

    def results(self, status: JobStatus) -> dict[str, Completion]:
        batch = self._call("get", f"{self.path}/{status.job_id}")
        url = batch.get("results_url")
        if not isinstance(url, str):
            raise APIError.invalid_answer(f"batch {status.job_id} ended without a results_url")
        text = self._call("get", url, raw=True)
        answers: dict[str, Completion] = {}
        for row in text.splitlines():
            if not row.strip():
                continue
            try:
                item = json.loads(row)
            except ValueError:  # a damaged download: the job is kept, and read again by the next run
                raise APIError.invalid_answer(f"batch {status.job_id}: a results line is not JSON") from None
            custom_id, result = item.get("custom_id"), item.get("result") or {}
            if not isinstance(custom_id, str):
                continue
            kind = result.get("type")
            if kind == "succeeded":
                try:
                    answer = self.llm.wire.completions(result.get("message"), 1)
                    answers[custom_id] = priced(self.llm, answer, batch=True)[0]  # at the batch discount
                except APIError as invalid:
                    answers[custom_id] = Completion.failed(str(invalid), invalid.kind)
            elif kind == "errored":
                error = ((result.get("error") or {}).get("error")) or {}
                code = ANTHROPIC_ERROR_STATUS.get(error.get("type"))
                reason = f"{error.get('type', 'error')} in batch {status.job_id}: {error.get('message', '')}"
                if code is not None:
                    reason = f"HTTP {code}: {reason}"
                answers[custom_id] = Completion.failed(reason, http_kind(code) if code else BATCH_FAILED)
            else:
                unfinished = _ANTHROPIC_UNFINISHED.get(kind, BATCH_FAILED)
                answers[custom_id] = Completion.failed(f"{kind} (batch {status.job_id})", unfinished)
        return answers

    def _call(self, method: str, path: str, *, body: Any = None, raw: bool = False) -> Any:
        """One request through the SDK's low-level path: the JSON answer (or the text, ``raw``), the SDK's
        errors as :class:`APIError` (scrubbed)."""
        import httpx2

        options: dict[str, Any] = {"cast_to": httpx2.Response if raw else object}
        if body is not None:
            options["body"] = body
        try:
            answer = getattr(self.client(), method)(path, **options)
        except Exception as error:  # every transport error meets mapgen's in one place
            raise to_api_error(error, self.llm.secrets(), self.llm.timeout) from None
        if raw:
            return answer.text
        if not isinstance(answer, dict):
            raise APIError.invalid_answer(f"{path}: expected a JSON object, got {type(answer).__name__}")
        return answer


def _field(answer: dict[str, Any], name: str, kind: type) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind):
        raise APIError.invalid_answer(f"a message batch without {name!r}: {str(answer)[:200]}")
    return value


class _JobFailed(APIError):
    """A job that failed as a whole: every request in it gets this reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, kind=BATCH_FAILED)


class _Translated:
    """Turns the ``openai`` client's exceptions into :class:`APIError` (scrubbed), as the chat path does."""

    def __init__(self, secrets: Any, timeout: float) -> None:
        self.secrets = secrets
        self.timeout = timeout

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Literal[False]:
        if error is None or isinstance(error, APIError):
            return False
        import openai

        if isinstance(error, openai.APIStatusError):
            response = error.response
            raise APIError.from_status(
                response.status_code, response.content, response.headers, self.secrets
            ) from None
        if isinstance(error, openai.APITimeoutError):
            raise APIError.timeout(self.timeout) from None
        if isinstance(error, openai.APIConnectionError):
            raise APIError.connection(error.__cause__ or error, self.secrets) from None
        return False
