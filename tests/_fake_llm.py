"""A scripted LLM for tests: answers from a function of the request, records what it was sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mapgen.llms.base import LLM, Completion, Request

SENT: list[Request] = []
"""Every request any FakeLLM answered in this process."""


@dataclass(frozen=True, kw_only=True)
class FakeLLM(LLM):
    """Answers each request with ``reply(request)`` (a string, or a Completion as is)."""

    reply: Callable[[Request], Any] = field(default=lambda request: "")
    schema_support: bool = False
    logprob_support: bool = False

    supports_schema: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        # per-instance capabilities, for tests only
        object.__setattr__(self, "supports_schema", self.schema_support)
        object.__setattr__(self, "supports_logprobs", self.logprob_support)

    @property
    def model_name(self) -> str:
        return "fake"

    def complete(self, requests: Sequence[Request], *, rank=None, on_complete=None) -> list[Completion]:
        out = []
        for i, request in enumerate(requests):
            SENT.append(request)
            answer = self.reply(request)
            completion = (
                answer if isinstance(answer, Completion) else Completion(text=answer, finish_reason="stop")
            )
            out.append(completion)
            if on_complete:
                on_complete(i, completion)
        return out
