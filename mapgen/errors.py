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
``invalid_output``  the answer came, but failed the task's answer model (names the field) or does not fit its
                    column's type (``population: value does not fit int64``), after re-asks
``length``          the answer was cut at the token limit and cannot be read (``cut at max_new_tokens=16``);
                    not re-asked, since the same limit would cut it again: raise ``max_new_tokens``
``interrupted``     not sent: the run was interrupted (Ctrl-C) first; a re-run sends it
``batch_expired``   a batch API job ended (24 hours) before answering it; a re-run submits it again
``batch_cancelled`` its batch API job was cancelled before answering it; a re-run submits it again
``batch_failed``    its batch API job failed as a whole (a malformed file), or the provider errored on it
==================  ==============================================================================

Misconfiguration that would fail every request (a bad key, an unknown model, a missing client
library) is not data: it raises :class:`FatalAPIError` out of ``ds.map`` after a handful of requests.

Every exception and warning class mapgen defines is here, under :class:`MapgenError`, each also the
built-in class it always was (``except ValueError`` still catches an :class:`InputError`). A config that
is wrong in itself (a ``temperature`` that is no number, an option a provider has not) raises Python's
own ``TypeError`` or ``ValueError`` where it is built, as ``datasets`` and the SDKs do: those are not
``MapgenError`` s.

======================  ====================  =======================================================
class                   also a                raised
======================  ====================  =======================================================
``MapgenError``         ``Exception``         the base of all below but :class:`Interrupted`
``MapgenWarning``       ``UserWarning``       the base of mapgen's warnings
``FatalAPIError``       ``RuntimeError``      out of ``ds.map``: every request would fail alike
``StoreError``          ``RuntimeError``      the response store cannot be read or written
``BatchPending``                              out of ``ds.map`` with ``batch_wait=False``: jobs still run
``APIError``                                  a request failed: retried, else the row's error
``InputError``          ``ValueError``        a task cannot prompt from a row: the row's ``input`` error
``ImageError``          ``ValueError``        an image column's value is no image: an ``input`` error
``ParseError``          ``ValueError``        a task cannot read an answer: the row's ``parse`` error
``InvalidOutput``       ``ParseError``        an answer fails the task's answer model: asked again
``AmbiguousScore``      ``ParseError``        a score only a guess could put on the task's scale
``MissingColumnError``  ``ValueError``        before a map: a task input has no dataset column
``NotStrict``           ``ValueError``        a schema OpenAI's strict mode cannot take as it is
``DamagedAnswer``       ``ValueError``        a stored value that is no answer: a :class:`StoreError`
``DeviceError``         ``RuntimeError``      GPU placement that cannot work, in a worker
``ArgillaUnreachable``  ``ConnectionError``   the Argilla server cannot be reached: its URL, masked
``CacheWarning``        ``MapgenWarning``     a map function ``datasets`` cannot fingerprint
``StoreWarning``        ``MapgenWarning``     storing failed mid-run; the run goes on without it
``SchemaWarning``       ``MapgenWarning``     a server took the answer schema only as a guide, or not at all
``Interrupted``         ``KeyboardInterrupt`` Ctrl-C during a map: what was kept, and that a re-run resumes
======================  ====================  =======================================================

:class:`Interrupted` alone is no :class:`MapgenError`: that base is an ``Exception``, and a Ctrl-C that
``except Exception`` catches no longer stops a program. Three classes stay private beside their one
user, each a :class:`MapgenError` too: the CLI's ``CommandError`` and ``InterruptedRun``, which
``mapgen.cli.main`` turns into a message and an exit status, and the batch APIs' ``_JobFailed`` (an
:class:`APIError` whose kind is ``batch_failed``).

Example:
    >>> text = error_text("http_429", "HTTP 429: slow down (after 3 attempts)")
    >>> text
    'http_429: HTTP 429: slow down (after 3 attempts)'
    >>> error_kind(text), error_kind(None)
    ('http_429', None)
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping

INPUT = "input"
TIMEOUT = "timeout"
CONNECTION = "connection"
INVALID_ANSWER = "invalid_answer"
REFUSED = "refused"
EMPTY_ANSWER = "empty_answer"
ENGINE = "engine"
PARSE = "parse"
INVALID_OUTPUT = "invalid_output"
LENGTH = "length"
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


RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FATAL_STATUS = frozenset({401, 403, 404})
"""Answers that every request of a map would get alike: a rejected key, no access, an unknown model or
URL. They stop the map instead of failing each row."""

_KEY_PATTERNS = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|hf_[A-Za-z0-9]{6,}|(?i:bearer)\s+[A-Za-z0-9._\-]{6,})")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets, and anything shaped like an API key or bearer token, masked.

    Example:
        >>> scrub("Incorrect API key provided: sk-abc123456789.", ["sk-abc123456789"])
        'Incorrect API key provided: ***.'
        >>> scrub("Authorization: Bearer s3cr3t-token")
        'Authorization: ***'
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_PATTERNS.sub("***", text)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``Retry-After-Ms`` or ``Retry-After`` (seconds or an HTTP date); ``0`` is a
    valid answer (retry at once), ``None`` means no usable header.

    Example:
        >>> parse_retry_after({"Retry-After": "0"}), parse_retry_after({"retry-after-ms": "250"})
        (0.0, 0.25)
    """
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) or headers.get(name.title())
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
        if divisor == 1.0:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            return max(0.0, when.timestamp() - time.time())
    return None


class MapgenError(Exception):
    """Base of every exception mapgen raises (but :class:`Interrupted`, a ``KeyboardInterrupt``) and of its
    warnings; each also keeps its built-in base (``ValueError``, ``RuntimeError``...).

    Example:
        >>> issubclass(InputError, MapgenError) and issubclass(InputError, ValueError)
        True
    """


class MapgenWarning(MapgenError, UserWarning):
    """Base of mapgen's warnings, so that one filter names them all (a filter's ``category`` must be a
    ``Warning``, which :class:`MapgenError` is not).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("ignore", MapgenWarning)
        ...     warnings.warn("the store failed", StoreWarning)
        >>> caught
        []
    """


class FatalAPIError(MapgenError, RuntimeError):
    """An error that will fail every request of a map (a rejected key, an unknown model, a missing
    client library): raised out of ``ds.map`` after a handful of requests instead of one failure per
    row. Its message is scrubbed of credentials."""


class StoreError(MapgenError, RuntimeError):
    """The response store cannot be read or written; the message names the file and the way out."""


class BatchPending(MapgenError):
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


class APIError(MapgenError):
    """A request that failed: its kind (one of the codes above), HTTP status (``None`` for connection
    errors and timeouts), whether a retry may help, whether it will fail every request alike (``fatal``),
    and the server's ``Retry-After`` in seconds, if it sent one. The message is scrubbed.

    Every transport's errors (aiohttp, the ``openai`` and ``anthropic`` SDKs, ``huggingface_hub``) become
    these through :func:`mapgen.llms._http.to_api_error`, so the retry policy and the error columns see
    one classification.

    Example:
        >>> error = APIError.from_status(401, b'{"error": {"message": "bad key sk-abcdef123"}}', None, ())
        >>> error.kind, error.fatal, str(error)
        ('http_401', True, 'HTTP 401: bad key ***')
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
        kind: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind or (http_kind(status) if status is not None else CONNECTION)
        self.fatal = fatal
        self.retries = 0
        """How many times the request was sent again before this error ended it (:meth:`with_context`)."""

    @classmethod
    def from_status(
        cls, status: int, body: bytes | str, headers: Mapping[str, str] | None, secrets: Iterable[str | None]
    ) -> APIError:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        try:
            detail = json.loads(text)
            if isinstance(detail, dict):
                detail = detail.get("error", detail)
                if isinstance(detail, dict):
                    detail = detail.get("message", detail)
            text = detail if isinstance(detail, str) else json.dumps(detail)
        except ValueError:
            pass
        message = scrub(f"HTTP {status}: {text[:500]}", secrets)
        return cls(
            message,
            status=status,
            retryable=status in RETRYABLE_STATUS,
            retry_after=parse_retry_after(headers),
            fatal=status in FATAL_STATUS,
        )

    def with_context(self, attempts: int, max_wait: float) -> APIError:
        """This error as it ends a request: how many attempts it took, and why it was not retried when
        the server asked for a wait over ``max_wait`` seconds."""
        notes = []
        if self.retryable and self.retry_after is not None and self.retry_after > max_wait:
            notes.append(f"Retry-After {self.retry_after:g}s is over max_retry_wait={max_wait:g}s")
        if attempts > 1:
            notes.append(f"after {attempts} attempts")
        if not notes:
            return self
        ended = APIError(
            f"{self} ({'; '.join(notes)})",
            status=self.status,
            retryable=False,
            kind=self.kind,
            fatal=self.fatal,
        )
        ended.retries = attempts - 1
        return ended

    @classmethod
    def timeout(cls, seconds: float) -> APIError:
        return cls(f"timed out after {seconds}s", retryable=True, kind=TIMEOUT)

    @classmethod
    def connection(cls, error: BaseException, secrets: Iterable[str | None]) -> APIError:
        return cls(scrub(f"{type(error).__name__}: {error}", secrets), retryable=True, kind=CONNECTION)

    @classmethod
    def invalid_answer(cls, reason: str) -> APIError:
        """A 200 whose body is not an answer of the shape asked for: retried like a server error."""
        return cls(reason, retryable=True, kind=INVALID_ANSWER)


class InputError(MapgenError, ValueError):
    """A row whose input the task cannot prompt from (a conversation that does not end with a user turn,
    say): raised by :meth:`mapgen.Task.prompt`, it gives that row ``None`` and an ``input`` error naming
    the dataset column, and the run goes on. ``input`` is the task input's name."""

    def __init__(self, input: str, reason: str) -> None:
        super().__init__(reason)
        self.input = input


class ImageError(MapgenError, ValueError):
    """An image column's value that cannot be read as an image; the row fails with an ``input`` error."""

    kind = INPUT


class ParseError(MapgenError, ValueError):
    """An answer that does not have the shape the task asked for: the row gets ``None`` and the reason
    (kind ``parse``). Raise it (or any ``ValueError``) from a task's ``parse``."""


class InvalidOutput(ParseError):
    """An answer that does not validate against the task's answer model (kind ``invalid_output``): the
    map function asks again, up to its ``max_reasks``, before it writes ``None`` and the reason. The
    message names the field that failed (``rating: Input should be 1, 2, 3, 4 or 5``)."""

    kind = INVALID_OUTPUT


class AmbiguousScore(ParseError):
    """A score that cannot be put on the task's scale without guessing: a range or an either/or
    (``3-4``, ``7 or 8``), or a score on another scale (``4/5`` or ``80%`` where the scale is 1 to 10).
    Parsers of several texts let it fail the whole answer: the judge did not follow the scale."""


class MissingColumnError(MapgenError, ValueError):
    """A task needs a column the dataset does not have."""


class NotStrict(MapgenError, ValueError):
    """A schema that OpenAI's strict mode cannot express as it is (a free-form mapping)."""


class DamagedAnswer(MapgenError, ValueError):
    """A stored value that is not an answer: the store is damaged."""


class DeviceError(MapgenError, RuntimeError):
    """GPU placement that cannot work; the message says what to change."""


class ArgillaUnreachable(MapgenError, ConnectionError):
    """The Argilla server cannot be reached: the message names its URL (credentials masked) and what to
    check."""


class CacheWarning(MapgenWarning):
    """A mapgen callable that ``datasets`` cannot fingerprint: its maps will never be reused."""


class StoreWarning(MapgenWarning):
    """The response store failed while answers were being stored: the run goes on without storing them."""


class SchemaWarning(MapgenWarning):
    """A server did not constrain answers to their schema: it refused every ``response_format`` style (the
    answers go without one), or the schema has no strict form (it goes with ``strict: false``, which
    OpenAI's API reads as a guide only). Once per process and config; each answer's metadata says how its
    schema went (``schema_style``), and validation still checks every answer."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a map, with what was kept; Python prints only its message, not a traceback.

    Not a :class:`MapgenError`: that would make it an ``Exception``, caught by ``except Exception``.

    Example:
        >>> issubclass(Interrupted, KeyboardInterrupt), issubclass(Interrupted, Exception)
        (True, False)
    """
