"""The asyncio face of a queue's dead-letter set: list, replay, drop, kill, export, import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import codec, dlq_ops
from conveyor.dlq_ops import BulkResult, DeadFilter, DeadPage
from conveyor.keys import QueueKeys

if TYPE_CHECKING:
    from conveyor.queue import Queue

_KEEP = object()


class DeadLetters:
    """The dead jobs of one queue (``queue.dead_letters``)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def list(
        self, where: DeadFilter | None = None, *, cursor: int = 0, limit: int = 50
    ) -> DeadPage:
        """A page of dead jobs, newest first, filtered by ``where``."""
        op = dlq_ops.list_dead(self.queue.keys, where or DeadFilter(), cursor, limit)
        return await self.queue._run(op)

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
        queue instead; ``payload`` replaces the payload of a single job (fix, then replay).
        """
        queue = self.queue
        if payload is not _KEEP:
            if ids is None or len(ids) != 1:
                raise ValueError("an edited payload replays exactly one job: pass ids=[id]")
            data = codec.encode(payload, limit=queue.options.max_payload_bytes)
            replayed = await queue._run(dlq_ops.replay(queue.keys, queue.options, ids, data))
            return BulkResult(1, len(replayed), replayed, dry_run=False)
        chosen = await queue._run(dlq_ops.select(queue.keys, ids, where, all))
        target = QueueKeys(to) if to else None
        op = dlq_ops.bulk_replay(
            queue.keys, queue.options, chosen, target=target, rate=rate, dry_run=dry_run
        )
        return await queue._run(op)

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
        chosen = await queue._run(dlq_ops.select(queue.keys, ids, where, all, older_than))
        return await queue._run(dlq_ops.bulk_drop(queue.keys, queue.options, chosen,
                                                  dry_run=dry_run))  # fmt: skip

    async def kill(self, job_id: str) -> bool:
        """Send a waiting or delayed job to the dead-letter set (reason ``killed``)."""
        return await self.queue._run(dlq_ops.kill(self.queue.keys, self.queue.options, job_id))

    async def export(self, path: str | Path, where: DeadFilter | None = None) -> int:
        """Write matching dead jobs to ``path`` as JSON lines; returns how many."""
        lines = await self.queue._run(dlq_ops.export_lines(self.queue.keys, where or DeadFilter()))
        with open(path, "wb") as out:
            for line in lines:
                out.write(line + b"\n")
        return len(lines)

    async def import_(self, path: str | Path) -> int:
        """Read jobs exported by :meth:`export` back into this dead-letter set."""
        imported = 0
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    op = dlq_ops.import_line(self.queue.keys, self.queue.options, line)
                    imported += await self.queue._run(op)
        return imported
