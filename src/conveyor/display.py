"""How values are shown to people, shared by the CLI and the dashboard: brief durations,
how long ago something happened, and jobs as JSON-ready values."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from conveyor import codec
from conveyor.errors import PayloadError
from conveyor.job import Job

__all__ = ["ago", "duration", "job_builtins"]

#: Raw JSON fields of a job and the names they are shown under, decoded.
_DECODED = {"raw_payload": "payload", "raw_result": "result", "raw_progress": "progress"}


def duration(seconds: float | None, *, missing: str = "") -> str:
    """A duration in its largest whole unit: ``42s``, ``5m``, ``3h``, ``2d``; ``missing``
    for ``None``."""
    if seconds is None:
        return missing
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ago(timestamp: float | None, now: float | None = None) -> str:
    """How long ago a Unix time was, briefly (``5m ago``); empty for ``None``."""
    if timestamp is None:
        return ""
    return duration(max(0.0, (time.time() if now is None else now) - timestamp)) + " ago"


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return codec.decode(raw)
    except PayloadError:  # stored by something else than Conveyor: show it as text
        return raw.decode("utf-8", "replace")


def job_builtins(job: Job) -> dict[str, Any]:
    """The job as JSON-ready values, with its payload and result decoded (not base64)."""
    out: dict[str, Any] = {}
    for key, value in msgspec.to_builtins(job).items():
        if key in _DECODED:
            out[_DECODED[key]] = _decoded(getattr(job, key))
        else:
            out[key] = value
    return out
