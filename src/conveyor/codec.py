"""JSON encoding of payloads, results and records (msgspec), with size limits. Never pickle.

Encoding is strict: a value is stored only if it is JSON (``None``, ``bool``, ``int``,
finite ``float``, ``str``, lists and tuples of them, dicts with ``str`` keys). msgspec
would quietly turn NaN into ``null``, a set into a list, bytes into base64, a datetime,
Decimal or UUID into a string and ``{1: x}`` into ``{"1": x}``; these are refused instead.
Tuples are JSON arrays and come back as lists.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import msgspec

from conveyor.errors import PayloadError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
# Values that are JSON by their type alone: no need to read them back.
_PLAIN = (str, int, bool, type(None))
# What to use instead of a type msgspec would convert.
_HINTS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((set, frozenset), "use a list"),
    ((bytes, bytearray, memoryview), "encode it as a string, e.g. base64"),
    ((dt.datetime, dt.date, dt.time, dt.timedelta), "use an ISO 8601 string or a number"),
    (decimal.Decimal, "use a string or a float"),
    (uuid.UUID, "use str(uuid)"),
)


def encode(value: Any, *, limit: int | None = None, what: str = "payload") -> bytes:
    """Encode ``value`` as JSON; raise :class:`PayloadError` if it is not JSON or too big."""
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{what} is not JSON: {exc}") from None
    if limit is not None and len(data) > limit:
        raise PayloadError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    if type(value) not in _PLAIN and not _same(_decoder.decode(data), value):
        problem = _not_json(value, what)  # None: only tuples (and subclasses) differed
        if problem is not None:
            raise PayloadError(problem)
    return data


def _same(decoded: Any, value: Any) -> bool:
    try:
        return bool(decoded == value)
    except Exception:  # a strange __eq__: let the walk decide
        return False


def _not_json(value: Any, path: str) -> str | None:
    """What in ``value`` is not JSON (naming where), or ``None`` if all of it is."""
    try:
        return _walk(value, path)
    except RecursionError:
        return f"{path} is nested too deeply"


def _walk(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{path} is {value!r}: JSON has no NaN or Infinity"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if (problem := _walk(item, f"{path}[{index}]")) is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (
                    f"{path} has a {type(key).__name__} key {key!r}: JSON object keys are strings"
                )
            if (problem := _walk(item, f"{path}[{key!r}]")) is not None:
                return problem
        return None
    hint = next((hint for kinds, hint in _HINTS if isinstance(value, kinds)), None)
    return f"{path} is a {type(value).__name__}, which is not JSON" + (f" ({hint})" if hint else "")


def decode(data: bytes | str) -> Any:
    """Decode JSON; raise :class:`PayloadError` if it is not valid JSON."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc}") from None
