"""Units and their display: the cost counter's unit, amounts in USD, token counts.

Example:
    >>> format_usd(0.5), format_tokens(12_345)
    ('$0.5000', '12.3k')
"""

from __future__ import annotations

import math

NANO_USD = 1e-9
"""The unit of the ``cost`` counter (:data:`mapgen.counters` holds integers)."""


def format_usd(usd: float) -> str:
    """An amount in USD, with four significant digits below a dollar.

    Example:
        >>> format_usd(0.0000123456), format_usd(0.5), format_usd(1234.5), format_usd(0)
        ('$0.00001235', '$0.5000', '$1,234.50', '$0.00')
    """
    if usd == 0 or abs(usd) >= 1:
        return f"${usd:,.2f}"
    decimals = 3 - math.floor(math.log10(abs(usd)))
    return f"${usd:.{decimals}f}"


def format_cost(usd: float, unpriced: int) -> str:
    """A total cost in USD, marked as a lower bound when ``unpriced`` answers in it had no price.

    Example:
        >>> format_cost(0.5, 0), format_cost(0.5, 2)
        ('$0.5000', '$0.5000 (+2 unpriced)')
    """
    return format_usd(usd) + (f" (+{unpriced:,} unpriced)" if unpriced else "")


def format_tokens(count: int) -> str:
    """A token count, short: ``950``, ``12.3k``, ``4.56M``.

    Example:
        >>> format_tokens(950), format_tokens(12_345), format_tokens(4_560_000)
        ('950', '12.3k', '4.56M')
    """
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"
