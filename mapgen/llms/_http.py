"""The HTTP layer of the API backends: a lean aiohttp JSON client, and errors with their retry hints.

The OpenAI SDK's typed path costs about ten times the CPU of a bare aiohttp request (see
``docs/api_backends.md``), which matters when hundreds of requests a second share two cores with the
server; for OpenAI-compatible servers the backends post JSON through :class:`JSONClient` instead. Every
error message that leaves this module goes through :func:`scrub` first.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

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
    """A request that failed: its HTTP status (``None`` for connection errors and timeouts), whether a
    retry may help, and the server's ``Retry-After`` in seconds, if it sent one. The message is scrubbed."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after

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
        )


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

    def session(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self.headers,
                json_serialize=json.dumps,
            )
        return self._session

    async def post(self, body: Mapping[str, Any], secrets: Iterable[str | None] = ()) -> dict[str, Any]:
        """The JSON answer, or :class:`APIError`."""
        import aiohttp

        try:
            async with self.session().post(self.url, data=json.dumps(body)) as response:
                content = await response.read()
                if response.status >= 400:
                    raise APIError.from_status(response.status, content, response.headers, secrets)
        except asyncio.TimeoutError:
            raise APIError(f"timed out after {self.timeout}s", retryable=True) from None
        except aiohttp.ClientError as error:
            message = scrub(f"{type(error).__name__}: {error}", secrets)
            raise APIError(message, retryable=True) from None
        try:
            return json.loads(content)
        except ValueError:
            raise APIError(
                scrub(f"invalid JSON answer: {content[:200]!r}", secrets), retryable=True
            ) from None

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
