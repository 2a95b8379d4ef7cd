"""Terminal rendering shared by the `gpumarket` commands and the ape scripts.

    print(table(["job", "state"], [[7, "RUNNING"], [8, "OPEN"]]))
    print(fields([("free", "1,000 mSTK"), ("release", when(release_at, now))]))
    amount(1_500 * 10**18, 18, "mSTK")    -> "1,500 mSTK"
    when(now + 90, now)                   -> "2026-01-01 12:01:30 UTC (in 1 min 30 s)"
    parse_amount("1.5 tokens", 18)        -> 1_500_000_000_000_000_000

Tables are plain text (no colours, no box drawing) so they read the same in a terminal,
a log file and a CI transcript; numbers are right-aligned. Amounts are integers in token
base units everywhere else: only what is shown to a person is scaled by the decimals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["amount", "duration", "fields", "parse_amount", "table", "utc", "when"]

_NUMERIC = re.compile(r"^[-+]?[\d,._]+( \S+)?$")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)") -> str:
    """A plain-text table: a header line, a rule, one line per row; `empty` when no rows."""
    cells = [[str(value) for value in row] for row in rows]
    if not cells:
        return empty
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    numeric = [all(_NUMERIC.match(row[i]) for row in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in cells)])


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """Name/value lines with the values aligned: a record's fields."""
    items = [(name, str(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in items)


def amount(base_units: int, decimals: int = 0, symbol: str = "") -> str:
    """`base_units` shown in whole tokens, thousands separated, exact (no rounding)."""
    sign = "-" if base_units < 0 else ""
    whole, fraction = divmod(abs(base_units), 10**decimals) if decimals else (abs(base_units), 0)
    text = f"{sign}{whole:,}"
    if fraction:
        text += "." + str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{text} {symbol}" if symbol else text


def parse_amount(text: str, decimals: int) -> int:
    """An amount typed by a person, in base units: "1500" (base units, "_" and "," allowed)
    or "<number> tokens" / "<number>tokens" (whole tokens, scaled by `decimals`)."""
    raw = text.strip().lower()
    scale = 0
    for suffix in ("tokens", "token"):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)].strip(), decimals
            break
    cleaned = raw.replace("_", "").replace(",", "")
    try:
        value = Decimal(cleaned) * (Decimal(10) ** scale)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount (base units, or e.g. '1.5 tokens')") from None
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is finer than one base unit ({decimals} decimals)")
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return int(value)


def utc(timestamp: int) -> str:
    """A unix time as "YYYY-MM-DD HH:MM:SS UTC"."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: int) -> str:
    """A short human duration: "45 s", "2 min 5 s", "3 h 20 min", "2 d 4 h"."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    days, hrs = divmod(hours, 24)
    return f"{days} d {hrs} h" if hrs else f"{days} d"


def when(timestamp: int, now: int) -> str:
    """`timestamp` in UTC with how far it is from `now` (the chain's time)."""
    if timestamp == 0:
        return "-"
    delta = timestamp - now
    relative = "now" if delta == 0 else f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"
    return f"{utc(timestamp)} ({relative})"
