"""How the dashboard shows values: ages, times, pretty JSON, JSON documents of jobs and queues.

Shared by the HTML pages and the JSON API, so both say the same thing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from conveyor import codec, display
from conveyor.display import ago, job_builtins
from conveyor.dlq_ops import DeadFilter
from conveyor.durations import parse_duration as duration_seconds
from conveyor.errors import PayloadError
from conveyor.events import Event
from conveyor.job import DeadReason, Job, JobState
from conveyor.keys import PARTITION_SEPARATOR, logical_name
from conveyor.metrics import QueueMetrics, WorkerInfo

__all__ = [
    "age",
    "ago",
    "dead_filter",
    "event_builtins",
    "filter_params",
    "job_builtins",
    "job_summary",
    "parse_when",
    "partition",
    "pretty",
    "queue_summary",
    "when",
]


def age(seconds: float | None) -> str:
    """A duration, briefly: ``42s``, ``5m``, ``3h``, ``2d``; an em dash for ``None``."""
    return display.duration(seconds, missing="—")


def when(timestamp: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` UTC; empty for ``None``."""
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def pretty(raw: bytes | None) -> str:
    """Stored JSON, indented for reading; text that is not JSON is shown as it is."""
    if raw is None:
        return ""
    try:
        return json.dumps(codec.decode(raw), indent=2, ensure_ascii=False)
    except PayloadError:
        return raw.decode("utf-8", "replace")


def parse_when(text: str) -> float | None:
    """A point in time typed in a filter: ISO (``2024-05-01T12:00``, UTC unless it says)
    or a duration ago (``2h``). ``None`` for an empty text; ``ValueError`` if neither."""
    text = text.strip()
    if not text:
        return None
    seconds = duration_seconds(text)
    if seconds is not None:
        return time.time() - seconds
    try:
        moment = dt.datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
    except ValueError:
        raise ValueError(f"{text!r} is neither a time like 2024-05-01T12:00 nor 2h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


#: The query parameters of a dead-letter filter.
FILTER_FIELDS = ("reason", "name", "error_type", "since", "until")


def filter_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The non-empty filter fields among ``params`` (a query or a form)."""
    out = {}
    for key in FILTER_FIELDS:
        value = params.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()
    return out


def dead_filter(params: Mapping[str, str]) -> DeadFilter:
    """The :class:`DeadFilter` of the filter fields; ``ValueError`` on a bad one."""
    reason = params.get("reason") or None
    if reason is not None:
        DeadReason(reason)  # ValueError if unknown
    return DeadFilter(
        reason=reason,
        name=params.get("name") or None,
        error_type=params.get("error_type") or None,
        since=parse_when(params.get("since", "")),
        until=parse_when(params.get("until", "")),
    )


def partition(queue: str) -> str:
    """The number of the partition a queue name points to (``emails~3``: ``3``), else ``""``."""
    return queue[len(logical_name(queue)) + len(PARTITION_SEPARATOR) :]


def job_summary(job: Job) -> dict[str, Any]:
    """The fields of a job a list shows (no payload or result)."""
    return {
        "id": job.id, "queue": job.queue, "name": job.name, "state": job.state.value,
        "priority": job.priority, "attempt": job.attempt, "max_attempts": job.max_attempts,
        "created_at": job.created_at, "due_at": job.due_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "replays": job.replays,
        "dead_reason": job.dead_reason.value if job.dead_reason else None,
        "error": {"type": job.error.type, "message": job.error.message} if job.error else None,
        "problems": list(job.problems),
    }  # fmt: skip


def event_builtins(event: Event) -> dict[str, Any]:
    """An event as JSON-ready values, with its time."""
    return {"id": event.id, "event": event.event, "job_id": event.job_id,
            "time": event.timestamp, "fields": event.fields}  # fmt: skip


def worker_builtins(worker: WorkerInfo) -> dict[str, Any]:
    """A worker as JSON-ready values."""
    out: dict[str, Any] = msgspec.to_builtins(worker)
    return out


def queue_summary(metrics: QueueMetrics, *, series: bool = False) -> dict[str, Any]:
    """A queue's health as JSON-ready values; ``series`` adds its per-minute throughput."""
    out: dict[str, Any] = {
        "queue": metrics.queue,
        "partitions": metrics.partitions,
        "counts": {state.value: getattr(metrics.counts, state.value, 0) for state in JobState},
        "paused": metrics.counts.paused,
        "workers_alive": len(metrics.workers),
        "dlq_depth": metrics.counts.dead,
        "oldest_waiting_age": metrics.oldest_waiting_age,
        "oldest_dead_age": metrics.oldest_dead_age,
        "completed_total": metrics.completed_total,
        "failed_total": metrics.failed_total,
        "dead_total": metrics.dead_total,
        "completed_last_minute": metrics.completed_last_minute(),
    }
    if series:
        out["throughput"] = [msgspec.to_builtins(m) for m in metrics.minutes]
    return out
