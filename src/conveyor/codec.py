"""JSON encoding of payloads, results and records (msgspec), with size limits. Never pickle."""

from __future__ import annotations

from typing import Any

import msgspec

from conveyor.errors import PayloadError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(value: Any, *, limit: int | None = None, what: str = "payload") -> bytes:
    """Encode ``value`` as JSON; raise :class:`PayloadError` if it is not JSON or too big."""
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{what} is not JSON-serialisable: {exc}") from None
    if limit is not None and len(data) > limit:
        raise PayloadError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    return data


def decode(data: bytes | str) -> Any:
    """Decode JSON; raise :class:`PayloadError` if it is not valid JSON."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc}") from None
