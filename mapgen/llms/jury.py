"""``Jury``: several judges that each rate every row, for :func:`mapgen.label` to aggregate.

An :class:`~mapgen.LLMPool` spreads requests over its members, one member answering each; a jury sends
each request to every member. It is a config only: :func:`mapgen.label` runs each member as a judge of
its own (its requests go through the response store keyed by that member's config, so a member's answers
are shared with a plain ``label(member, task)`` run) and writes the members' ratings, their aggregate and
their agreement (see :mod:`mapgen.mapping.jury`). Judges of different model families rating answers that
one of them wrote is the point: LLM judges favour their own answers (self-preference; Panickssery et al.,
"LLM Evaluators Recognize and Favor Their Own Generations", 2024), and a jury of several families
reduces it (Verga et al., "Replacing Judges with Juries", 2024).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mapgen.core.request import Completion, OnComplete, Request
from mapgen.llms._sampling import SAMPLING_PARAMETERS
from mapgen.llms.base import LLM
from mapgen.llms.pool import LLMPool, OfMembers


@dataclass(frozen=True, repr=False)
class Jury(OfMembers, LLM):
    """Several judges (two or more mapgen LLMs) that each rate every row: pass it to :func:`mapgen.label`
    where a judge goes. Its fingerprint is its members' (in order); it has no sampling parameters or
    price of its own (set them on the members).

    Raises:
        ValueError: fewer than two members, two equal members, or sampling parameters or a price set on
            the jury itself.
        TypeError: a member that is not a mapgen LLM, or is a pool or a jury.

    Example:
        >>> import mapgen
        >>> jury = mapgen.Jury([mapgen.OpenAILLM("gpt-4o"), mapgen.AnthropicLLM("claude-sonnet-4-5")])
        >>> jury.model_name
        'jury(gpt-4o, claude-sonnet-4-5)'
        >>> mapgen.Jury([mapgen.OpenAILLM("gpt-4o")])
        Traceback (most recent call last):
        ...
        ValueError: a Jury needs at least two members (mapgen LLMs), got 1.
    """

    KIND: ClassVar[str] = "jury"

    members: Sequence[LLM]
    """The judges, in order: every per-member column is aligned with it (kept as a tuple)."""

    def __post_init__(self) -> None:
        if isinstance(self.members, (str, bytes)) or not isinstance(self.members, Sequence):
            raise TypeError(f"Jury takes a list of mapgen LLMs, got {self.members!r}.")
        object.__setattr__(self, "members", tuple(self.members))
        for member in self.members:
            if not isinstance(member, LLM) or isinstance(member, (LLMPool, Jury)):
                raise TypeError(f"Jury members must be mapgen LLMs (not pools or juries), got {member!r}.")
        if len(self.members) < 2:
            raise ValueError(f"a Jury needs at least two members (mapgen LLMs), got {len(self.members)}.")
        defaults = {f.name: f.default for f in dataclasses.fields(LLM)}
        own = sorted(
            name
            for name in (*SAMPLING_PARAMETERS, "temperature", "top_p", "max_new_tokens", "seed")
            if getattr(self, name) != defaults[name]
        )
        if own or self.price_per_million is not None:  # the jury samples and pays nothing itself
            raise ValueError(
                f"Jury takes no sampling parameters or price ({own or ['price_per_million']}): set them on "
                "its members."
            )
        identities = [json.dumps(m.fingerprint(), sort_keys=True, default=repr) for m in self.members]
        if len(set(identities)) < len(identities):
            raise ValueError("Jury members must differ (two equal configs would give the same ratings).")

    def __repr__(self) -> str:
        return f"Jury({list(self.members)!r})"

    def describe_prompt_format(self) -> str:
        """Each member's own, by model name."""
        return "; ".join(f"{m.model_name}: {m.describe_prompt_format()}" for m in self.members)

    def fingerprint(self) -> dict[str, Any]:
        """Its members' fingerprints, in order (their speed knobs left out, as each member leaves them)."""
        return {"type": "mapgen.llms.jury.Jury", "members": [member.fingerprint() for member in self.members]}

    def store_fingerprint(self) -> dict[str, Any]:
        return {**self.fingerprint(), "members": [member.store_fingerprint() for member in self.members]}

    def preflight(self) -> None:
        for member in self.members:
            member.preflight()

    def complete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        raise TypeError(
            "a Jury rates: pass it to mapgen.label(jury, task), which asks each member. To spread "
            "generations over several LLMs, use mapgen.LLMPool."
        )
