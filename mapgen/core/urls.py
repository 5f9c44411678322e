"""Secrets in URLs: the one parser that finds them, to refuse them in a config or mask them where a URL is
shown.

A URL carries a secret in its *user info* (``scheme://user:password@host``, or ``scheme://token@host``: a
user name alone is taken for a token) and in *query or fragment parameters* named like one (``?api_key=``,
``?key=``, ``?token=``, ``#access_token=``, ``?password=``, ``&sig=``, ``?bearer=``, ``?session=``,
``?key[]=``...). Every spelling some URL parser takes counts: any scheme and its case (``HTTP://``,
``ws://``, ``postgresql://``), any number of slashes after it, or none (``http:/user:pw@host``,
``http:user:pw@host``, ``http:///user:pw@host``), backslashes for slashes (``http:\\\\user:pw@host``),
compatibility forms read as NFKC reads them (a full-width ``＠``), scheme-relative ``//user@host``, a
scheme-less ``user:pw@host`` (``user:`` reads as a scheme), ports, paths and queries after the host, IPv6
hosts (``[::1]``), an ``@`` written ``%40``, percent-encoded parameter names, whitespace around the URL. A
libpq keyword string (``host=db password=x``) has its ``password=`` found too.

- :func:`check_no_credentials` refuses them where a URL enters a config (a backend's ``base_url``, a model
  given as a URL): the key belongs in the config's key field, kept out of reprs, fingerprints, provenance
  records, dataset cards and the model column. The message names the parameter and shows the URL masked;
  so does every other message that shows such a URL (``base_url must start with http://...``).
- :func:`mask_url` masks them where a URL that may hold them is shown (a response store's URL, which
  legitimately holds a database password).

Both read :func:`url_secrets`, so what one refuses is exactly what the other masks.

Example:
    >>> mask_url("postgresql://app:s3cret@db.internal:5432/mapgen")
    'postgresql://app:***@db.internal:5432/mapgen'
    >>> mask_url("https://hf_abc123@example.com/v1?x=1&api_key=sk-1")
    'https://***@example.com/v1?x=1&api_key=***'
    >>> try:
    ...     check_no_credentials("http://user:s3cret@[::1]:8080/v1", "base_url")
    ... except ValueError as error:
    ...     print(error)  # doctest: +ELLIPSIS
    base_url must not hold credentials (a password in user:password@): got 'http://user:***@[::1]:8080/v1'...
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import unquote

MASK = "***"

_SCHEME = r"(?:[A-Za-z][A-Za-z0-9+.\-]+:/*|[A-Za-z]://+)"
"""A scheme and the slashes after it, any number of them (``http:``, ``http:/``, ``http:///``): every
spelling some parser reads an authority after. A one-letter scheme needs ``//``: ``C:\\dir`` is a
Windows path."""

_URL_START = re.compile(rf"(?<![A-Za-z0-9+.\-]){_SCHEME}|(?<![^\s\"'(<\[=,])//+")
"""Where a URL's authority begins: after a scheme and its slashes (any scheme, any case), or after a
scheme-relative ``//`` at the start of the text or after a space, quote or bracket (not the ``//`` inside a
path)."""

_WHOLE_URL = re.compile(rf"\s*(?:{_SCHEME}|//+)")
"""A text that is one URL (whitespace around it aside)."""

_TOKEN_END = re.compile(r"[\s\"'<>`]")
_AUTHORITY_END = re.compile(r"[/?#]")

_KEYWORDS = re.compile(r"\s*[A-Za-z_][\w.\-]*=\S*(?:\s+[A-Za-z_][\w.\-]*=\S*)*\s*")
"""A libpq keyword string: ``name=value`` pairs separated by whitespace."""

_PARAMETER = re.compile(r"(?:(?<=[?&;#])|(?<=^)|(?<=\s))([^=&;#?/\s]+)=([^&;#\s]*)")
"""A ``name=value`` parameter after ``?``, ``&``, ``;`` or ``#`` (or whitespace, in a keyword string)."""

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "key", "apikey", "sig",
        "signature", "auth", "authorization", "credential", "credentials", "jwt", "bearer",
    }
)  # fmt: skip
_SECRET_ENDINGS = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "signature", "sessionid", "sessid",
)  # fmt: skip
_SECRET_NAMES = frozenset({"session", "sas", "code"})
"""Names that are a secret only whole (``?session=``, ``?sas=``, Azure Functions' ``?code=`` key), not as a
word (``session_timeout``, ``code_version``)."""


class Secret(NamedTuple):
    """One secret in a text: where it is (``text[start:end]``) and what it is."""

    start: int
    end: int
    what: str


def is_secret_name(name: str) -> bool:
    """Whether a query parameter (or libpq keyword) named ``name`` holds a secret: one of its words
    (split at ``-``, ``_``, ``.`` and array brackets, ``key[]``) is a key, token, password, secret,
    signature, bearer, session id...

    Example:
        >>> [n for n in ("api_key", "key[]", "X-Amz-Signature", "access_token", "sslpassword", "tokenize",
        ...  "session", "JSESSIONID", "session_timeout")
        ...  if is_secret_name(n)]
        ['api_key', 'key[]', 'X-Amz-Signature', 'access_token', 'sslpassword', 'session', 'JSESSIONID']
    """
    words = [w for w in re.split(r"[-_.\s\[\]]+", unicodedata.normalize("NFKC", unquote(name)).lower()) if w]
    return (
        any(w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) for w in words)
        or "".join(words) in _SECRET_NAMES
        or words == ["session", "id"]
    )


def _normalised(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """``text`` as a lenient URL parser reads it: each character in its NFKC form (a full-width ``＠`` is
    an ``@``), a backslash as a slash; with, for each character of the result, where the character it came
    from starts and ends in ``text`` (None when they are where they were)."""
    if text.isascii():
        return text.replace("\\", "/"), None, None
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(text):
        form = "/" if char == "\\" else char if char.isascii() else unicodedata.normalize("NFKC", char)
        parts.append(form)
        starts += [index] * len(form)
        ends += [index + 1] * len(form)
    return "".join(parts), starts, ends


def url_secrets(text: str) -> list[Secret]:
    """The secrets in ``text``: in the user info and the secret-named parameters of every URL in it (the
    whole text, when it is one URL; else each URL found in it, up to a space or quote), or in a libpq
    keyword string's secret-named parameters.

    The text is read as the most lenient parser reads it: NFKC-normalised (``＠`` is ``@``), backslashes as
    slashes, any number of slashes after a scheme (``http:user:pw@host``, ``http:/user:pw@host``,
    ``http:\\\\user:pw@host``, ``http:///user:pw@host``); the user info is what precedes the last ``@``
    before the next ``/``, ``?`` or ``#``. A text that starts ``user:pw@host`` with no scheme reads as one
    whose scheme is ``user:`` (as ``urlsplit`` reads it), so its ``pw`` is a secret; an ``@`` with no
    scheme before it (``claude-3-5-sonnet@20240620``, ``org/model@main``) is not a user info's.

    Example:
        >>> url = "HTTP://user:pw@host:8080/v1?token=t0k"
        >>> [(url[s.start:s.end], s.what) for s in url_secrets(url)]
        [('pw', 'a password in user:password@'), ('t0k', 'a token=... parameter')]
        >>> [url[s.start:s.end] for url in ("http:/user:pw@h/v1", "http://user:pw\uff20h/v1", "http:///t@h")
        ...  for s in url_secrets(url)]
        ['pw', 'pw', 't']
    """
    if not isinstance(text, str):
        return []
    normal, starts, ends = _normalised(text)
    if starts is None or ends is None:
        return _secrets(normal)
    # The spans found in the normalised text, back in text's own characters.
    return _merged([Secret(starts[s.start], ends[s.end - 1], s.what) for s in _secrets(normal)])


def _secrets(text: str) -> list[Secret]:
    whole = _WHOLE_URL.match(text)
    if not whole and _KEYWORDS.fullmatch(text):
        return _parameters(text, 0, len(text))
    # The text as one URL: after a slash its authority runs to the first / ? # (spaces and all, as urlsplit
    # reads it); and every URL found in it, each up to a space or quote.
    authorities: list[tuple[int, int]] = []
    if whole:
        slashed = text[whole.end() - 1] == "/"
        authorities.append((whole.end(), len(text.rstrip()) if slashed else _token_end(text, whole.end())))
    token_end = -1
    for match in _URL_START.finditer(text, whole.end() if whole else 0):
        if match.end() > token_end:  # one search per token: a long token of x:x:x... stays linear
            token_end = _token_end(text, match.end())
        authorities.append((match.end(), token_end))
    if not authorities:
        return []
    delimiters = [m.start() for m in _AUTHORITY_END.finditer(text)]
    ats = ([m.start() for m in re.finditer("@", text)], [m.start() for m in re.finditer("%40", text)])
    found: list[Secret] = []
    parameters_from: dict[int, int] = {}  # each span's parameters once, from its first authority's end
    for start, end in authorities:
        after = bisect.bisect_left(delimiters, start)
        authority_end = min(delimiters[after], end) if after < len(delimiters) else end
        found += _user_info(text, start, authority_end, ats)
        parameters_from[end] = min(parameters_from.get(end, authority_end), authority_end)
    for end, start in parameters_from.items():
        found += _parameters(text, start, end)
    return _merged(found)


def _merged(secrets: list[Secret]) -> list[Secret]:
    """``secrets`` in order, overlapping ones merged: their union is masked."""
    kept: list[Secret] = []
    for secret in sorted(secrets):
        if kept and secret.start < kept[-1].end:
            if secret.end > kept[-1].end:
                kept[-1] = kept[-1]._replace(end=secret.end)
        else:
            kept.append(secret)
    return kept


def _token_end(text: str, position: int) -> int:
    found = _TOKEN_END.search(text, position)
    return found.start() if found else len(text)


def _last(positions: list[int], start: int, end: int) -> int:
    """The last of the sorted ``positions`` in ``[start, end)``, or -1."""
    last = bisect.bisect_left(positions, end) - 1
    return positions[last] if last >= 0 and positions[last] >= start else -1


def _user_info(text: str, start: int, end: int, ats: tuple[list[int], list[int]]) -> list[Secret]:
    """The secret in the user info of the authority ``text[start:end]``: what precedes its last ``@``, else
    its last ``%40``, which still ends the user info for a client that decodes it (``ats``: where each
    is in ``text``)."""
    at = _last(ats[0], start, end)
    if at < 0:
        at = _last(ats[1], start, end)
    if at < 0:
        return []
    user_info = text[start:at]
    user, colon, password = user_info.partition(":")
    if password:
        begin = start + len(user) + len(colon)
        return [Secret(begin, at, "a password in user:password@")]
    if user:
        return [Secret(start, start + len(user), "a user name in user@, which may be a token")]
    return []


def _parameters(text: str, start: int, end: int) -> list[Secret]:
    return [
        Secret(m.start(2), m.end(2), f"a {unquote(m.group(1))}=... parameter")
        for m in _PARAMETER.finditer(text, start, end)
        if m.group(2) and is_secret_name(m.group(1))
    ]


def mask_url(url: str) -> str:
    """``url`` with each of its secrets (:func:`url_secrets`) replaced by ``***``; the rest as it was.

    Example:
        >>> mask_url("postgresql://host/db?password=x&sslmode=require")
        'postgresql://host/db?password=***&sslmode=require'
        >>> mask_url("  //token123@host:5432/db ")
        '  //***@host:5432/db '
    """
    if not isinstance(url, str):
        return url
    masked = url
    for secret in sorted(url_secrets(url), key=lambda s: s.start, reverse=True):
        masked = masked[: secret.start] + MASK + masked[secret.end :]
    return masked


def has_credentials(url: object) -> bool:
    """Whether ``url`` is a string holding a secret that :func:`mask_url` would mask."""
    return isinstance(url, str) and bool(url_secrets(url))


def check_no_credentials(url: object, parameter: str, hint: str = "") -> None:
    """Raise ``ValueError`` when ``url`` holds a secret: the message names ``parameter``, says what was
    found and shows the URL masked, never the secret. ``hint`` says where the key goes instead.

    Anything that is not a string is left to the caller's own checks.

    Raises:
        ValueError: ``url`` holds credentials.
    """
    if not isinstance(url, str):
        return
    secrets = url_secrets(url)
    if not secrets:
        return
    what = ", ".join(dict.fromkeys(s.what for s in secrets))
    hint = hint or "pass the key or token in the config's own field or its environment variable."
    raise ValueError(f"{parameter} must not hold credentials ({what}): got {mask_url(url).strip()!r}; {hint}")
