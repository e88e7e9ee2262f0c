"""The asyncio face of a queue: enqueue jobs, read them, and manage the queue."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio

from conveyor import connection, defaults, ops, partitions, results, schedules
from conveyor._queue_base import QueueBase
from conveyor.dead_letters import DeadLetters
from conveyor.events import Event
from conveyor.job import Job, JobState
from conveyor.keys import QueueKeys
from conveyor.metrics import QueueMetrics
from conveyor.ops import Counts, Dedup, Durable, JobSpec, Limits, QueueOptions
from conveyor.retry import Backoff
from conveyor.schedules import Schedule, ScheduleEntry
from conveyor.transport import AsyncTransport

T = TypeVar("T")


class Queue(QueueBase):
    """A named queue, used from asyncio code.

    ``url`` may be ``redis://``, ``rediss://`` or ``unix://``; with neither ``url`` nor
    ``client`` (and no ``CONVEYOR_URL``) the embedded server is used. Nothing connects
    until the first call.

    ``partitions=N`` declares a partitioned queue: N ordinary queues, each in its own
    cluster slot, used as one (see docs/scaling.md). The number is recorded on the server
    at the first call; a queue opened without ``partitions`` finds it there.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None,
        options: QueueOptions | None = None,
        partitions: int | None = None,
    ) -> None:
        super().__init__(name, options, partitions)
        self._url = url
        self._client = client
        self._transport: AsyncTransport | None = None
        self._connecting = asyncio.Lock()  # concurrent first calls share one connection

    @property
    def dead_letters(self) -> DeadLetters:
        """This queue's dead-letter set: list, replay, drop, kill, export, import."""
        return DeadLetters(self)

    async def run_op(self, op: ops.Op[T]) -> T:
        """Run one of conveyor's operations on this queue's connection.

        The seam for conveyor's own faces over a queue (its dead-letter set, the dashboard),
        so they need none of its private parts; application code uses the methods instead.
        """
        return await self._run(op)

    async def connected_parts(self) -> list[QueueKeys]:
        """The keys of each partition, connecting first if needed (see :meth:`run_op`)."""
        return await self._parts()

    async def _run(self, op: ops.Op[T]) -> T:
        transport = self._transport or await self._connect()
        return await transport.run(op)

    async def _parts(self) -> list[QueueKeys]:
        """The keys of each partition, once connected (one for an unpartitioned queue)."""
        if self._transport is None:
            await self._connect()
        return self.parts

    async def _connect(self) -> AsyncTransport:
        async with self._connecting:
            if self._transport is not None:
                return self._transport
            return await self._open()

    async def _open(self) -> AsyncTransport:
        if self._client is not None:
            transport = AsyncTransport(self._client, connection.client_url(self._client))
        else:
            url = await asyncio.to_thread(connection.resolve_url, self._url)
            transport = AsyncTransport(connection.async_client(url), url, lean=True)
        try:
            await transport.run(self._setup_op())
        except BaseException:
            if self._client is None:  # ours: do not leak a pool per failed attempt
                await transport.close()
            raise
        self._transport = transport
        return transport

    async def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        id: str | None = None,
        delay: float | None = None,
        run_at: dt.datetime | float | None = None,
        priority: int = defaults.PRIORITY,
        attempts: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        retention: float | None = None,
        dedup: Dedup | None = None,
        group: str | None = None,
        partition_key: str | None = None,
        durable: Durable | None = None,
    ) -> Job:
        """Add a job for the handler ``name``; a repeated ``id`` returns the existing job.

        ``dedup`` drops (or, with ``debounce``, merges) jobs with the same key within a
        window; see :class:`~conveyor.Dedup`. ``group`` puts the job in a group (a tenant,
        an account): groups are served in turn and can have their own limits. On a
        partitioned queue, jobs with the same ``partition_key`` go to one partition, in order.
        """
        transport = self._transport or await self._connect()
        op = self._enqueue_op(
            name, payload, id=id, delay=delay, run_at=run_at, priority=priority,
            attempts=attempts, timeout=timeout, backoff=backoff, retention=retention,
            dedup=dedup, group=group, partition_key=partition_key, durable=durable,
        )  # fmt: skip
        return (await transport.run(op))[0]

    async def enqueue_many(
        self, jobs: Iterable[JobSpec | tuple[str, Any]], *, durable: Durable | None = None
    ) -> list[Job]:
        """Add many jobs in one round trip."""
        await self._parts()
        return await self._run(self._enqueue_many_op(jobs, durable))

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or ``None``."""
        return await self._run(partitions.find_job(await self._parts(), job_id))

    async def counts(self) -> Counts:
        """How many jobs are in each state, whether the queue is paused, live workers."""
        return await self._run(partitions.counts(await self._parts()))

    async def list_jobs(
        self, state: JobState | str, *, offset: int = 0, limit: int = 50
    ) -> list[Job]:
        """One page of the jobs in ``state`` (merged across partitions)."""
        parts = await self._parts()
        return await self._run(partitions.list_jobs(parts, JobState(state), offset, limit))

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not active; ``False`` if it did not exist."""
        await self._parts()
        op = self._by_id(job_id, lambda keys: ops.remove(keys, job_id, self.options), False)
        return await self._run(op)

    async def cancel(self, job_id: str) -> str | None:
        """Cancel a job from anywhere.

        A waiting or delayed job is cancelled at once (``"cancelled"``). A running job is
        stopped by the worker that holds it within a lock-renewal interval (``"requested"``):
        an ``async def`` handler is cancelled, a plain ``def`` handler sees
        ``ctx.cancelled`` become true; it ends as cancelled and is not retried. A finished
        job is left alone (its state is returned); ``None`` if there is no such job.
        """
        await self._parts()
        op = self._by_id(job_id, lambda keys: ops.cancel(keys, self.options, job_id), None)
        return await self._run(op)

    async def set_priority(self, job_id: str, priority: int) -> bool:
        """Change the priority of a waiting or delayed job."""
        await self._parts()
        op = self._by_id(
            job_id, lambda keys: ops.set_priority(keys, self.options, job_id, priority), False
        )
        return await self._run(op)

    async def reschedule(self, job_id: str, delay: float) -> bool:
        """Make a waiting or delayed job due ``delay`` seconds from now."""
        await self._parts()
        op = self._by_id(
            job_id, lambda keys: ops.reschedule(keys, self.options, job_id, delay), False
        )
        return await self._run(op)

    async def promote(self, job_id: str) -> bool:
        """Run a delayed job now."""
        return await self.reschedule(job_id, 0)

    async def schedule(self, schedule: Schedule) -> float:
        """Create or replace (by id) a schedule; returns its next run time (Unix time).

        A partitioned queue keeps its schedules, and their jobs, in its first partition.
        """
        await self._parts()
        return await self._run(self._schedule_op(schedule))

    async def unschedule(self, schedule_id: str) -> bool:
        """Remove a schedule; ``False`` if there was none."""
        return await self._run(schedules.remove((await self._parts())[0], schedule_id))

    async def schedules(self) -> list[ScheduleEntry]:
        """Every schedule of this queue, with its next run time."""
        return await self._run(schedules.entries((await self._parts())[0]))

    async def set_limits(self, limits: Limits) -> None:
        """Set queue-wide concurrency and rate limits (enforced by the server at fetch).

        On a partitioned queue the limits apply to each partition separately.
        """
        await self._parts()
        await self._run(self._each(lambda keys: ops.set_limits(keys, limits)))

    async def limits(self) -> Limits:
        """The queue's current limits."""
        return await self._run(ops.get_limits((await self._parts())[0]))

    async def pause(self) -> None:
        """Stop workers from starting new jobs of this queue (nothing is lost)."""
        await self._parts()
        await self._run(self._each(lambda keys: ops.pause(keys, self.options)))

    async def resume(self) -> None:
        """Let workers start jobs again."""
        await self._parts()
        await self._run(self._each(lambda keys: ops.resume(keys, self.options)))

    async def drain(self) -> int:
        """Remove every waiting and delayed job; returns how many were removed."""
        await self._parts()
        return sum(await self._run(self._each(lambda keys: ops.drain(keys, self.options))))

    async def obliterate(self, *, force: bool = False) -> None:
        """Delete the queue and all its jobs; refuses while jobs are active unless forced."""
        await self._parts()
        await self._run(self._obliterate_op(force))

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Wait until the job is completed or dead and return it; no polling.

        Raises :class:`~conveyor.ResultTimeout` after ``timeout`` seconds and
        :class:`~conveyor.JobNotFound` if there is no such job.
        """
        await self._parts()
        return await self._run(self._wait_op(job_id, timeout))

    async def result(self, job_id: str, *, timeout: float | None = None) -> Any:
        """Wait for the job and return its handler's return value.

        Raises :class:`~conveyor.JobFailed` (carrying the dead job, its reason and
        history) when the job died, and :class:`~conveyor.ResultTimeout` on timeout.
        """
        return results.unwrap(await self.wait(job_id, timeout=timeout))

    async def events(self, *, last_id: str = "$", block: float = 5.0) -> AsyncIterator[Event]:
        """Every state change of this queue, as it happens, from any process.

        ``last_id="$"`` starts with new events; pass the ``id`` of the last event you saw
        to resume after a disconnect without missing any (while they are still in the
        capped stream), or ``"0"`` for the oldest kept. The events of a partitioned queue
        are merged by time; resuming there may repeat events of the same millisecond.
        """
        parts = await self._parts()
        positions = await self._run(partitions.start_positions(parts, last_id))
        together = self._transport is not None and not connection.is_cluster(self._transport.client)
        while True:
            op = partitions.read_events_of(parts, positions, block=block, together=together)
            for event in await self._run(op):
                yield event

    async def metrics(self, *, window: float = 3600.0) -> QueueMetrics:
        """Counts, throughput per minute, processing-time buckets, ages and live workers."""
        parts = await self._parts()
        return await self._run(partitions.metrics_of_parts(self.name, parts, window))

    async def close(self) -> None:
        """Close the connection this queue opened (not a client that was passed in)."""
        if self._transport is not None and self._client is None:
            await self._transport.close()
        self._transport = None

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
