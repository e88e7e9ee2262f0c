"""Groups: fair fetch across group keys, and per-group concurrency and rate limits."""

from __future__ import annotations

import asyncio
from typing import Any

import conveyor
from conveyor import JobContext, JobSpec, JobState, Limits
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


def recording_worker(queue: conveyor.Queue, url: str, log: list[tuple[str, str]],
                     running: dict[str, int], peaks: dict[str, int],
                     seconds: float = 0.0) -> conveyor.Worker:  # fmt: skip
    worker = conveyor.Worker(queue.name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def work(ctx: JobContext, payload: dict[str, Any]) -> None:
        group = payload["group"]
        running[group] = running.get(group, 0) + 1
        peaks[group] = max(peaks.get(group, 0), running[group])
        log.append((group, ctx.id))
        await asyncio.sleep(seconds)
        running[group] -= 1

    return worker


async def test_a_noisy_group_does_not_starve_a_quiet_one(
    queue: conveyor.Queue, server_url: str
) -> None:
    noisy = [JobSpec("work", {"group": "noisy"}, group="noisy") for _ in range(10_000)]
    for start in range(0, len(noisy), 2000):
        await queue.enqueue_many(noisy[start : start + 2000])
    quiet = await queue.enqueue("work", {"group": "quiet"}, group="quiet")
    assert (await queue.counts()).waiting == 10_001
    log: list[tuple[str, str]] = []
    async with RunningWorker(recording_worker(queue, server_url, log, {}, {})):
        await queue.wait(quiet.id, timeout=60)
    position = [job_id for _, job_id in log].index(quiet.id)
    # Served in turn: the quiet group's only job runs within the first couple of rounds,
    # not after the 10,000 jobs enqueued before it.
    assert position <= 2 * WORKER_TEST_OPTIONS.concurrency
    assert (await queue.get_job(quiet.id)).group == "quiet"  # type: ignore[union-attr]


async def test_per_group_concurrency_is_never_exceeded(
    queue: conveyor.Queue, server_url: str
) -> None:
    await queue.set_limits(Limits(group_concurrency=2))
    assert (await queue.limits()).group_concurrency == 2
    jobs = await queue.enqueue_many(
        [JobSpec("work", {"group": g}, group=g) for g in ("a", "b", "c") for _ in range(6)]
    )
    log: list[tuple[str, str]] = []
    peaks: dict[str, int] = {}
    async with RunningWorker(recording_worker(queue, server_url, log, {}, peaks, 0.05)):
        for job in jobs:
            await queue.wait(job.id, timeout=60)
    assert peaks == {"a": 2, "b": 2, "c": 2}  # 10 slots, but at most 2 per group


async def test_grouped_jobs_in_every_operation(queue: conveyor.Queue, server_url: str) -> None:
    kept, cancelled, removed, moved = await queue.enqueue_many(
        [JobSpec("work", {"group": "g"}, group="g") for _ in range(4)]
    )
    assert await queue.cancel(cancelled.id) == "cancelled"
    assert await queue.remove(removed.id)
    assert await queue.set_priority(moved.id, 5)
    assert await queue.reschedule(moved.id, 3600)
    counts = await queue.counts()
    assert (counts.waiting, counts.delayed, counts.cancelled) == (1, 1, 1)
    assert await queue.promote(moved.id)
    log: list[tuple[str, str]] = []
    async with RunningWorker(recording_worker(queue, server_url, log, {}, {})):
        await wait_for(lambda: len(log) == 2)
    assert [job_id for _, job_id in log] == [moved.id, kept.id]  # priority 5 first
    assert (await queue.get_job(kept.id)).state is JobState.COMPLETED  # type: ignore[union-attr]
    await queue.enqueue_many([JobSpec("work", {"group": "h"}, group="h") for _ in range(3)])
    assert await queue.drain() == 3
    assert (await queue.counts()).waiting == 0
