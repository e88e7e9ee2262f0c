"""A first end-to-end check: a worker completes a job enqueued by a producer."""

from __future__ import annotations

import conveyor
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


async def test_a_job_runs_and_its_result_is_stored(queue: conveyor.Queue, server_url: str) -> None:
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def add(ctx: conveyor.JobContext, payload: dict[str, int]) -> int:
        return payload["a"] + payload["b"]

    async with RunningWorker(worker):
        job = await queue.enqueue("add", {"a": 2, "b": 3})
        done = await wait_for(lambda: _completed(queue, job.id))
    assert done.result == 5
    assert done.attempt == 1


async def _completed(queue: conveyor.Queue, job_id: str) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job and job.state == conveyor.JobState.COMPLETED else None
