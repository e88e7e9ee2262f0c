"""Checks of values at Conveyor's boundary: one clear ``ValueError`` naming the value.

Every option a caller, a CLI argument or an imported file hands to Conveyor passes through
one of these before anything is stored; the limits they enforce live in :mod:`defaults`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from conveyor import defaults

# C0 and C1 control characters and DEL: never in an id, a name, a group or a key, where
# they could forge a log line or hide in a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text(value: Any, what: str, limit: int = defaults.MAX_NAME_CHARS) -> str:
    """``value`` if it is a non-empty ``str`` of at most ``limit`` characters without
    control characters; else ``ValueError`` naming ``what``."""
    if type(value) is not str:
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > limit:
        raise ValueError(f"{what} must be 1-{limit} characters (got {len(value)})")
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters: {value[:60]!r}")
    return value


def integer(value: Any, what: str, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) within ``low..high``."""
    if type(value) is not int:
        raise ValueError(f"{what} must be an integer in {low}..{high}, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be an integer in {low}..{high}, not {value}")
    return value


def number(
    value: Any, what: str, low: float = 0.0, high: float = defaults.MAX_SECONDS,
    *, low_open: bool = False, unit: str = "",
) -> float:  # fmt: skip
    """``value`` as a float if it is a finite ``int`` or ``float`` (not a ``bool``) within
    ``low..high`` (``low`` excluded with ``low_open``); ``unit`` follows the range in the
    error message."""
    if (
        type(value) not in (int, float)
        or not math.isfinite(value)
        or value > high
        or value < low
        or (low_open and value == low)
    ):
        bound = f"above {_show(low)}" if low_open else f"from {_show(low)}"
        raise ValueError(
            f"{what} must be a finite number {bound} to {_show(high)}{unit}, not {value!r}"
        )
    return float(value)


def _show(bound: float) -> str:
    """A bound as people write it: 315360000 rather than 3.1536e+08."""
    if bound == int(bound) and abs(bound) < 1e15:
        return str(int(bound))
    return f"{bound:g}"


def seconds(value: Any, what: str, *, positive: bool = False) -> float:
    """A duration in seconds: finite, at least 0 (above 0 with ``positive``), at most
    :data:`defaults.MAX_SECONDS` (ten years)."""
    return number(value, what, 0.0, defaults.MAX_SECONDS, low_open=positive, unit=_SECONDS)


_SECONDS = f" seconds ({defaults.MAX_SECONDS / (365 * 24 * 3600):g} years)"


def flag(value: Any, what: str) -> bool:
    """``value`` if it is a ``bool`` (not ``0``/``1`` or another truthy value)."""
    if type(value) is not bool:
        raise ValueError(f"{what} must be True or False, not {value!r}")
    return value
