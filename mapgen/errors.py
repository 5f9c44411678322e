"""What can go wrong, by kind: the short codes that lead every error column, and mapgen's exceptions.

A failed answer is data: ``None`` in place, and in the step's error column a reason that starts with a
short, stable code naming its kind, ``"<kind>: <message>"``, so that a dataset can be filtered and
re-run by kind. The codes:

==================  ==============================================================================
``input``           the row cannot be prompted (a missing or empty input column)
``http_<status>``   the server answered that HTTP status after every retry (``http_429``, ``http_500``)
``timeout``         no answer within the backend's ``timeout``, after every retry
``connection``      the server could not be reached, after every retry
``invalid_answer``  the server answered 200 with something that is not an answer of the shape asked for
``refused``         the model refused, or a content filter stopped the answer
``empty_answer``    the model answered with no text (``finish_reason`` says why); not retried
``engine``          a local engine failed on this prompt (too long for its context, say)
``parse``           the answer came, but the task could not read it
``invalid_output``  the answer came, but failed the task's answer model (names the field), after re-asks
``interrupted``     not sent: the run was interrupted (Ctrl-C) first; a re-run sends it
``batch_expired``   a batch API job ended (24 hours) before answering it; a re-run submits it again
``batch_cancelled`` its batch API job was cancelled before answering it; a re-run submits it again
``batch_failed``    its batch API job failed as a whole (a malformed file), or the provider errored on it
==================  ==============================================================================

Misconfiguration that would fail every request (a bad key, an unknown model, a missing client
library) is not data: it raises :class:`FatalAPIError` out of ``ds.map`` after a handful of requests.

Example:
    >>> text = error_text("http_429", "HTTP 429: slow down (after 3 attempts)")
    >>> text
    'http_429: HTTP 429: slow down (after 3 attempts)'
    >>> error_kind(text), error_kind(None)
    ('http_429', None)
"""

from __future__ import annotations

import re

INPUT = "input"
TIMEOUT = "timeout"
CONNECTION = "connection"
INVALID_ANSWER = "invalid_answer"
REFUSED = "refused"
EMPTY_ANSWER = "empty_answer"
ENGINE = "engine"
PARSE = "parse"
INVALID_OUTPUT = "invalid_output"
INTERRUPTED = "interrupted"
BATCH_EXPIRED = "batch_expired"
BATCH_CANCELLED = "batch_cancelled"
BATCH_FAILED = "batch_failed"

_KIND = re.compile(r"^([a-z]+(?:_[a-z0-9]+)*): ")


def http_kind(status: int) -> str:
    """The kind of an HTTP error status: ``http_429``."""
    return f"http_{status}"


def error_text(kind: str, message: str) -> str:
    """An error column's value: the kind's code, then the message."""
    return f"{kind}: {message}"


def error_kind(text: str | None) -> str | None:
    """The kind code at the start of an error column's value (``None`` for ``None``).

    Example:
        >>> error_kind("parse: no number in 'great'")
        'parse'
    """
    if text is None:
        return None
    match = _KIND.match(text)
    return match.group(1) if match else None


def error_kinds(text: str | None) -> list[str]:
    """Every kind in an error column's value, in order: a labelling error covers several texts, each
    part (``"; "``-separated) led by its own kind.

    Example:
        >>> error_kinds("parse: text 2: no score; http_500: text 3: HTTP 500: down")
        ['parse', 'http_500']
    """
    if text is None:
        return []
    return list(dict.fromkeys(kind for part in text.split("; ") if (kind := error_kind(part))))


def split_error(text: str) -> tuple[str | None, str]:
    """An error column's value as its kind and its message.

    Example:
        >>> split_error("parse: no number in 'great'")
        ('parse', "no number in 'great'")
    """
    kind = error_kind(text)
    return kind, text[len(kind) + 2 :] if kind else text


class FatalAPIError(RuntimeError):
    """An error that will fail every request of a map (a rejected key, an unknown model, a missing
    client library): raised out of ``ds.map`` after a handful of requests instead of one failure per
    row. Its message is scrubbed of credentials."""


class StoreError(RuntimeError):
    """The response store cannot be read or written; the message names the file and the way out."""


class BatchPending(Exception):
    """A map with ``batch_api=True, batch_wait=False`` submitted its requests to the provider's batch API
    (or found them submitted by an earlier run) and they are not all answered yet. The job ids are in the
    response store: run the same map again later to collect the answers; nothing is submitted twice.

    Attributes:
        jobs: the provider's ids of the batch jobs still running (``batch_...``, ``msgbatch_...``).
        pending: how many requests they still owe.

    Example:
        >>> error = BatchPending(["batch_abc"], pending=3)
        >>> error.jobs, str(error).split(":")[0]
        (['batch_abc'], '3 requests are pending in batch job(s) batch_abc')
    """

    def __init__(self, jobs: list[str], pending: int) -> None:
        self.jobs = list(jobs)
        self.pending = pending
        super().__init__(
            f"{pending} requests are pending in batch job(s) {', '.join(self.jobs)}: run the same map again "
            "later to collect them (their ids are in the response store; nothing is submitted twice)."
        )
