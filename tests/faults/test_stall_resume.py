"""Interrupted work resumes first: a SIGKILLed worker's jobs run again within 15 s of the kill
with the default lock settings, ahead of however many jobs are waiting."""

from __future__ import annotations

import signal

import pytest

import conveyor
from conveyor import AttemptCause, JobSpec, defaults
from tests.conftest import wait_for
from tests.faults.conftest import Ledger, Workers

pytestmark = pytest.mark.faults

#: What the README promises with the default settings (measured from the kill).
RESUMED_WITHIN = 15.0
DEFAULT_LOCKS = {
    "lock_ttl": defaults.LOCK_TTL,
    "lock_renew_interval": defaults.LOCK_RENEW_INTERVAL,
    "stall_check_interval": defaults.STALL_CHECK_INTERVAL,
}


@pytest.mark.timeout(120)
async def test_a_killed_workers_jobs_run_again_within_15s_ahead_of_1000_waiting_jobs(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    (victim,) = await workers.start_ready(concurrency=4, **DEFAULT_LOCKS)
    slow = await queue.enqueue_many([JobSpec("sleepy", {"seconds": 30.0})] * 4)
    interrupted = {job.id for job in slow}
    await wait_for(lambda: ledger.started_by(victim.pid) == interrupted, timeout=30)
    await queue.enqueue_many([JobSpec("sleepy", {"seconds": 0.5})] * 1000)
    (rescuer,) = await workers.start_ready(concurrency=4, **DEFAULT_LOCKS)
    await wait_for(lambda: ledger.started_by(rescuer.pid), timeout=30)  # busy with the queue

    killed_at = victim.send(signal.SIGKILL)
    assert await victim.exited() == -signal.SIGKILL

    def rerun() -> dict[str, float] | None:
        again = {
            run.job_id: run.at
            for run in ledger.executions()
            if run.pid == rescuer.pid and run.job_id in interrupted
        }
        return again if set(again) == interrupted else None

    again = await wait_for(rerun, timeout=RESUMED_WITHIN + 25, interval=0.1)
    latest = max(again.values()) - killed_at
    waiting = (await queue.counts()).waiting
    print(f"SIGKILL: {len(again)} jobs running again {latest:.2f}s after the kill, "
          f"ahead of {waiting} waiting jobs")  # fmt: skip
    assert latest <= RESUMED_WITHIN
    assert waiting >= 500  # they did not wait for the queue to drain
    for job_id in interrupted:
        job = await queue.get_job(job_id)
        assert job is not None and job.stalls == 1 and job.attempt == 2  # it cost an attempt
        (stalled,) = job.history
        assert stalled.cause is AttemptCause.STALLED


@pytest.mark.timeout(60)
async def test_with_one_attempt_a_job_whose_worker_was_killed_is_dead_and_not_run_again(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    (victim,) = await workers.start_ready(concurrency=1)
    job = await queue.enqueue("sleepy", {"seconds": 30.0}, attempts=1)
    await wait_for(lambda: ledger.started_by(victim.pid) == {job.id}, timeout=30)
    victim.send(signal.SIGKILL)
    assert await victim.exited() == -signal.SIGKILL
    (other,) = await workers.start_ready(concurrency=1)

    async def dead() -> conveyor.Job | None:
        found = await queue.get_job(job.id)
        return found if found is not None and found.state is conveyor.JobState.DEAD else None

    buried = await wait_for(dead, timeout=30)
    assert buried.dead_reason is conveyor.DeadReason.ATTEMPTS_EXHAUSTED
    assert [a.cause for a in buried.history] == [AttemptCause.STALLED]
    assert [run.pid for run in ledger.executions()] == [victim.pid]  # it never ran again
    assert other.alive()
