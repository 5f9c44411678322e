"""What answers cost: prices in USD per million tokens, and the cost of one answer.

A backend's price comes from its ``price_per_million=(input, output)`` field when set (self-hosted and
unknown models, or a negotiated rate), else from the maintained table of the ``genai-prices`` package
(pydantic's, bundled with the package: read offline, never updated over the network), looked up by
provider and model, but only for requests that go to the provider's own API (a self-hosted server that
serves a model called ``gpt-4o-mini`` is not billed by OpenAI). Anything else has no price: its answers
keep their token counts and get ``cost=None``.

Providers bill cached input tokens (a prompt prefix they have seen recently) at a lower rate, writes to
Anthropic's prompt cache at a higher one, and batch APIs at half price; :meth:`Price.cost` applies all three.
A table price is computed by ``genai-prices`` itself, answer by answer (``calc_price``): its long-context
tiers, cache rates and batch rates as the library has them, never a copy of its arithmetic here.

Example:
    >>> price = Price(input=0.15, output=0.60, cached_input=0.075)  # gpt-4o-mini
    >>> round(price.cost(1_000, 200), 8)
    0.00027
    >>> round(price.cost(1_000, 200, cached_tokens=800, batch=True), 8)
    0.000105
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from mapgen.core.request import Completion

BATCH_DISCOUNT = 0.5
"""What a provider batch API charges, as a share of the usual price (OpenAI's and Anthropic's: half)."""

PROVIDER_HOSTS: Mapping[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
}
"""API hosts whose requests are billed at the provider's list price, and the provider's id in
``genai-prices``. Any other host (a local server, a proxy, a cloud's deployment) has no list price."""


@dataclass(frozen=True)
class Price:
    """A model's prices in USD per million tokens: ``input`` (prompt), ``output`` (completion),
    ``cached_input`` (prompt tokens read from the provider's prompt cache; ``None``: no discount) and
    ``cache_write`` (prompt tokens written to it, Anthropic's 1.25x of ``input``; ``None``: the input rate).

    A price from the ``genai-prices`` table (:func:`table_price`) also names its ``table`` entry,
    ``(provider, model)``: its rates are then the table's base rates, for display, and :meth:`cost` asks the
    library, which knows the tiers and batch rates these four numbers cannot hold.

    Example:
        >>> Price(3.0, 15.0).cost(prompt_tokens=2_000, completion_tokens=500)
        0.0135
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    table: tuple[str, str] | None = field(default=None, repr=False, kw_only=True)
    """The ``genai-prices`` ``(provider, model)`` that prices each answer; ``None``: these flat rates do."""

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write"):
            value = getattr(self, name)
            if value is None and name in ("cached_input", "cache_write"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"Price.{name} must be a number of USD per million tokens, got {value!r}.")
            if value < 0:
                raise ValueError(f"Price.{name} must be >= 0 USD per million tokens, got {value!r}.")
            object.__setattr__(self, name, float(value))

    @property
    def rates(self) -> tuple[float | None, ...]:
        """``(input, output, cached_input, cache_write)`` without the trailing ``None``: the plain form of a
        flat price (a backend keeps its ``price_per_million`` so). A table price gives its base rates.

        Example:
            >>> Price(1.0, 2.0).rates, Price(1.0, 2.0, cache_write=1.25).rates
            ((1.0, 2.0), (1.0, 2.0, None, 1.25))
        """
        rates: tuple[float | None, ...] = (self.input, self.output, self.cached_input, self.cache_write)
        while rates[-1] is None:
            rates = rates[:-1]
        return rates

    def cost(
        self,
        prompt_tokens: float,
        completion_tokens: float,
        *,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        batch: bool = False,
    ) -> float:
        """The cost in USD of one request: ``prompt_tokens`` (all input tokens: ``cached_tokens`` of them
        read from the prompt cache, ``cache_write_tokens`` written to it) and ``completion_tokens``;
        ``batch`` applies the batch discount. Counts may be means (an estimate's). A table price is
        ``genai-prices``' own figure for this usage (its batch rate where it has one, else its standard
        price at :data:`BATCH_DISCOUNT`).

        Example:
            >>> Price(1.0, 2.0, cached_input=0.1).cost(1_000_000, 0, cached_tokens=1_000_000)
            0.1
            >>> Price(1.0, 2.0, cache_write=1.25).cost(1_000_000, 0, cache_write_tokens=1_000_000)
            1.25
        """
        cached = min(max(cached_tokens, 0), prompt_tokens)
        written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
        if self.table is not None:
            return _table_cost(*self.table, prompt_tokens, cached, written, completion_tokens, batch)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        fresh = prompt_tokens - cached - written
        usd = (fresh * self.input + cached * cached_rate + written * write_rate) / 1e6
        usd += completion_tokens * self.output / 1e6
        return usd * BATCH_DISCOUNT if batch else usd


def price_for(llm: Any) -> Price | None:
    """The price of ``llm``'s answers: its ``price_per_million`` when set, else the ``genai-prices`` table's
    for its provider and model when requests go to the provider's own API (:func:`billed_by`), else ``None``.

    Example:
        >>> import mapgen
        >>> price_for(mapgen.OpenAILLM("gpt-4o-mini", api_key="sk-..."))
        Price(input=0.15, output=0.6, cached_input=0.075, cache_write=None)
        >>> price_for(mapgen.OpenAILLM("gpt-4o-mini", base_url="http://localhost:8000/v1")) is None
        True
        >>> local = mapgen.OpenAILLM("m", base_url="http://127.0.0.1:8000/v1", price_per_million=(0.2, 0.8))
        >>> price_for(local)
        Price(input=0.2, output=0.8, cached_input=None, cache_write=None)
    """
    own = getattr(llm, "price_per_million", None)
    if own is not None:
        return as_price(own)
    provider = billed_by(llm)
    model = getattr(llm, "model", None)
    if provider is None or not isinstance(model, str):
        return None
    return table_price(provider, model)


def as_price(value: Price | Sequence[float]) -> Price:
    """A :class:`Price` from ``(input, output)``, ``(input, output, cached_input)`` or ``(input, output,
    cached_input, cache_write)`` in USD per million tokens; raises ``TypeError``/``ValueError`` on
    anything else (it is checked when a backend is built).

    Example:
        >>> as_price((0.5, 1.5))
        Price(input=0.5, output=1.5, cached_input=None, cache_write=None)
    """
    if isinstance(value, Price):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) not in (2, 3, 4):
        raise TypeError(
            "price_per_million must be (input, output), (input, output, cached_input) or (input, output, "
            "cached_input, cache_write) in USD per million "
            f"tokens, e.g. (0.15, 0.6); got {value!r}."
        )
    return Price(*value)


def billed_by(llm: Any) -> str | None:
    """The provider (a ``genai-prices`` id) that bills ``llm``'s requests at its list price, or ``None``.

    A backend may say so itself (a ``billed_by`` attribute); else it is read from the host of its
    ``resolved_base_url`` (or ``base_url``) in :data:`PROVIDER_HOSTS`.

    Example:
        >>> import mapgen
        >>> billed_by(mapgen.OpenAILLM("gpt-4o", base_url="https://api.openai.com/v1"))
        'openai'
    """
    own = getattr(llm, "billed_by", None)
    if isinstance(own, str) or (own is None and hasattr(type(llm), "billed_by")):
        return own
    url = getattr(llm, "resolved_base_url", None) or getattr(llm, "base_url", None)
    if not isinstance(url, str):
        return None
    return PROVIDER_HOSTS.get((urlsplit(url).hostname or "").lower())


@functools.lru_cache(maxsize=256)
def table_price(provider: str, model: str) -> Price | None:
    """``model``'s current list price at ``provider`` in the ``genai-prices`` table bundled with the
    package (no network: its auto-update is never started), or ``None`` when the table does not know it.

    Its rates are the table's base rates; its :meth:`Price.cost` is the library's own figure per answer,
    long-context tiers included (Anthropic's above 200,000 input tokens).

    Example:
        >>> sonnet = table_price("anthropic", "claude-sonnet-4-5")
        >>> sonnet.input, round(sonnet.cost(100_000, 1_000), 6), round(sonnet.cost(300_000, 1_000), 6)
        (3.0, 0.315, 1.8225)
    """
    try:
        from genai_prices import data_snapshot
    except ImportError:  # an optional dependency: without it only price_per_million prices
        return None
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
        prices = info.get_prices(datetime.now(tz=timezone.utc))
    except LookupError:
        return None
    input_rate, output_rate = _base(prices.input_mtok), _base(prices.output_mtok)
    if input_rate is None or output_rate is None:
        return None
    cached, written = _base(prices.cache_read_mtok), _base(prices.cache_write_mtok)
    return Price(input_rate, output_rate, cached, written, table=(provider, model))


_BATCH_CONTEXT = {"processing": "batch"}
"""``genai-prices``' ``price_context`` for usage sent through a provider's batch API."""


@functools.lru_cache(maxsize=65_536)  # the library takes ~0.1 ms an answer; many answers repeat a usage
def _table_cost(
    provider: str, model: str, prompt_tokens: float, cached: float, written: float, output: float, batch: bool
) -> float:
    """``genai-prices``' ``calc_price`` for one answer's usage (``prompt_tokens`` counts every input token,
    ``cached`` of them read from the cache and ``written`` to it). The library looks its model up once
    (its snapshot keeps the match). A batch answer gets the table's batch rate; where the table has none
    for this model (the prices it used are the standard ones), its standard price at :data:`BATCH_DISCOUNT`.
    """
    from genai_prices import Usage, calc_price

    now = datetime.now(tz=timezone.utc)
    usage = Usage(
        input_tokens=prompt_tokens, cache_read_tokens=cached, cache_write_tokens=written, output_tokens=output
    )
    context = _BATCH_CONTEXT if batch else None
    found = calc_price(usage, model, provider_id=provider, genai_request_timestamp=now, price_context=context)
    usd = float(found.total_price)
    if batch and found.model_price == found.model.get_prices(now):
        usd *= BATCH_DISCOUNT
    return usd


def _base(rate: Any) -> float | None:
    """A ``genai-prices`` rate as a float: a number, or a tiered price's base."""
    if rate is None:
        return None
    return float(getattr(rate, "base", rate))


def priced(llm: Any, completions: Sequence[Completion], *, batch: bool = False) -> list[Completion]:
    """``completions``, each with its :attr:`~Completion.cost` set from ``llm``'s price (:func:`price_for`)
    and its own token counts; unchanged where the price or the counts are unknown.

    ``completions`` are the answers of one request: answered ``n`` times, they carry equal shares of its usage
    (see :func:`mapgen.llms.openai_wire.completions_from`). The request is priced whole (a tiered price is
    not linear in tokens: two halves of 300,000 input tokens are each below a 272,000-token tier) and each
    answer gets an equal share of that cost. Answers that already carry a cost (a batch result priced by its
    collector) or that came from the response store keep theirs.

    Example:
        >>> import mapgen
        >>> llm = mapgen.OpenAILLM("m", base_url="http://localhost:8000/v1", price_per_million=(1.0, 2.0))
        >>> priced(llm, [mapgen.Completion("hi", prompt_tokens=10, completion_tokens=5)])[0].cost
        2e-05
    """
    price = price_for(llm) if completions else None
    fresh = [
        i
        for i, c in enumerate(completions)
        if c.cost is None
        and not c.from_store
        and c.prompt_tokens is not None
        and c.completion_tokens is not None
    ]
    if price is None or not fresh:
        return list(completions)
    usage = [completions[i] for i in sorted(fresh)]
    usd = price.cost(
        sum(c.prompt_tokens or 0 for c in usage),
        sum(c.completion_tokens or 0 for c in usage),
        cached_tokens=sum(c.cached_tokens or 0 for c in usage),
        cache_write_tokens=sum(c.cache_write_tokens or 0 for c in usage),
        batch=batch,
    )
    share = usd / len(fresh)
    return [dataclasses.replace(c, cost=share) if i in fresh else c for i, c in enumerate(completions)]


def _to_price(completion: Completion) -> bool:
    """Whether ``completion`` is a fresh answer with known token counts and no cost yet."""
    c = completion
    return (
        c.cost is None
        and not c.from_store
        and c.prompt_tokens is not None
        and c.completion_tokens is not None
    )
