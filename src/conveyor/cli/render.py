"""How the CLI shows things: JSON documents, timestamps, and short texts for tables."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click
import msgspec

from conveyor import codec
from conveyor.errors import PayloadError
from conveyor.job import Job

__all__ = ["age", "echo_json", "job_builtins", "job_error", "timestamp"]

#: Raw JSON fields of a job and the names they are shown under, decoded.
_DECODED = {"raw_payload": "payload", "raw_result": "result", "raw_progress": "progress"}


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


def echo_json(value: Any) -> None:
    """Print ``value`` (builtins or msgspec structs) as indented JSON."""
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def timestamp(seconds: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS`` (empty for ``None``)."""
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None, now: float | None = None) -> str:
    """How long ago a Unix time was, briefly: ``42s``, ``5m``, ``3h``, ``2d``."""
    if seconds is None:
        return ""
    ago = max(0.0, (time.time() if now is None else now) - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if ago >= size:
            return f"{int(ago // size)}{unit} ago"
    return f"{int(ago)}s ago"


def job_error(job: Job, width: int = 100) -> str:
    """``Type: message`` of the job's last error, with the dead reason, on one short line."""
    if job.error is None:
        return job.dead_reason.value if job.dead_reason else ""
    text = " ".join(f"{job.error.type}: {job.error.message}".split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    if job.dead_reason is not None:
        text = f"[{job.dead_reason.value}] {text}"
    return text
