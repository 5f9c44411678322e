"""Store keys: what identifies one answer in the response store.

A key hashes the backend's store identity (:func:`store_identity`), the prompt's messages, the generation
index, the answer schema and the log-probability ask: everything the answer depends on, nothing that only
changes its speed or its price, nor where its code lives (the backend is named by its ``store_name``, see
:meth:`mapgen.llms.base.LLM.store_fingerprint`; ``tests/test_store_keys.py`` pins keys that stores hold).

Example:
    >>> from mapgen.core.prompt import Prompt
    >>> from mapgen.core.request import Request
    >>> a = request_key("llm", Request(Prompt("Hi")))
    >>> a == request_key("llm", Request(Prompt("Hi"))), a == request_key("llm", Request(Prompt("Hi"), 1))
    (True, False)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mapgen.core.request import Request


def request_key(llm_fingerprint: str, request: Request) -> str:
    """The store key of one request to one backend config (``llm_fingerprint`` is its JSON state)."""
    identity = [
        llm_fingerprint,
        *request.prompt.identity(),
        request.index,
        request.schema,
        request.top_logprobs,
    ]
    if request.attempt:  # a re-ask: its own answer (first asks keep the keys they always had)
        identity.append(["attempt", request.attempt])
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=repr).encode()).hexdigest()


def store_identity(state: Any) -> Any:
    """A backend's store fingerprint (``LLM.store_fingerprint()``: its fingerprint under its store name)
    without its ``price_per_million`` (a pool's members' too): what its store keys derive from. A price
    changes what an answer cost, never the answer, so it must not make a run pay for answers it already
    has.

    Example:
        >>> store_identity({"type": "OpenAILLM", "model": "m", "price_per_million": [1.0, 2.0]})
        {'type': 'OpenAILLM', 'model': 'm'}
    """
    if isinstance(state, Mapping):
        return {key: store_identity(value) for key, value in state.items() if key != "price_per_million"}
    if isinstance(state, list):
        return [store_identity(value) for value in state]
    return state
