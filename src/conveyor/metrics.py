"""Queue metrics: per-minute throughput, processing-time percentiles, ages, live workers.

The complete and fail scripts count finished attempts per minute (one hash per minute that
expires after the metrics window) and in running totals; this module reads them back.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import msgspec

from conveyor import codec
from conveyor.errors import PayloadError
from conveyor.keys import QueueKeys
from conveyor.ops import Call, Command, Counts, Op, call, parse_counts
from conveyor.stored import whole

#: Upper bounds (ms) of the processing-time buckets; the last bucket is unbounded.
DURATION_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
                      30_000, 60_000, 300_000)  # fmt: skip


def duration_bucket(seconds: float) -> int:
    """The index of the bucket a processing time falls in."""
    return bisect_left(DURATION_BOUNDS_MS, seconds * 1000)


def percentile(buckets: Sequence[int], fraction: float) -> float | None:
    """The upper bound (seconds) of the bucket holding the ``fraction`` quantile."""
    total = sum(buckets)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank and count:
            if index >= len(DURATION_BOUNDS_MS):
                return float("inf")
            return DURATION_BOUNDS_MS[index] / 1000
    return None


class MinuteStats(msgspec.Struct, frozen=True):
    """Attempts finished in one minute (``minute`` is Unix time / 60)."""

    minute: int
    completed: int
    failed: int
    dead: int


class WorkerInfo(msgspec.Struct, frozen=True):
    """A live worker, as it describes itself in its heartbeat."""

    id: str
    host: str = ""
    pid: int = 0
    queues: list[str] = []
    concurrency: int = 0
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    jobs_done: int = 0
    #: Handler threads abandoned at their timeout and still running (hung code).
    abandoned_threads: int = 0
    #: The job names it has handlers for (it takes no job of another name; see the README).
    handlers: list[str] = []


class QueueMetrics(msgspec.Struct, frozen=True):
    """A snapshot of one queue's health."""

    queue: str
    counts: Counts
    completed_total: int
    failed_total: int
    dead_total: int
    minutes: list[MinuteStats]
    duration_buckets: list[int]
    oldest_waiting_age: float | None  # seconds the next job to run has waited
    oldest_dead_age: float | None  # seconds since the oldest dead job died
    workers: list[WorkerInfo]
    partitions: int = 1  # a partitioned queue's metrics add up its partitions'

    def processing_time(self, fraction: float) -> float | None:
        """Processing-time quantile (seconds, bucket upper bound) over the window."""
        return percentile(self.duration_buckets, fraction)

    def per_minute(self, kind: str = "completed") -> list[int]:
        """One count per minute of the window, oldest first (the last is the current minute,
        still counting)."""
        return [getattr(m, kind) for m in self.minutes]

    def completed_last_minute(self) -> int:
        """Jobs completed in the last full clock minute (the minute before the current one).

        A full minute gives a steady rate: the current minute's count starts again from 0
        at every minute. This is ``completed_last_minute`` in ``conveyor status`` and in
        the dashboard.
        """
        return self.minutes[-2].completed if len(self.minutes) > 1 else 0


def _int(value: Any) -> int:
    return int(value) if value else 0


def queue_metrics(keys: QueueKeys, window: float = 3600.0) -> Op[QueueMetrics]:
    """Read the metrics of one queue over the last ``window`` seconds (two round trips).

    The minutes read are the current one and at least the full minute before it.
    """
    now = time.time()
    last_minute = int(now // 60)
    minutes = list(range(last_minute - max(2, int(window // 60)) + 1, last_minute + 1))
    fixed: list[Call] = [
        call("counts", keys),
        Command(("HMGET", keys.key("meta"), "completed_total", "failed_total", "dead_total")),
        Command(("ZRANGE", keys.key("waiting"), 0, 0)),
        # The oldest dead job not yet past its retention (one past it is gone for readers).
        Command(("ZRANGE", keys.key("dead"), round(now * 1000), "+inf", "BYSCORE", "LIMIT", 0, 1)),
        Command(("HGETALL", keys.key("worker_info"))),
        Command(("ZRANGEBYSCORE", keys.key("workers"), round(now * 1000), "+inf")),
    ]
    replies = yield fixed + [Command(("HGETALL", f"{keys.key('metrics')}{m}")) for m in minutes]
    counts_reply, totals, head, oldest_dead, info, alive, *per_minute = replies
    heads = yield [
        Command(("HGET", keys.job(head[0].decode()), "created_ms")) if head else Command(("TIME",)),
        Command(("HGET", keys.job(oldest_dead[0].decode()), "finished_ms"))
        if oldest_dead
        else Command(("TIME",)),
    ]
    stats, buckets = _minutes(minutes, per_minute)
    live = {raw.decode() for raw in alive}
    workers = [
        worker
        for worker_id, blob in info.items()
        if worker_id.decode(errors="replace") in live and (worker := _worker_info(blob))
    ]
    return QueueMetrics(
        queue=keys.queue,
        counts=parse_counts(counts_reply),
        completed_total=_int(totals[0]),
        failed_total=_int(totals[1]),
        dead_total=_int(totals[2]),
        minutes=stats,
        duration_buckets=buckets,
        oldest_waiting_age=_age(now, heads[0]) if head else None,
        oldest_dead_age=_age(now, heads[1]) if oldest_dead else None,
        workers=sorted(workers, key=lambda info_: info_.id),
    )


def _worker_info(blob: bytes) -> WorkerInfo | None:
    """A worker's stored self-description; ``None`` (the worker not shown) if malformed."""
    try:
        return msgspec.convert(codec.decode(blob), WorkerInfo)
    except (PayloadError, msgspec.ValidationError):
        return None


def _age(now: float, stored_ms: Any) -> float | None:
    ms = whole(stored_ms)  # a malformed stored time shows as no age, never an error
    return max(0.0, now - ms / 1000) if ms else None


def _minutes(
    minutes: list[int], replies: list[dict[bytes, bytes]]
) -> tuple[list[MinuteStats], list[int]]:
    buckets = [0] * (len(DURATION_BOUNDS_MS) + 1)
    stats = []
    for minute, fields in zip(minutes, replies, strict=True):
        get = fields.get
        stats.append(MinuteStats(minute, _int(get(b"completed")), _int(get(b"failed")),
                                 _int(get(b"dead"))))  # fmt: skip
        for field, value in fields.items():
            if field.startswith(b"b") and field[1:].isdigit():
                buckets[min(int(field[1:]), len(buckets) - 1)] += int(value)
    return stats, buckets
