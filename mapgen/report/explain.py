"""Why did a map not hit the cache? Compare two callables' fingerprint states."""

from __future__ import annotations

from typing import Any

from mapgen.core.config import fingerprint_state
from mapgen.core.fingerprint import fingerprint


def cache_differences(fn_a: Any, fn_b: Any) -> list[str]:
    """The configuration paths where two mapgen callables differ, as ``path: a -> b`` lines.

    Example:
        >>> import mapgen
        >>> a = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.7))
        >>> b = mapgen.generate(mapgen.LlamaCppLLM(temperature=0.9, n_threads=4))
        >>> cache_differences(a, b)
        ['llm.temperature: 0.7 -> 0.9']
    """
    return list(_walk(fingerprint_state(fn_a), fingerprint_state(fn_b), ""))


def explain_cache(fn_a: Any, fn_b: Any) -> str:
    """A sentence saying whether ``datasets`` would reuse ``fn_a``'s cache for ``fn_b``, and if not, why.

    Only what changes output counts (model, sampling parameters, templates, parsers, the output format
    version); knobs such as API keys, concurrency, timeouts or threads never cause a miss.

    Example:
        >>> import mapgen
        >>> task = mapgen.TextGenerationTask()
        >>> print(explain_cache(mapgen.generate(mapgen.LlamaCppLLM(), task),
        ...                     mapgen.generate(mapgen.LlamaCppLLM(), task, num_generations=2)))
        Different fingerprints, because:
          num_generations: 1 -> 2
    """
    differences = cache_differences(fn_a, fn_b)
    same_hash = fingerprint(fn_a) == fingerprint(fn_b)
    if same_hash:
        return "Same fingerprint: datasets reuses the cached result."
    if not differences:
        return (
            "Different fingerprints, with equal configurations: a value in them hashes differently "
            "(a function defined elsewhere, or a global it reads)."
        )
    return "Different fingerprints, because:\n" + "\n".join(f"  {line}" for line in differences)


def _walk(a: Any, b: Any, path: str):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            child = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                yield f"{child}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}"
            else:
                yield from _walk(a[key], b[key], child)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _walk(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} -> {b!r}"
