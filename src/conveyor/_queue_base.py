"""What the async and sync queue faces share: arguments turned into operations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from conveyor import defaults, ops, partitions, results, schedules
from conveyor.errors import JobNotFound, QueueBusyError
from conveyor.job import Job
from conveyor.keys import QueueKeys
from conveyor.ops import Dedup, Durable, JobSpec, Op, QueueOptions
from conveyor.partitions import Spreader
from conveyor.retry import Backoff
from conveyor.schedules import Schedule

T = TypeVar("T")
_NOTHING = (None,) * 10


def _timestamp(run_at: dt.datetime | float | None) -> float | None:
    if isinstance(run_at, dt.datetime):
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return run_at.timestamp()
    return run_at


class QueueBase:
    """Holds a queue's name, keys, partitions and options, and builds its operations."""

    def __init__(
        self, name: str, options: QueueOptions | None = None, partitions: int | None = None
    ) -> None:
        self.keys = QueueKeys(name)
        self.name = name
        self.options = options or QueueOptions()
        self.declared_partitions = partitions
        #: The keys of each partition (just ``keys`` for a queue without partitions), known
        #: once the queue has connected and read how many partitions it has.
        self.parts: list[QueueKeys] = [self.keys]
        self._spreader = Spreader(1)

    def _setup_op(self) -> Op[None]:
        """Register the queue and find its partitions (declaring them if asked)."""
        self.parts = yield from partitions.register(self.name, self.declared_partitions)
        self._spreader = Spreader(len(self.parts))

    @property
    def partitioned(self) -> bool:
        """Whether this queue is made of several partitions."""
        return len(self.parts) > 1

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
        partition_key: str | None,
        durable: Durable | None,
    ) -> Op[list[Job]]:
        given = (id, delay, run_at, attempts, timeout, backoff, retention, dedup, group,
                 partition_key)  # fmt: skip
        if given == _NOTHING and type(priority) is int and priority == defaults.PRIORITY:
            # no options: the short way (a JobSpec checks options; here only name and payload)
            if not self.partitioned:
                return ops.enqueue_many(self.keys, [(name, payload)], self.options, durable)
            pair = [(name, payload)]
            return partitions.enqueue(self.parts, self._spreader, pair, self.options, durable)
        spec = JobSpec(
            name, payload, id=id, delay=delay, run_at=_timestamp(run_at), priority=priority,
            attempts=attempts, timeout=timeout, backoff=backoff, retention=retention,
            dedup=dedup, group=group, partition_key=partition_key,
        )  # fmt: skip
        return partitions.enqueue(self.parts, self._spreader, [spec], self.options, durable)

    def _enqueue_many_op(
        self, jobs: Iterable[JobSpec | tuple[str, Any]], durable: Durable | None
    ) -> Op[list[Job]]:
        return partitions.enqueue(self.parts, self._spreader, jobs, self.options, durable)

    def _schedule_op(self, schedule: Schedule) -> Op[float]:
        """Store a schedule in the first partition, registering the queue again on the way
        (it may have been obliterated since this object connected)."""
        _, due = yield from partitions.gather([
            ops.register_again(self.parts[0].queue, len(self.parts)),
            schedules.upsert(self.parts[0], schedule, self.options),
        ])  # fmt: skip
        return cast(float, due)

    def _by_id(self, job_id: str, make: Callable[[QueueKeys], Op[T]], missing: T) -> Op[T]:
        """Run ``make(keys)`` on the partition holding the job; ``missing`` if none does."""
        keys = yield from partitions.owner(self.parts, job_id)
        if keys is None:
            return missing
        return (yield from make(keys))

    def _each(self, make: Callable[[QueueKeys], Op[T]]) -> Op[list[T]]:
        """Run ``make(keys)`` on every partition, side by side."""
        return (yield from partitions.gather([make(keys) for keys in self.parts]))

    def _wait_op(self, job_id: str, timeout: float | None) -> Op[Job]:
        keys = yield from partitions.owner(self.parts, job_id)
        if keys is None:
            raise JobNotFound(f"job {job_id!r} does not exist in queue {self.name!r}")
        return (yield from results.wait_for_job(keys, job_id, timeout))

    def _obliterate_op(self, force: bool) -> Op[None]:
        if self.partitioned and not force:  # refuse before any partition is deleted
            counts = yield from partitions.counts(self.parts)
            if counts.active:
                raise QueueBusyError(
                    f"refusing: {counts.active} jobs of {self.name!r} are active; "
                    "pass force=True to delete them anyway"
                )
        yield from self._each(lambda keys: ops.obliterate(keys, force))
        if self.partitioned:
            yield from partitions.forget(self.name)
            yield from ops.forget_queue(self.name)
