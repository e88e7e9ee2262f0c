"""The asyncio face of a queue's dead-letter set: list, replay, drop, kill, export, import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from conveyor import codec, dlq_ops, dlq_records, partitions
from conveyor.dlq_ops import BulkResult, DeadFilter, DeadPage
from conveyor.keys import QueueKeys
from conveyor.ops import Op, QueueOptions

T = TypeVar("T")
_KEEP = object()


class QueueFace(Protocol):
    """What the dead-letter set needs of its queue (so this module never imports the queue)."""

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> QueueOptions: ...

    async def run_op(self, op: Op[T]) -> T: ...

    async def connected_parts(self) -> list[QueueKeys]: ...


def _kill(parts: list[QueueKeys], options: QueueOptions, job_id: str) -> Op[bool]:
    keys = yield from partitions.owner(parts, job_id)
    if keys is None:
        return False
    return (yield from dlq_ops.kill(keys, options, job_id))


class DeadLetters:
    """The dead jobs of one queue (``queue.dead_letters``)."""

    def __init__(self, queue: QueueFace) -> None:
        self.queue = queue

    async def list(
        self, where: DeadFilter | None = None, *, cursor: int = 0, limit: int = 50
    ) -> DeadPage:
        """A page of dead jobs, newest first, filtered by ``where``."""
        parts = await self.queue.connected_parts()
        return await self.queue.run_op(
            partitions.list_dead(parts, where or DeadFilter(), cursor, limit)
        )

    async def replay(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: DeadFilter | None = None,
        all: bool = False,
        rate: float | None = None,
        dry_run: bool = False,
        to: str | None = None,
        payload: Any = _KEEP,
    ) -> BulkResult:
        """Move dead jobs back to waiting with a fresh attempt budget (ids, filter or all).

        ``rate`` bounds how many jobs per second are moved; ``to`` enqueues them on another
        queue instead (registered, and on the partition each job's partition key or id maps
        to if it is partitioned); ``payload`` replaces the payload of a single job (fix, then
        replay). A job whose stored fields a worker could not run stays dead: the result's
        ``refused`` says why.
        """
        queue = self.queue
        parts = await queue.connected_parts()
        if payload is not _KEEP:
            if ids is None or len(ids) != 1:
                raise ValueError("an edited payload replays exactly one job: pass ids=[id]")
            data = codec.encode(payload, limit=queue.options.max_payload_bytes)
            ((keys, _),) = await queue.run_op(partitions.dead_select(parts, ids, None, False))
            replayed, refused = await queue.run_op(dlq_ops.replay(keys, queue.options, ids, data))
            return BulkResult(1, len(replayed), replayed, refused=refused)
        chosen = await queue.run_op(partitions.dead_select(parts, ids, where, all))
        target = None
        if to is not None and to != queue.name and chosen and not dry_run:
            target = await queue.run_op(partitions.register(to))  # visible, and its partitions
        done = [
            await queue.run_op(
                dlq_ops.bulk_replay(
                    keys, queue.options, found, target=target, rate=rate, dry_run=dry_run
                )
            )
            for keys, found in chosen
        ]
        return partitions.sum_bulk(done, dry_run)

    async def drop(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: DeadFilter | None = None,
        all: bool = False,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> BulkResult:
        """Delete dead jobs for good: ids, a filter, all, or those dead for ``older_than`` s."""
        queue = self.queue
        parts = await queue.connected_parts()
        chosen = await queue.run_op(partitions.dead_select(parts, ids, where, all, older_than))
        done = [
            await queue.run_op(dlq_ops.bulk_drop(keys, queue.options, found, dry_run=dry_run))
            for keys, found in chosen
        ]
        return partitions.sum_bulk(done, dry_run)

    async def kill(self, job_id: str) -> bool:
        """Send a waiting or delayed job to the dead-letter set (reason ``killed``)."""
        parts = await self.queue.connected_parts()
        return await self.queue.run_op(_kill(parts, self.queue.options, job_id))

    async def export(
        self, path: str | Path, where: DeadFilter | None = None, *, overwrite: bool = False
    ) -> int:
        """Write matching dead jobs to ``path`` as JSON lines; returns how many.

        An existing file is refused (``FileExistsError``) unless ``overwrite``.
        """
        parts = await self.queue.connected_parts()
        filter_ = where or DeadFilter()
        each = await self.queue.run_op(
            partitions.gather([dlq_ops.export_lines(keys, filter_) for keys in parts])
        )
        with open(path, "wb" if overwrite else "xb") as out:
            for lines in each:
                for line in lines:
                    out.write(line + b"\n")
        return sum(len(lines) for lines in each)

    async def import_(self, path: str | Path) -> int:
        """Read jobs exported by :meth:`export` back into this dead-letter set.

        Every record is checked before anything is written: if any is bad,
        :class:`~conveyor.DeadImportError` names each bad line and nothing is imported.
        The jobs are then written in batches (up to 500 jobs of one partition), each one
        atomic step; a job whose id exists is skipped, so an interrupted import can simply
        be run again. Returns how many jobs were imported.
        """
        queue = self.queue
        jobs = dlq_records.read_file(path, queue.options)
        parts = await queue.connected_parts()
        imported = 0
        for keys, batch in partitions.import_batches(parts, jobs):
            imported += await queue.run_op(dlq_ops.import_batch(keys, queue.options, batch))
        return imported
