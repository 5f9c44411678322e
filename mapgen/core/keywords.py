"""A wrong keyword names the right one: "did you mean ``max_new_tokens``?" for the names users bring from
the SDKs (``max_tokens``, ``n``, ``model=`` for a GGUF path) and for misspellings.

Config classes get it from :class:`CheckedKeywords` (a base whose ``__new__`` sees the keywords before the
dataclass ``__init__`` does; signatures, equality and pickling are untouched), map functions from
:func:`checked_keywords`. Both raise ``TypeError``, as Python does for an unknown keyword.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Backend(CheckedKeywords):
    ...     max_new_tokens: int = 256
    >>> Backend(max_tokens=16)
    Traceback (most recent call last):
    ...
    TypeError: Backend() got an unexpected keyword argument 'max_tokens'; did you mean 'max_new_tokens'?
"""

from __future__ import annotations

import difflib
import functools
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

SDK_NAMES: Mapping[str, str] = {
    "max_tokens": "max_new_tokens",
    "max_completion_tokens": "max_new_tokens",
    "max_output_tokens": "max_new_tokens",
    "n": "num_generations",
    "num_return_sequences": "num_generations",
    "model": "model_path",
    "model_name": "model",
    "api_base": "base_url",
    "openai_api_base": "base_url",
    "openai_api_key": "api_key",
    "stop_sequences": "stop",
    "repeat_penalty": "repetition_penalty",
    "request_timeout": "timeout",
    "headers": "default_headers",
    "extra_headers": "default_headers",
}
"""Names from the OpenAI and Anthropic SDKs, ``transformers`` and LangChain, by mapgen's name for each."""

_SAMPLING = "sampling parameters belong to the LLM config: mapgen.OpenAILLM(..., {}=...)"

ELSEWHERE: Mapping[str, str] = {
    "num_generations": "answers per row are asked by mapgen.generate(llm, task, num_generations=...)",
    **{name: _SAMPLING.format(name) for name in ("max_new_tokens", "temperature", "top_p", "seed")},
}
"""Names that are right, but for another object: where they go instead."""


def suggestion(name: str, parameters: Iterable[str]) -> str:
    """What to say about the unknown keyword ``name`` given the ``parameters`` there are.

    Example:
        >>> suggestion("max_tokens", ["temperature", "max_new_tokens"])
        "did you mean 'max_new_tokens'?"
        >>> suggestion("temprature", ["temperature", "max_new_tokens"])
        "did you mean 'temperature'?"
        >>> suggestion("n", ["temperature"])
        'answers per row are asked by mapgen.generate(llm, task, num_generations=...)'
    """
    names = list(parameters)
    target = SDK_NAMES.get(name)
    if target in names:
        return f"did you mean {target!r}?"
    if name not in names and (target or name) in ELSEWHERE:
        return ELSEWHERE[target or name]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(match) for match in close) + "?"
    return "it takes " + ", ".join(repr(n) for n in sorted(names)) + "."


def check_keywords(where: str, keywords: Iterable[str], parameters: Iterable[str] | None) -> None:
    """Raise ``TypeError`` with a :func:`suggestion` for the first of ``keywords`` not in ``parameters``
    (``None``: any keyword goes)."""
    if parameters is None:
        return
    allowed = set(parameters)
    for name in keywords:
        if name not in allowed:
            raise TypeError(
                f"{where}() got an unexpected keyword argument {name!r}; {suggestion(name, sorted(allowed))}"
            )


def keyword_parameters(function: Callable[..., Any]) -> frozenset[str] | None:
    """The names ``function`` takes by keyword; ``None`` when it takes any (``**kwargs``). An ``__init__``'s
    ``self`` is none: nobody passes it.

    Example:
        >>> class Backend:
        ...     def __init__(self, model, *, seed=0): ...
        >>> sorted(keyword_parameters(Backend.__init__))
        ['model', 'seed']
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    names = set()
    for position, parameter in enumerate(signature.parameters.values()):
        if position == 0 and parameter.name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            names.add(parameter.name)
    return frozenset(names)


_INIT_PARAMETERS: weakref.WeakKeyDictionary[type, frozenset[str] | None] = weakref.WeakKeyDictionary()


class CheckedKeywords:
    """Base of the config classes: an unknown keyword raises ``TypeError`` naming the close match.

    It checks in ``__new__``, which gets the call's arguments before the dataclass ``__init__`` does, so
    that the generated ``__init__`` (and ``inspect.signature``) stays as it is; unpickling and copying call
    ``__new__`` with no keywords."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            try:
                parameters = _INIT_PARAMETERS[cls]
            except KeyError:
                parameters = _INIT_PARAMETERS[cls] = keyword_parameters(cls.__init__)
            check_keywords(cls.__qualname__, kwargs, parameters)
        return super().__new__(cls)


F = TypeVar("F", bound=Callable[..., Any])


def checked_keywords(function: F) -> F:
    """Decorate a function so that an unknown keyword raises ``TypeError`` naming the close match; its
    signature is kept (``functools.wraps``).

    Example:
        >>> @checked_keywords
        ... def generate(llm, num_generations=1): ...
        >>> generate(None, n=4)
        Traceback (most recent call last):
        ...
        TypeError: generate() got an unexpected keyword argument 'n'; did you mean 'num_generations'?
    """
    parameters = keyword_parameters(function)
    name = function.__name__

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_keywords(name, kwargs, parameters)
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]
