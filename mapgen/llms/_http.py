"""The HTTP layer of the API backends: a lean aiohttp JSON client, and errors with their retry hints.

The OpenAI SDK's typed path costs about ten times the CPU of a bare aiohttp request (see
``docs/api_backends.md``), which matters when hundreds of requests a second share two cores with the
server; for OpenAI-compatible servers the backends post JSON through :class:`JSONClient` instead. Every
error message that leaves this module goes through :func:`scrub` first, and every transport's exceptions
(aiohttp's, the ``openai`` and ``anthropic`` SDKs', ``huggingface_hub``'s and ``httpx``'s) become an
:class:`APIError` in one place, :func:`to_api_error`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mapgen.errors import CONNECTION, ENGINE, INVALID_ANSWER, TIMEOUT, http_kind

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


class APIError(Exception):
    """A request that failed: its kind (:mod:`mapgen.errors`), HTTP status (``None`` for connection errors
    and timeouts), whether a retry may help, whether it will fail every request alike (``fatal``), and the
    server's ``Retry-After`` in seconds, if it sent one. The message is scrubbed.

    Every transport's errors (aiohttp, the ``openai`` and ``anthropic`` SDKs, ``huggingface_hub``) become
    these through :func:`to_api_error`, so the retry policy and the error columns see one classification.

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
        return APIError(
            f"{self} ({'; '.join(notes)})",
            status=self.status,
            retryable=False,
            kind=self.kind,
            fatal=self.fatal,
        )

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


_TIMEOUT_TYPES = frozenset({"TimeoutError", "APITimeoutError", "InferenceTimeoutError", "TimeoutException"})
"""Exception class names (anywhere in the class's MRO) that mean no answer in time: asyncio's and
aiohttp's, the ``openai`` and ``anthropic`` SDKs', ``huggingface_hub``'s, ``httpx``'s."""
_CONNECTION_TYPES = frozenset({"ClientError", "APIConnectionError", "TransportError", "ConnectionError"})
"""...that mean the request did not get through (aiohttp, the SDKs, ``httpx``, the OS)."""


def to_api_error(error: BaseException, secrets: Iterable[str | None] = (), timeout: float = 0.0) -> APIError:
    """The :class:`APIError` for an exception raised by any transport: the one place where the official
    SDKs' and HTTP libraries' error types meet mapgen's classification.

    - an error carrying an HTTP ``response`` (``openai.APIStatusError``, ``anthropic.APIStatusError``,
      ``huggingface_hub``'s ``HfHubHTTPError``): :meth:`APIError.from_status` on its status, body and
      headers (so ``retry-after`` and the error message are read alike);
    - a timeout of any library: ``timeout``; a connection error: ``connection`` (both retried);
    - a body that is not JSON (``json.JSONDecodeError``): ``invalid_answer`` (retried);
    - anything else: ``engine``, not retried (a bug or a library's refusal of its arguments).

    The libraries are recognised by their class names, so none is imported here. Messages are scrubbed.

    Example:
        >>> import asyncio, json
        >>> to_api_error(asyncio.TimeoutError(), timeout=5).kind
        'timeout'
        >>> error = to_api_error(json.JSONDecodeError("Expecting value", "<html>", 0))
        >>> error.kind, error.retryable
        ('invalid_answer', True)
        >>> to_api_error(KeyError("sk-secret-123"), ["sk-secret-123"]).args[0]
        "KeyError: '***'"
    """
    if isinstance(error, APIError):
        return error
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return APIError.from_status(
            status, getattr(response, "content", b""), getattr(response, "headers", None), secrets
        )
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _TIMEOUT_TYPES:
        return APIError.timeout(timeout)
    if names & _CONNECTION_TYPES:
        return APIError.connection(getattr(error, "__cause__", None) or error, secrets)
    if isinstance(error, json.JSONDecodeError):  # a 200 whose body is not JSON (cut short, say)
        return APIError.invalid_answer(scrub(f"invalid JSON answer: {error}", secrets))
    return APIError(scrub(f"{type(error).__name__}: {error}", secrets), retryable=False, kind=ENGINE)


class JSONClient:
    """POSTs JSON to one URL over one aiohttp session; build it on the loop that will use it.

    Example:
        >>> client = JSONClient("http://127.0.0.1:1/v1/chat/completions", timeout=1, max_connections=4)
    """

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float, max_connections: int
    ) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: Any = None
        self._client_error: type[BaseException] = Exception  # aiohttp.ClientError, once imported

    def session(self) -> Any:
        session = self._session
        if session is None or session.closed:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self.headers,
                json_serialize=json.dumps,
            )
            self._client_error = aiohttp.ClientError
        return session

    async def post(self, body: Mapping[str, Any], secrets: Iterable[str | None] = ()) -> dict[str, Any]:
        """The JSON answer, or :class:`APIError`."""
        session = self.session()
        try:
            # Bytes: aiohttp sends them as they are (a str would be encoded again, with a charset lookup).
            async with session.post(self.url, data=json.dumps(body).encode()) as response:
                content = await response.read()
                if response.status >= 400:
                    raise APIError.from_status(response.status, content, response.headers, secrets)
        except (asyncio.TimeoutError, self._client_error) as error:
            raise to_api_error(error, secrets, self.timeout) from None
        try:
            return json.loads(content)
        except ValueError:
            raise APIError.invalid_answer(scrub(f"invalid JSON answer: {content[:200]!r}", secrets)) from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def poster(self, secrets: Iterable[str | None] = ()) -> Any:
        """:meth:`post` as a one-argument coroutine function, with :meth:`close` as its ``aclose``."""

        async def post(body: Mapping[str, Any]) -> dict[str, Any]:
            return await self.post(body, secrets)

        return closable(post, self.close)


def closable(post: Any, aclose: Any) -> Any:
    """Attach ``aclose`` (a coroutine function that closes the connections ``post`` uses) to ``post``, so
    that its engine can close them at exit."""
    post.aclose = aclose
    return post
