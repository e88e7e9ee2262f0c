"""How the CLI shows things: JSON documents, timestamps, and short texts for tables.

What the dashboard shows the same way (durations, ages, jobs as JSON) is in
:mod:`conveyor.display`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
import msgspec

from conveyor.job import Job

__all__ = ["echo_json", "job_error", "timestamp"]


def echo_json(value: Any) -> None:
    """Print ``value`` (builtins or msgspec structs) as indented JSON."""
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def timestamp(seconds: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS`` (empty for ``None``)."""
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


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
