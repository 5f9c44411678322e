"""How ``datasets`` fingerprints mapgen callables.

``datasets`` caches ``Dataset.map`` under a hash of the pickled function. Pickling a map function as is
would hash its knobs and secrets too (API keys, concurrency), and pickling a live engine would hash
memory addresses (a random fingerprint: the cache silently never hits). So for hashing only, a mapgen
callable is pickled as its class plus its :meth:`fingerprint` state: plain data, the same in every
process and every run. Pickling for ``num_proc`` workers is untouched and carries the whole config.
"""

from __future__ import annotations

import warnings
from typing import Any

from datasets.fingerprint import Hasher


def register_fingerprint_reducer(cls: type) -> None:
    """Make ``datasets``' hashing pickler save instances of ``cls`` as ``(cls, obj.fingerprint())``."""
    try:
        from datasets.utils._dill import Pickler
    except ImportError:  # pragma: no cover - a datasets release that moved its pickler
        warnings.warn(
            "This datasets release has no datasets.utils._dill.Pickler: mapgen callables will be "
            "hashed with their full state, so API keys and concurrency changes may miss the cache.",
            stacklevel=2,
        )
        return

    def save_by_fingerprint(pickler: Any, obj: Any) -> None:
        pickler.save_reduce(type(obj), (obj.fingerprint(),), obj=obj)

    Pickler.dispatch[cls] = save_by_fingerprint


def fingerprint(fn: Any) -> str:
    """The hash ``datasets`` gives a callable when it fingerprints a ``map`` over it.

    Example:
        >>> import mapgen
        >>> a = mapgen.generate(mapgen.LlamaCppLLM(), mapgen.TextGenerationTask())
        >>> b = mapgen.generate(mapgen.LlamaCppLLM(n_threads=2), mapgen.TextGenerationTask())
        >>> fingerprint(a) == fingerprint(b)  # threads change speed, not output
        True
    """
    return Hasher.hash(fn)
