"""N workers x M jobs with no crash: every job runs, and runs exactly once."""

from __future__ import annotations

import pytest

import conveyor
from conveyor import JobSpec, JobState, QueueOptions
from tests.conftest import wait_for
from tests.faults.conftest import Ledger, Workers

pytestmark = pytest.mark.faults

WORKERS = 3
JOBS = 3000
#: Keep every completed job, so the final check can read them all.
KEEP_ALL = QueueOptions(completed_keep_count=100_000)


@pytest.mark.timeout(120)
async def test_many_workers_complete_every_job_exactly_once(
    queue: conveyor.Queue, server_url: str, workers: Workers, ledger: Ledger
) -> None:
    processes = await workers.start_ready(WORKERS, concurrency=20, completed_keep_count=100_000)
    ids: list[str] = []
    async with conveyor.Queue(queue.name, url=server_url, options=KEEP_ALL) as producer:
        for start in range(0, JOBS, 500):
            batch = [JobSpec("record", {"n": n}) for n in range(start, start + 500)]
            ids += [job.id for job in await producer.enqueue_many(batch)]

        async def all_completed() -> bool:
            return (await producer.counts()).completed == JOBS

        await wait_for(all_completed, timeout=90, interval=0.1)
        counts = await producer.counts()
        completed = await producer.list_jobs(JobState.COMPLETED, limit=2 * JOBS)

    assert (counts.waiting, counts.delayed, counts.active, counts.dead) == (0, 0, 0, 0)
    assert {job.id for job in completed} == set(ids)
    assert all((job.attempt, job.stalls) == (1, 0) for job in completed)
    runs = ledger.counts()
    assert len(runs) == JOBS and set(runs) == set(ids), "a job was lost"
    assert {job_id for job_id, n in runs.items() if n > 1} == set(), "a job ran twice"
    by_worker = {p.pid: len(ledger.started_by(p.pid)) for p in processes}
    assert sum(by_worker.values()) == JOBS
    print(f"exactly once: {JOBS} jobs, executions per worker {by_worker}")
    assert all(by_worker.values()), f"a worker got no job: {by_worker}"
