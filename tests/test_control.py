"""Controlling jobs: deduplication and debounce, cancellation in every state, priorities."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import conveyor
from conveyor import Dedup, JobContext, JobState
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


async def test_throttle_returns_the_existing_job_within_the_window(
    queue: conveyor.Queue,
) -> None:
    first = await queue.enqueue("sync_contacts", {"user": 1}, dedup=Dedup("user-1", 60))
    again = await queue.enqueue("sync_contacts", {"user": 1, "v": 2}, dedup=Dedup("user-1", 60))
    other = await queue.enqueue("sync_contacts", {"user": 2}, dedup=Dedup("user-2", 60))
    assert again.id == first.id and again.payload == {"user": 1}
    assert other.id != first.id
    assert (await queue.counts()).waiting == 2
    # The key outlives the job: removing the job early does not reopen the window.
    await queue.remove(first.id)
    after = await queue.enqueue("sync_contacts", {"user": 1}, dedup=Dedup("user-1", 60))
    assert after.id != first.id  # the holder is gone, so a new job is made ...
    held = await queue.enqueue("sync_contacts", {"user": 1}, dedup=Dedup("user-1", 60))
    assert held.id == after.id  # ... and the key points at it from then on


async def test_debounce_replaces_the_payload_and_pushes_the_start_back(
    queue: conveyor.Queue,
) -> None:
    window = Dedup("reindex-42", 30, debounce=True)
    first = await queue.enqueue("reindex", {"rev": 1}, dedup=window)
    assert first.state is JobState.DELAYED
    stored = await queue.get_job(first.id)
    second = await queue.enqueue("reindex", {"rev": 2}, dedup=window)
    assert second.id == first.id and second.payload == {"rev": 2}
    assert second.due_at is not None and stored is not None and stored.due_at is not None
    assert second.due_at >= stored.due_at
    assert (await queue.counts()).delayed == 1


def cancellable_worker(queue: conveyor.Queue, url: str, started: list[str]) -> conveyor.Worker:
    worker = conveyor.Worker(queue.name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def long_async(ctx: JobContext, payload: Any) -> str:
        started.append(ctx.id)
        await asyncio.sleep(60)
        return "not reached"

    @worker.handler
    def long_sync(ctx: JobContext, payload: Any) -> str:
        started.append(ctx.id)
        stop = threading.Event()
        while not ctx.cancelled and not stop.wait(0.05):
            pass
        return "stopped early"

    @worker.handler
    async def quick(ctx: JobContext, payload: Any) -> int:
        return 1

    return worker


async def test_cancel_in_every_state(queue: conveyor.Queue, server_url: str) -> None:
    waiting = await queue.enqueue("quick", 1)
    delayed = await queue.enqueue("quick", 1, delay=3600)
    assert await queue.cancel(waiting.id) == "cancelled"
    assert await queue.cancel(delayed.id) == "cancelled"
    assert await queue.cancel("no-such-job") is None
    started: list[str] = []
    async with RunningWorker(cancellable_worker(queue, server_url, started)):
        done = await queue.enqueue("quick", 1)
        await queue.wait(done.id, timeout=30)
        assert await queue.cancel(done.id) == "completed"  # finished jobs are left alone
        for name in ("long_async", "long_sync"):
            job = await queue.enqueue(name, None, attempts=3)
            await wait_for(lambda job=job: job.id in started)
            assert await queue.cancel(job.id) == "requested"
            with pytest.raises(conveyor.JobCancelled):
                await queue.result(job.id, timeout=30)
            stopped = await queue.get_job(job.id)
            assert stopped is not None and stopped.state is JobState.CANCELLED
            assert stopped.attempt == 1 and not stopped.history  # not retried, not a failure
    counts = await queue.counts()
    assert (counts.cancelled, counts.waiting, counts.delayed, counts.active) == (4, 0, 0, 0)
    assert {j.id for j in await queue.list_jobs("cancelled")} >= {waiting.id, delayed.id}


async def test_priority_and_delay_can_change_while_waiting(queue: conveyor.Queue) -> None:
    a, b, c = await queue.enqueue_many([("a", 0), ("b", 0), ("c", 0)])
    assert await queue.set_priority(c.id, 10)
    assert [j.name for j in await queue.list_jobs("waiting")] == ["c", "a", "b"]
    assert (await queue.get_job(c.id)).priority == 10  # type: ignore[union-attr]
    assert await queue.reschedule(a.id, 3600)
    assert (await queue.get_job(a.id)).state is JobState.DELAYED  # type: ignore[union-attr]
    assert await queue.promote(a.id)
    assert (await queue.get_job(a.id)).state is JobState.WAITING  # type: ignore[union-attr]
    assert not await queue.set_priority("missing", 1)
    await queue.cancel(b.id)
    with pytest.raises(conveyor.JobStateError):
        await queue.set_priority(b.id, 5)
