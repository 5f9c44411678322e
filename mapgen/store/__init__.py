"""The response store: every paid answer, kept as it arrives, so nothing is paid for twice.

``datasets`` writes a map's cache only when a whole shard finishes (and never for in-memory datasets),
so a crash at 99% would lose every answer. Here each successful answer is committed the moment it
arrives, keyed by everything that determines it (:func:`request_key`: the backend's fingerprint: its
store name, never where its code lives, model, sampling parameters, prompt format; the prompt's messages;
the generation index; the answer schema). A re-run looks answers up before sending anything. Failed
answers are never stored: a re-run retries them.

Which store, by URL (``store=`` on :func:`mapgen.generate`, :func:`mapgen.label`, :func:`mapgen.pipeline`,
else ``$MAPGEN_STORE``, else the default):

- ``sqlite:///<path>`` (or a plain path): one SQLite file, for the processes of one machine
  (:mod:`mapgen.store.sqlite`). The default is ``responses.sqlite3`` in ``$MAPGEN_CACHE_DIR`` (default
  ``~/.cache/mapgen``).
- ``postgresql://user:password@host:port/database``: one PostgreSQL database for every node, process and
  run of a cluster (:mod:`mapgen.store.postgres`; ``pip install 'mapgen[postgres]'``).

Both keep the same guarantees: committed as it arrives (in batches, on a writer thread: see
:mod:`mapgen.store.base`), never a failed answer, the same keys, and *claims*: a run claims the keys it is
about to send (:meth:`~ResponseStore.claim`) and awaits those another live owner has claimed
(:meth:`~ResponseStore.wait_for`) instead of sending them again. A URL's password (or a token as its user
name, or a ``password=`` parameter) never appears in messages or reprs (:func:`mask_url`, the parser of
:mod:`mapgen.core.urls` that also refuses credentials in a backend's URLs), and the store is a knob: it
changes no fingerprint.

Example:
    >>> import tempfile
    >>> from mapgen.core.request import Completion
    >>> store = open_store(f"sqlite:///{tempfile.mkdtemp()}/responses.sqlite3")
    >>> store.put("k1", Completion(text="Paris", finish_reason="stop"))
    >>> store.get_many(["k1", "k2"])["k1"].text
    'Paris'
    >>> mask_url("postgresql://app:s3cret@db.internal:5432/mapgen")
    'postgresql://app:***@db.internal:5432/mapgen'
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from mapgen.core.paths import cache_dir
from mapgen.core.urls import has_credentials
from mapgen.store.base import BatchJob, ResponseStore, StoreURL, StoreWarning, mask_url
from mapgen.store.keys import request_key, store_identity
from mapgen.store.sqlite import SQLiteStore

__all__ = [
    "STORE_FILE",
    "BatchJob",
    "ResponseStore",
    "SQLiteStore",
    "StoreURL",
    "StoreWarning",
    "cache_dir",
    "default_store",
    "mask_url",
    "open_store",
    "request_key",
    "store_identity",
    "store_url",
]

STORE_FILE = "responses.sqlite3"
STORE_ENV = "MAPGEN_STORE"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_LIBPQ_KEYWORDS = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|sslpassword|service)\s*=", re.I
)
"""A libpq ``keyword = value`` connection string, which would otherwise be taken for a file name."""


def store_url(url: str | os.PathLike[str] | None = None) -> str:
    """The store a map uses: ``url``, else ``$MAPGEN_STORE``, else the SQLite file in :func:`cache_dir`;
    checked, so a misspelt URL fails before anything is sent.

    Raises:
        ValueError: ``url`` is of no kind mapgen stores in (the message masks its password).

    Example:
        >>> store_url("sqlite:////tmp/answers.sqlite3")
        'sqlite:////tmp/answers.sqlite3'
    """
    url = os.fspath(url) if url is not None else os.environ.get(STORE_ENV) or ""
    url = url.strip()
    if not url:
        return f"sqlite:///{(cache_dir() / STORE_FILE).absolute()}"
    if url.startswith(_POSTGRES_SCHEMES) or url.startswith("sqlite:///"):
        return url
    if _LIBPQ_KEYWORDS.search(url):  # shown without its value: `password = x` hides from any masking
        raise ValueError(
            f"store= (or ${STORE_ENV}) looks like a libpq connection string (keyword = value); mapgen opens "
            "PostgreSQL stores by URL: pass postgresql://user:password@host:port/database."
        )
    if "://" in url or has_credentials(url):  # a URL of another kind, or //user:password@host
        raise ValueError(
            f"store={mask_url(url)!r} (or ${STORE_ENV}) is not a store mapgen knows: pass "
            "sqlite:///<path>, a file path, or postgresql://user:password@host:port/database."
        )
    return f"sqlite:///{Path(url).absolute()}"


_STORES: dict[str, ResponseStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(url: str | os.PathLike[str] | None = None) -> ResponseStore:
    """This process's store at ``url`` (see :func:`store_url`), opened once per process and URL; it
    connects on first use.

    Raises:
        ValueError: an unknown kind of URL.
        ImportError: a PostgreSQL URL without psycopg installed (``pip install 'mapgen[postgres]'``).
    """
    url = store_url(url)
    with _STORES_LOCK:
        if url not in _STORES:
            if url.startswith(_POSTGRES_SCHEMES):
                try:
                    from mapgen.store.postgres import PostgresStore
                except ImportError as error:
                    raise ImportError(
                        f"The store {mask_url(url)} is PostgreSQL, which needs psycopg 3: "
                        "pip install 'mapgen[postgres]'."
                    ) from error
                _STORES[url] = PostgresStore(url)
            else:
                _STORES[url] = SQLiteStore(url.removeprefix("sqlite:///"))
        return _STORES[url]


def default_store() -> ResponseStore:
    """The store maps use when given none: ``$MAPGEN_STORE``, else the SQLite file in :func:`cache_dir`
    (both re-read on each call, so tests can move it)."""
    return open_store(None)
