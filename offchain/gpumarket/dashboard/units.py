"""What a number means on a dashboard page: exact token amounts with their symbol, GOPS, seconds,
basis points and times, as text (the templates' filters).

    Token("0x...", "Mock Stake", "mSTK", 18).format(1_500 * 10**18 + 5 * 10**17)   -> "1,500.5 mSTK"
    gops(790_000), gops(12.345)                                                 -> "790,000 GOPS", "12.35 GOPS"
    bps(250)                                                                    -> "2.5 %"
    seconds(3_725)                                                              -> "1 h 2 min 5 s"
    utc(1_767_225_600)                                                          -> "2026-01-01 00:00:00 UTC"
    relative(now + 90, now)                                                     -> "in 1 min 30 s"

Amounts are integers in base units everywhere else: only the text shown is scaled by the token's
decimals, with :class:`decimal.Decimal` at a precision above any uint256, so nothing is rounded
(a float would turn 10**24 + 1 base units into 10**24).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal

__all__ = ["Token", "bps", "gops", "relative", "scaled", "seconds", "short_address", "utc"]

# 2**256 has 78 digits: every uint256 scaled by any decimals stays exact at this precision.
_EXACT = Context(prec=100)
_BPS = 10_000


@dataclass(frozen=True)
class Token:
    """An ERC20 as the pages name it; ``format`` shows a base-unit amount in whole tokens."""

    address: str
    name: str
    symbol: str
    decimals: int

    def format(self, base_units: int) -> str:
        return f"{scaled(base_units, self.decimals)} {self.symbol}"

    def per_gpu_second(self, base_units: int) -> str:
        """A price: base units per GPU-second."""
        return f"{self.format(base_units)}/GPU·s"


def scaled(value: int, decimals: int) -> str:
    """``value / 10**decimals``, exactly, thousands separated, no trailing zeros."""
    exact = Decimal(value).scaleb(-decimals, _EXACT)
    text = f"{exact:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def gops(value: int | float) -> str:
    """Throughput in GOPS (10**9 int8 operations per second, as the contract counts it): a whole
    number as it is, a measurement with two decimals."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f} GOPS"
    return f"{int(value):,} GOPS"


def bps(value: int) -> str:
    """Basis points as an exact percentage."""
    return f"{scaled(value, 2)} %"


_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


def seconds(value: int) -> str:
    """A duration, in the two or three largest units it has ("1 d 2 h", "5 min 3 s", "0 s")."""
    if value < 0:
        return "-" + seconds(-value)
    parts = []
    rest = value
    for unit, size in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count:,} {unit}")
    return " ".join(parts[:3]) or "0 s"


def utc(timestamp: int) -> str:
    """A unix time as a UTC date and time."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(timestamp: int, now: int) -> str:
    """How far ``timestamp`` is from ``now`` ("in 5 min", "2 h ago", "now")."""
    if timestamp == now:
        return "now"
    if timestamp > now:
        return f"in {seconds(timestamp - now)}"
    return f"{seconds(now - timestamp)} ago"


def short_address(address: str) -> str:
    """0x1234…abcd: enough to tell accounts apart at phone width (links carry the whole)."""
    return f"{address[:6]}…{address[-4:]}" if len(address) == 42 else address
