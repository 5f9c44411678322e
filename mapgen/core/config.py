"""Config objects: frozen dataclasses whose output-affecting fields are declared once.

Every LLM backend and every task is a frozen dataclass. A field is one of three kinds:

- a plain field affects what the model writes (model, sampling parameters, templates): it takes part
  in equality and in the fingerprint that ``datasets`` uses to cache a map;
- a :func:`knob` changes only how fast or where the work runs (concurrency, timeouts, threads,
  devices): it is left out of equality and of the fingerprint;
- a :func:`secret` (API keys, tokens) is a knob that is also hidden from ``repr``;
- an :func:`added` field is a plain field that a later release added: it enters the fingerprint only
  when set to something other than its default.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Backend:
    ...     model: str
    ...     timeout: float = knob(30.0)
    ...     api_key: str | None = secret()
    >>> fingerprint_state(Backend("m", timeout=5, api_key="sk-1")) == fingerprint_state(Backend("m"))
    True
    >>> Backend("m", api_key="sk-1")
    Backend(model='m', timeout=30.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def knob(default: Any = None, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A field that changes speed or placement, never output: not compared, not fingerprinted."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, compare=False, metadata={"knob": True})
    return dataclasses.field(default=default, compare=False, metadata={"knob": True})


def added(default: Any = None, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """An output-affecting field added after a release: compared always, fingerprinted only when it
    differs from its default, so that configs that leave it alone keep their caches and store keys (the
    default is what the config did before the field existed)."""
    metadata = {"added": True}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def secret() -> Any:
    """A credential: not compared, not fingerprinted, never shown by ``repr``."""
    return dataclasses.field(default=None, compare=False, repr=False, metadata={"knob": True, "secret": True})


def fingerprint_state(obj: Any) -> Any:
    """The plain-data state that identifies what ``obj`` would produce.

    Dataclasses contribute their type name and their compared fields (see :func:`knob`); objects with a
    ``fingerprint()`` method contribute what it returns; containers are walked; everything else is kept
    as is (``datasets`` hashes functions by their code).
    """
    if hasattr(obj, "fingerprint") and not isinstance(obj, type):
        return obj.fingerprint()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclass_fingerprint(obj)
    if isinstance(obj, Mapping):
        return {key: fingerprint_state(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [fingerprint_state(value) for value in obj]
    if isinstance(obj, (set, frozenset)):
        # Set order changes between processes (string hashing is salted): sort for a stable hash.
        return sorted((fingerprint_state(value) for value in obj), key=repr)
    return obj


def dataclass_fingerprint(obj: Any) -> dict[str, Any]:
    """Default ``fingerprint()`` body for a config dataclass: type name plus compared fields."""
    state: dict[str, Any] = {"type": qualified_name(type(obj))}
    for field in dataclasses.fields(obj):
        if field.compare:
            value = getattr(obj, field.name)
            if field.metadata.get("added") and _is_default(field, value):
                continue
            state[field.name] = fingerprint_state(value)
    return state


def _is_default(field: dataclasses.Field, value: Any) -> bool:
    if field.default is not dataclasses.MISSING:
        return value == field.default
    if field.default_factory is not dataclasses.MISSING:
        return value == field.default_factory()
    return False


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
