"""Secrets in URLs: the one parser that finds them, to refuse them in a config or mask them where a URL is
shown.

A URL carries a secret in its *user info* (``scheme://user:password@host``, or ``scheme://token@host``: a
user name alone is taken for a token) and in *query or fragment parameters* named like one (``?api_key=``,
``?key=``, ``?token=``, ``#access_token=``, ``?password=``, ``&sig=``...). Every spelling a URL parser takes
counts: any scheme and its case (``HTTP://``, ``ws://``, ``postgresql://``), scheme-relative ``//user@host``,
ports, paths and queries after the host, IPv6 hosts (``[::1]``), an ``@`` written ``%40``, percent-encoded
parameter names, whitespace around the URL. A libpq keyword string (``host=db password=x``) has its
``password=`` found too.

- :func:`check_no_credentials` refuses them where a URL enters a config (a backend's ``base_url``, a model
  given as a URL): the key belongs in the config's key field, kept out of reprs, fingerprints, provenance
  records, dataset cards and the model column. The message names the parameter and shows the URL masked.
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

import re
from typing import NamedTuple
from urllib.parse import unquote

MASK = "***"

_URL_START = re.compile(r"(?:(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*:|(?<![^\s\"'(<\[=,]))//")
"""Where a URL's authority begins: after ``scheme://`` (any scheme, any case) or a scheme-relative ``//``
at the start of the text or after a space, quote or bracket (not the ``//`` inside a path)."""

_WHOLE_URL = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//")
"""A text that is one URL (whitespace around it aside), read as ``urllib.parse.urlsplit`` reads it."""

_KEYWORDS = re.compile(r"\s*[A-Za-z_][\w.\-]*=\S*(?:\s+[A-Za-z_][\w.\-]*=\S*)*\s*")
"""A libpq keyword string: ``name=value`` pairs separated by whitespace."""

_PARAMETER = re.compile(r"(?:(?<=[?&;#])|(?<=^)|(?<=\s))([^=&;#?/\s]+)=([^&;#\s]*)")
"""A ``name=value`` parameter after ``?``, ``&``, ``;`` or ``#`` (or whitespace, in a keyword string)."""

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "key", "apikey", "sig",
        "signature", "auth", "authorization", "credential", "credentials", "jwt",
    }
)  # fmt: skip
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "signature")


class Secret(NamedTuple):
    """One secret in a text: where it is (``text[start:end]``) and what it is."""

    start: int
    end: int
    what: str


def is_secret_name(name: str) -> bool:
    """Whether a query parameter (or libpq keyword) named ``name`` holds a secret: one of its words
    (split at ``-``, ``_``, ``.``) is a key, token, password, secret or signature.

    Example:
        >>> [n for n in ("api_key", "key", "X-Amz-Signature", "access_token", "sslpassword", "tokenize")
        ...  if is_secret_name(n)]
        ['api_key', 'key', 'X-Amz-Signature', 'access_token', 'sslpassword']
    """
    words = [w for w in re.split(r"[-_.\s]+", unquote(name).lower()) if w]
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) for w in words)


def url_secrets(text: str) -> list[Secret]:
    """The secrets in ``text``: in the user info and the secret-named parameters of every URL in it (the
    whole text, when it is one URL; else each URL found in it, up to a space or quote), or in a libpq
    keyword string's secret-named parameters.

    Example:
        >>> url = "HTTP://user:pw@host:8080/v1?token=t0k"
        >>> [(url[s.start:s.end], s.what) for s in url_secrets(url)]
        [('pw', 'a password in user:password@'), ('t0k', 'a token=... parameter')]
    """
    if not isinstance(text, str):
        return []
    whole = _WHOLE_URL.match(text)
    if not whole and _KEYWORDS.fullmatch(text):
        return _parameters(text, 0, len(text))
    # The text as one URL, as urlsplit reads it (its authority runs to the first / ? #, spaces and all),
    # and every URL found in it, each up to a space or quote.
    authorities = [(whole.end(), len(text.rstrip()))] if whole else []
    authorities += [
        (m.end(), _token_end(text, m.end())) for m in _URL_START.finditer(text, whole.end() if whole else 0)
    ]
    found: dict[tuple[int, int], Secret] = {}
    for start, end in authorities:
        authority_end = start
        while authority_end < end and text[authority_end] not in "/?#":
            authority_end += 1
        for secret in _user_info(text, start, authority_end) + _parameters(text, authority_end, end):
            found.setdefault((secret.start, secret.end), secret)
    kept: list[Secret] = []
    for secret in sorted(found.values()):
        if not kept or secret.start >= kept[-1].end:  # overlaps none kept
            kept.append(secret)
    return kept


def _token_end(text: str, position: int) -> int:
    while position < len(text) and not text[position].isspace() and text[position] not in "\"'<>`":
        position += 1
    return position


def _user_info(text: str, start: int, end: int) -> list[Secret]:
    authority = text[start:end]
    at = authority.rfind("@")
    if at < 0:  # an @ written %40 still ends the user info for a client that decodes it
        at = authority.lower().rfind("%40")
    if at < 0:
        return []
    user_info = authority[:at]
    user, colon, password = user_info.partition(":")
    if password:
        begin = start + len(user) + len(colon)
        return [Secret(begin, start + at, "a password in user:password@")]
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
