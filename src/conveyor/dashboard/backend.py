"""One dashboard's connection to the server and the reads its pages make.

The connection is made on first use, inside the event loop serving requests (which may be
a test client's or a host application's), and made again if that loop changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

import msgspec
import redis.asyncio

from conveyor import connection, ops, partitions
from conveyor.dashboard import reads
from conveyor.events import Event
from conveyor.job import Job, JobState
from conveyor.keys import PARTITION_SEPARATOR, QueueKeys, logical_name, validate_queue_name
from conveyor.metrics import QueueMetrics, WorkerInfo
from conveyor.ops import Op
from conveyor.queue import Queue
from conveyor.transport import AsyncTransport

T = TypeVar("T")

#: Seconds of per-minute throughput the overview charts (the scripts keep 6 h by default).
CHART_WINDOW = 3 * 3600.0


class UnknownQueue(LookupError):
    """The dashboard does not show a queue of that name."""


def as_logical(name: str, partitioned: dict[str, int]) -> str:
    """The queue that ``name`` is a partition of, else ``name`` itself.

    ``partitioned`` maps each partitioned queue to its number of partitions.
    """
    queue = logical_name(name)
    index = name[len(queue) + len(PARTITION_SEPARATOR) :]
    if index.isdigit() and int(index) < partitioned.get(queue, 0):
        return queue
    return name


class Backend:
    """Reads and commands of one dashboard app, over its own connection."""

    def __init__(self, url: str | None, queues: Sequence[str] | None) -> None:
        self._url = url
        self._resolved: str | None = None
        self.queues = tuple(validate_queue_name(q) for q in queues) if queues else None
        self._transport: AsyncTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._faces: dict[str, Queue] = {}

    async def transport(self) -> AsyncTransport:
        """The connection for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._transport is None or self._loop is not loop:
            if self._resolved is None:
                self._resolved = await asyncio.to_thread(connection.resolve_url, self._url)
            if self._transport is None or self._loop is not loop:
                client = connection.async_client(self._resolved)
                self._transport = AsyncTransport(client, self._resolved)
                self._loop = loop
                self._faces = {}  # faces of another loop are dropped with their client
        return self._transport

    async def run(self, op: Op[T]) -> T:
        """Run one operation."""
        return await (await self.transport()).run(op)

    async def close(self) -> None:
        """Close the connection, if the loop that made it is the running one."""
        if self._transport is not None and self._loop is asyncio.get_running_loop():
            for face in self._faces.values():
                await face.close()  # closes only the connections a queue made itself
            await self._transport.close()
        self._transport = None
        self._faces = {}

    async def queue_names(self) -> list[str]:
        """The queues shown: the configured ones, else every known queue."""
        if self.queues is not None:
            return list(self.queues)
        known = await self.run(ops.known_queues())
        partitioned = await self.run(partitions.partitioned_queues())
        # A partition opened by its own name is registered too: show its queue instead.
        return sorted({as_logical(name, partitioned) for name in known})

    async def queue(self, name: str) -> Queue:
        """The async face of a shown queue; :class:`UnknownQueue` for any other name."""
        try:
            validate_queue_name(name)
        except ValueError:
            raise UnknownQueue(name) from None
        transport = await self.transport()
        face = self._faces.get(name)
        if face is not None:
            return face
        shown = name in self.queues if self.queues is not None else None
        if shown is None:
            shown = await transport.run(reads.queue_known(name))
        if not shown:
            raise UnknownQueue(name)
        client = transport.client
        if isinstance(client, redis.asyncio.Redis):
            face = Queue(name, client=client)
        else:  # a cluster client: the queue makes its own
            face = Queue(name, url=transport.url)
        self._faces[name] = face
        return face

    async def parts(self, name: str) -> list[QueueKeys]:
        """The keys of each partition of a shown queue (one for an unpartitioned queue)."""
        return await (await self.queue(name)).connected_parts()

    async def metrics(self, name: str, window: float) -> QueueMetrics:
        """One queue's metrics over ``window`` seconds."""
        return await self.run(partitions.logical_metrics(name, window))

    async def all_metrics(self, window: float) -> list[QueueMetrics]:
        """Every shown queue's metrics."""
        return await self.run(partitions.metrics_of(await self.queue_names(), window))

    async def workers(self) -> list[WorkerInfo]:
        """Every live worker of the shown queues, once each; partitions named as their queue."""
        seen: dict[str, WorkerInfo] = {}
        for snapshot in await self.all_metrics(60.0):
            for worker in snapshot.workers:
                seen.setdefault(worker.id, worker)
        partitioned = await self.run(partitions.partitioned_queues())
        return [
            msgspec.structs.replace(
                w, queues=list(dict.fromkeys(as_logical(q, partitioned) for q in w.queues))
            )
            for w in sorted(seen.values(), key=lambda w: w.id)
        ]

    async def jobs_page(
        self, name: str, state: JobState, cursor: str, limit: int, job_name: str = ""
    ) -> reads.JobsPage:
        """A page of one queue's jobs in ``state``, from ``cursor`` as a page handed it out
        (``ValueError`` if it is not one); a partitioned queue's pages are merged."""
        parts = await self.parts(name)
        if len(parts) == 1:
            offset = reads.parse_offset(cursor)
            return await self.run(reads.jobs_page(parts[0], state, offset, limit, job_name))
        positions = reads.parse_positions(cursor, len(parts))
        return await self.run(reads.parts_page(parts, state, positions, limit, job_name))

    async def job(self, name: str, job_id: str) -> tuple[Job | None, list[Event]]:
        """A job and its timeline (events among the newest of its queue, or partition)."""
        queue = await self.queue(name)
        job = await queue.get_job(job_id)
        if job is None:
            return None, []
        return job, await self.run(reads.job_events(QueueKeys(job.queue), job_id))
