"""A worker SIGKILLed mid-job: nothing is lost, and only the interrupted jobs run again."""

from __future__ import annotations

import signal

import pytest

import conveyor
from conveyor import AttemptCause, JobSpec, JobState
from tests.conftest import wait_for
from tests.faults.conftest import LOCK_TTL, STALL_CHECK_INTERVAL, Ledger, Workers

pytestmark = pytest.mark.faults

#: Room for a loaded machine (the rescuer starting up, scheduling) on top of the lock maths.
SLACK = 5.0


def _worker_pid(worker_id: str) -> int:
    return int(worker_id.rsplit(".", 2)[1])  # ids are host.pid.suffix


@pytest.mark.timeout(120)
async def test_sigkill_mid_job_loses_nothing_and_reruns_only_the_interrupted_jobs(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    (victim,) = await workers.start_ready(concurrency=10)
    specs = [JobSpec("sleepy", {"seconds": 0.2 if i % 4 == 0 else 1.5}) for i in range(24)]
    ids = [job.id for job in await queue.enqueue_many(specs)]

    async def in_flight() -> bool:
        started = len(ledger.started_by(victim.pid))
        return started >= 5 and (await queue.counts()).completed >= 2

    await wait_for(in_flight, timeout=60)
    killed_at = victim.send(signal.SIGKILL)
    assert await victim.exited() == -signal.SIGKILL

    started_on_victim = ledger.started_by(victim.pid)
    completed_at_kill = {j.id for j in await queue.list_jobs(JobState.COMPLETED, limit=100)}
    active_at_kill = {j.id for j in await queue.list_jobs(JobState.ACTIVE, limit=100)}
    interrupted = started_on_victim - completed_at_kill
    assert interrupted, "the kill came too late to interrupt anything"
    assert interrupted <= active_at_kill  # a started job is completed or still holds its lock

    (rescuer,) = await workers.start_ready(concurrency=10)

    async def all_completed() -> bool:
        return (await queue.counts()).completed == len(ids)

    await wait_for(all_completed, timeout=60)

    counts = await queue.counts()
    assert (counts.waiting, counts.delayed, counts.active, counts.dead) == (0, 0, 0, 0)
    runs = ledger.by_job()
    assert set(runs) == set(ids)
    for job_id in ids:
        pids = sorted(run.pid for run in runs[job_id])
        if job_id in completed_at_kill:
            assert pids == [victim.pid], f"a completed job ran again: {job_id}"
        elif job_id in interrupted:
            assert pids == sorted([victim.pid, rescuer.pid]), f"{job_id} ran {pids}"
        else:
            assert pids == [rescuer.pid], f"{job_id} ran {pids}"
    assert len(ledger.executions()) == len(ids) + len(interrupted)

    recovered_at = []
    for job_id in active_at_kill:
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.state is JobState.COMPLETED
        assert job.stalls == 1
        assert job.result["pid"] == rescuer.pid
        (stalled,) = job.history
        assert stalled.cause is AttemptCause.STALLED
        assert stalled.attempt == 1 and job.attempt == 2
        assert _worker_pid(stalled.worker) == victim.pid
        recovered_at.append(stalled.ended_at)  # when the stalled recovery claimed it

    recovery = max(recovered_at) - killed_at
    rerun = max(run.at for job_id in interrupted for run in runs[job_id]) - killed_at
    print(f"SIGKILL: {len(interrupted)} interrupted jobs recovered {recovery:.2f}s and "
          f"running again {rerun:.2f}s after the kill")  # fmt: skip
    assert recovery <= LOCK_TTL + STALL_CHECK_INTERVAL + SLACK
    # A first stall is retried at once, at the front of the queue: no backoff to wait.
    assert rerun <= LOCK_TTL + STALL_CHECK_INTERVAL + SLACK
