"""The HTTP layer of the API backends: a lean aiohttp JSON client, and every transport's errors as one
:class:`~mapgen.errors.APIError` (defined with mapgen's other exceptions, with its retry hints).

The OpenAI SDK's typed path costs about ten times the CPU of a bare aiohttp request (see
``docs/api_backends.md``), which matters when hundreds of requests a second share two cores with the
server; for OpenAI-compatible servers the backends post JSON through :class:`JSONClient` instead. Every
error message that leaves this module goes through :func:`scrub` first, and every transport's exceptions
(aiohttp's, the ``openai`` and ``anthropic`` SDKs', ``huggingface_hub``'s and ``httpx``'s) become an
:class:`APIError` in one place, :func:`to_api_error`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from mapgen.errors import ENGINE, APIError, scrub

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
        self._proxy: tuple[Any, Any] = (None, None)  # (proxy URL, its credentials), from the environment
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
            self._proxy = env_proxy(self.url)
            self._client_error = aiohttp.ClientError
        return session

    async def post(self, body: Mapping[str, Any], secrets: Iterable[str | None] = ()) -> dict[str, Any]:
        """The JSON answer, or :class:`APIError`."""
        session = self.session()
        try:
            # Bytes: aiohttp sends them as they are (a str would be encoded again, with a charset lookup).
            proxy, proxy_auth = self._proxy
            async with session.post(
                self.url, data=json.dumps(body).encode(), proxy=proxy, proxy_auth=proxy_auth
            ) as response:
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


def env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy that ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts its
    host, with the proxy's credentials (from its URL or ``~/.netrc``): ``(None, None)`` for none. Read when
    a client is built, as the SDKs read them (rather than aiohttp's ``trust_env``, which would also read
    ``~/.netrc`` on every request and clash with the ``Authorization`` header)."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def closable(post: Any, aclose: Any) -> Any:
    """Attach ``aclose`` (a coroutine function that closes the connections ``post`` uses) to ``post``, so
    that its engine can close them at exit."""
    post.aclose = aclose
    return post
