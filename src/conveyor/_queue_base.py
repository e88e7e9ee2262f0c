"""What the async and sync queue faces share: arguments turned into operations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from conveyor import defaults, ops
from conveyor.job import Job, JobState
from conveyor.keys import QueueKeys
from conveyor.ops import Dedup, Durable, JobSpec, QueueOptions
from conveyor.retry import Backoff

_NOTHING = (None,) * 9


def _timestamp(run_at: dt.datetime | float | None) -> float | None:
    if isinstance(run_at, dt.datetime):
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return run_at.timestamp()
    return run_at


class QueueBase:
    """Holds a queue's name, keys and options, and builds its operations."""

    def __init__(self, name: str, options: QueueOptions | None = None) -> None:
        self.keys = QueueKeys(name)
        self.name = name
        self.options = options or QueueOptions()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _enqueue_op(
        self,
        name: str,
        payload: Any,
        *,
        id: str | None,
        delay: float | None,
        run_at: dt.datetime | float | None,
        priority: int,
        attempts: int | None,
        timeout: float | None,
        backoff: Backoff | None,
        retention: float | None,
        dedup: Dedup | None,
        group: str | None,
        durable: Durable | None,
    ) -> ops.Op[list[Job]]:
        given = (id, delay, run_at, attempts, timeout, backoff, retention, dedup, group)
        if given == _NOTHING and priority == defaults.PRIORITY:  # no options: the short way
            return ops.enqueue_many(self.keys, [(name, payload)], self.options, durable)
        spec = JobSpec(
            name, payload, id=id, delay=delay, run_at=_timestamp(run_at), priority=priority,
            attempts=attempts, timeout=timeout, backoff=backoff, retention=retention,
            dedup=dedup, group=group,
        )  # fmt: skip
        return ops.enqueue_many(self.keys, [spec], self.options, durable)

    def _enqueue_many_op(
        self, jobs: Iterable[JobSpec | tuple[str, Any]], durable: Durable | None
    ) -> ops.Op[list[Job]]:
        return ops.enqueue_many(self.keys, jobs, self.options, durable)

    def _list_op(self, state: JobState | str, offset: int, limit: int) -> ops.Op[list[Job]]:
        return ops.list_jobs(self.keys, JobState(state), offset, limit)
