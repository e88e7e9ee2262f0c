"""Durations written the way people write them: ``30s``, ``5m``, ``2h``, ``7d``, ``1h30m``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> float | None:
    """Seconds in ``text`` such as ``90s`` or ``1h30m``; ``None`` if it is not a duration."""
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(n) * _UNITS[unit] for n, unit in re.findall(r"([\d.]+)([smhdw])", text))
