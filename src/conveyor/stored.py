"""Reads a job's stored fields defensively: a bad field becomes its default and a problem.

Anything may be in storage: a field written by an old version, by a producer with direct
access, by an import or by a bug. Readers show such a job with its problems named, and a
worker buries it as ``invalid_job``; neither ever raises on what it reads. The rules of
what a well-formed field is live here, once, for both.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from conveyor import defaults
from conveyor.backoff import backoff_from_json

#: The largest integer a stored whole-number field may hold (Lua numbers are doubles).
STORED_INT_MAX = 2**53
#: How long a stored timeout may be, in milliseconds.
STORED_TIMEOUT_MS_MAX = round(defaults.MAX_SECONDS * 1000)

# Canonical integers only, as the server's HINCRBY reads them (no sign on 0, no leading
# zeros, no spaces, no "1.5" or "1e3"), within STORED_INT_MAX either way, which a Lua
# double holds exactly. include/fields.lua applies the same rule.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,15}")
# The common case, checked in one go: values joined by "|", each empty or a canonical
# non-negative whole number (their size is for the caller to check).
_PLAIN = re.compile(rb"(?:(?:0|[1-9][0-9]{0,15})?\|)*(?:0|[1-9][0-9]{0,15})?")
_json = msgspec.json.Decoder()


def whole(raw: bytes | None) -> int | None:
    """A stored whole number, or ``None`` when it is missing or malformed."""
    if not raw:
        return None
    if raw.isdigit():  # the common case, quickly: ASCII digits only (bytes.isdigit)
        if len(raw) > 16 or (raw[0] == 48 and len(raw) > 1):  # 48: b"0"; no leading zeros
            return None
    elif _INTEGER.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if -STORED_INT_MAX <= value <= STORED_INT_MAX else None


def plain(*values: bytes) -> bool:
    """Whether every value is empty or a canonical non-negative whole number of at most 16
    digits: a quick check for the hot path, which reads anything else with
    :class:`StoredFields` (then every problem is named)."""
    return _PLAIN.fullmatch(b"|".join(values)) is not None


def _shown(raw: bytes) -> str:
    return repr(raw[:40]) + ("..." if len(raw) > 40 else "")


class StoredFields:
    """The fields of one stored job hash, read with :meth:`integer`, :meth:`text`, ...;
    every field that is missing (where required) or malformed is named in :attr:`problems`."""

    def __init__(self, fields: dict[bytes, bytes]) -> None:
        self.fields = fields
        self.problems: list[str] = []

    def raw(self, name: str) -> bytes | None:
        return self.fields.get(name.encode())

    def problem(self, name: str, what: str) -> None:
        self.problems.append(f"{name}: {what}")

    def integer(
        self, name: str, default: int, low: int = -STORED_INT_MAX, high: int = STORED_INT_MAX,
        *, required: bool = False,
    ) -> int:  # fmt: skip
        """A whole number within ``low..high``; ``default`` when absent (a problem if
        ``required``) or malformed."""
        raw = self.raw(name)
        if not raw:
            if required:
                self.problem(name, "missing")
            return default
        value = whole(raw)
        if value is None:
            self.problem(name, f"{_shown(raw)} is not an integer")
            return default
        if not low <= value <= high:
            self.problem(name, f"{value} is outside {low}..{high}")
            return default
        return value

    def millis(self, name: str) -> float | None:
        """A time stored in milliseconds, as seconds; ``None`` when absent or malformed."""
        value = self.integer(name, -1, 0, STORED_INT_MAX)
        return None if value <= 0 else value / 1000.0

    def text(self, name: str, default: str = "", *, required: bool = False) -> str:
        """A UTF-8 string; ``default`` when absent (a problem if ``required``) or not UTF-8."""
        raw = self.raw(name)
        if not raw:
            if required:
                self.problem(name, "missing")
            return default
        try:
            return raw.decode()
        except UnicodeDecodeError:
            self.problem(name, f"{_shown(raw)} is not UTF-8")
            return raw.decode(errors="replace")

    def json(self, name: str, default: Any = None) -> Any:
        """A JSON value; ``default`` when absent or not JSON."""
        raw = self.raw(name)
        if not raw:
            return default
        try:
            return _json.decode(raw)
        except msgspec.DecodeError:
            self.problem(name, f"{_shown(raw)} is not JSON")
            return default

    def options(self) -> dict[str, Any]:
        """The job's options: a JSON object whose ``backoff``, if any, is a known policy."""
        if not self.raw("options"):
            return {}
        value = self.json("options", {})
        if not isinstance(value, dict):
            self.problem("options", f"{_shown(self.raw('options') or b'')} is not a JSON object")
            return {}
        try:
            policy = backoff_from_json(value.get("backoff"))
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            self.problem("options", f"its backoff is not valid: {exc}")
            return {}
        numbers = msgspec.structs.astuple(policy) if policy is not None else ()
        if not all(0 <= number <= defaults.MAX_SECONDS for number in numbers):  # NaN too
            self.problem("options", f"its backoff has a value out of range: {policy!r}")
            return {}
        return value


def describe(problems: list[str] | tuple[str, ...]) -> str:
    """The problems of a stored job, in one line."""
    return "; ".join(problems)
