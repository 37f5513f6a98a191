"""Durations as written in SafeKit files: a bare number in a per-attribute default unit, or units.

SafeKit 8.2.5 added units (`700ms`, `30s`, `24h`) to attributes that were bare numbers before, and
the bare numbers keep their historical unit (milliseconds for heartbeats, seconds for most
timeouts, hours for `loop_interval`). Values are returned as float seconds. Parsing goes through
`Decimal` so that `"700ms"` is exactly the float nearest to 0.7, like `700 / 1000`.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

# Largest unit first: a compound duration must list its parts in this order (`1m30s`, not `30s1m`).
UNITS: Final[dict[str, Decimal]] = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
}
_UNIT_ORDER: Final[tuple[str, ...]] = tuple(UNITS)

_NUMBER = r"\d+(?:\.\d+)?"
_BARE = re.compile(rf"({_NUMBER})")
# `ms` and `us` before `m` and `s` so that "700ms" is not read as 700 minutes and a stray "s".
_PART = re.compile(rf"({_NUMBER})(ms|us|d|h|m|s)")

HINT: Final = "use e.g. 700ms, 2s"


def parse_duration(text: str, default_unit: str) -> float:
    """Return `text` in seconds; a bare number is in `default_unit` (one of d h m s ms us).

    Raises ValueError with a message that says what is accepted.
    """
    if default_unit not in UNITS:
        raise ValueError(f"unknown default unit {default_unit!r} (use one of: {', '.join(UNITS)})")
    value = text.strip()
    bare = _BARE.fullmatch(value)
    if bare:
        return _finite(text, Decimal(bare.group(1)) * UNITS[default_unit])
    total = Decimal(0)
    position = 0
    last_rank = -1
    for part in _PART.finditer(value):
        if part.start() != position:
            break
        rank = _UNIT_ORDER.index(part.group(2))
        if rank <= last_rank:
            raise ValueError(f"{text!r} is not a duration (units go from largest to smallest, once each)")
        last_rank = rank
        total += Decimal(part.group(1)) * UNITS[part.group(2)]
        position = part.end()
    if position == 0 or position != len(value):
        raise ValueError(f"{text!r} is not a duration ({HINT})")
    return _finite(text, total)


def _finite(text: str, seconds: Decimal) -> float:
    # Hundreds of digits overflow a float: infinity is not a duration any timer can wait.
    value = float(seconds)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too long a duration")
    return value


def format_duration(seconds: float) -> str:
    """Shortest exact spelling with one unit, for messages and docs (`0.7` -> `700ms`)."""
    exact = Decimal(repr(seconds))
    for unit in ("h", "m", "s", "ms", "us"):
        count = exact / UNITS[unit]
        if count == count.to_integral_value() and count >= 1:
            return f"{int(count)}{unit}"
    return f"{exact.normalize()}s"
