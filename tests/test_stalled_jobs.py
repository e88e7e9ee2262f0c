"""A job recovered from a stalled worker resumes first: at the front of its priority, at
once on its first stall (the fault tier kills real workers: tests/faults/test_stall_resume.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import conveyor
from conveyor import AttemptCause, JobContext, connection
from conveyor.transport import SyncTransport
from conveyor.worker import calls
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

FILL = 50


def _take_and_die(queue: conveyor.Queue, url: str) -> str:
    """Fetch one job as a worker that dies at once (its lock lasts a millisecond)."""
    transport = SyncTransport(connection.sync_client(url), url)
    try:
        fetch = calls.fetch(
            queue.keys, queue.options, 1, "gone", "gone.0", 1, names=["work"],
            unknown_job_grace=0.0,
        )  # fmt: skip
        (reply,) = transport.execute([fetch])
        (claim,) = calls.parse_fetch(queue.name, reply).claims
    finally:
        transport.close()
    return claim.id


async def test_a_stalled_job_runs_again_ahead_of_the_jobs_waiting(
    queue: conveyor.Queue, server_url: str
) -> None:
    stalled = (await queue.enqueue("work", "stalled")).id
    assert _take_and_die(queue, server_url) == stalled
    await queue.enqueue_many([conveyor.JobSpec("work", n) for n in range(FILL)])
    options = dataclasses.replace(WORKER_TEST_OPTIONS, concurrency=1)
    worker = conveyor.Worker(queue.name, url=server_url, options=options)
    order: list[str] = []

    @worker.handler
    async def work(ctx: JobContext, payload: Any) -> None:
        order.append(ctx.id)
        await asyncio.sleep(0.05)

    async with RunningWorker(worker):
        await wait_for(lambda: len(order) == FILL + 1, timeout=60)
    # Found within a stall check (0.5 s, some ten jobs): then it runs next, not last.
    assert order.index(stalled) < FILL - 10, f"ran {order.index(stalled) + 1}th of {FILL + 1}"
    job = await queue.get_job(stalled)
    assert job is not None and job.attempt == 2 and job.stalls == 1
    assert [a.cause for a in job.history] == [AttemptCause.STALLED]
