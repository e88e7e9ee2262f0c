"""SIGTERM mid-job: active jobs finish within the grace period, or are handed back at once."""

from __future__ import annotations

import signal
import time

import pytest

import conveyor
from conveyor import JobSpec, JobState
from tests.conftest import wait_for
from tests.faults.conftest import Ledger, Workers

pytestmark = pytest.mark.faults

SLACK = 4.0


async def _all_completed(queue: conveyor.Queue, ids: list[str]) -> None:
    async def done() -> bool:
        return (await queue.counts()).completed == len(ids)

    await wait_for(done, timeout=60)


@pytest.mark.timeout(90)
async def test_sigterm_lets_active_jobs_finish_within_the_grace_period(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    (first,) = await workers.start_ready(concurrency=5, shutdown_grace=10.0)
    specs = [JobSpec("sleepy" if i % 2 else "sleepy_sync", {"seconds": 1.0}) for i in range(15)]
    ids = [job.id for job in await queue.enqueue_many(specs)]
    await wait_for(lambda: len(ledger.started_by(first.pid)) >= 5, timeout=30)

    stopped_at = first.send(signal.SIGTERM)
    assert await first.exited(timeout=30) == 0
    exited_at = time.time()

    finished_by_first = ledger.started_by(first.pid)
    assert len(finished_by_first) == 5
    assert all(run.at < stopped_at for run in ledger.executions()), "started after SIGTERM"
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None
        if job_id in finished_by_first:
            assert job.state is JobState.COMPLETED, job
            assert job.result["pid"] == first.pid
            assert job.finished_at is not None and job.finished_at <= exited_at
        else:
            assert (job.state, job.attempt) == (JobState.WAITING, 0), job

    (second,) = await workers.start_ready(concurrency=5)
    await _all_completed(queue, ids)

    assert ledger.counts() == dict.fromkeys(ids, 1)  # 0 lost, 0 duplicated
    assert ledger.started_by(second.pid) == set(ids) - finished_by_first
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None
        assert (job.attempt, job.stalls, job.history) == (1, 0, ())


@pytest.mark.timeout(90)
async def test_sigterm_hands_back_jobs_longer_than_the_grace_period(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    grace = 1.0
    (first,) = await workers.start_ready(concurrency=4, shutdown_grace=grace)
    specs = [JobSpec("sleepy" if i % 2 else "sleepy_sync", {"seconds": 5.0}) for i in range(4)]
    ids = [job.id for job in await queue.enqueue_many(specs)]
    await wait_for(lambda: len(ledger.started_by(first.pid)) == 4, timeout=30)

    stopped_at = first.send(signal.SIGTERM)

    async def handed_back() -> list[conveyor.Job]:
        jobs = [await queue.get_job(job_id) for job_id in ids]
        waiting = [job for job in jobs if job is not None and job.state is JobState.WAITING]
        return waiting if len(waiting) == len(ids) else []

    # No other worker runs, and the locks (2 s) would keep the jobs active far longer:
    # only the release at shutdown puts them back in waiting.
    jobs = await wait_for(handed_back, timeout=30)
    handed_back_after = time.time() - stopped_at
    assert handed_back_after <= grace + SLACK
    for job in jobs:
        assert (job.attempt, job.stalls, job.history) == (0, 0, ()), job  # no attempt spent
    assert await first.exited(timeout=30) == 0
    exited_after = time.time() - stopped_at
    print(f"SIGTERM: jobs handed back {handed_back_after:.2f}s after the signal, "
          f"worker exited after {exited_after:.2f}s")  # fmt: skip

    (second,) = await workers.start_ready(concurrency=4)
    await _all_completed(queue, ids)

    runs = ledger.by_job()
    for job_id in ids:
        assert sorted(run.pid for run in runs[job_id]) == sorted([first.pid, second.pid])
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.result["pid"] == second.pid
        assert (job.attempt, job.stalls, job.history) == (1, 0, ())


@pytest.mark.timeout(90)
async def test_sigint_stops_a_worker_gracefully_like_sigterm(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger
) -> None:
    (first,) = await workers.start_ready(concurrency=2, shutdown_grace=10.0)
    specs = [JobSpec("sleepy" if i % 2 else "sleepy_sync", {"seconds": 1.0}) for i in range(6)]
    ids = [job.id for job in await queue.enqueue_many(specs)]
    await wait_for(lambda: len(ledger.started_by(first.pid)) >= 2, timeout=30)

    stopped_at = first.send(signal.SIGINT)  # Ctrl-C
    assert await first.exited(timeout=30) == 0
    assert "Traceback" not in first.output() and "KeyboardInterrupt" not in first.output()

    finished_by_first = ledger.started_by(first.pid)
    assert len(finished_by_first) == 2
    assert all(run.at < stopped_at for run in ledger.executions()), "started after SIGINT"
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None
        if job_id in finished_by_first:
            assert job.state is JobState.COMPLETED, job  # finished within the grace
        else:
            assert (job.state, job.attempt) == (JobState.WAITING, 0), job


@pytest.mark.timeout(90)
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_a_second_signal_hands_back_active_jobs_at_once_to_the_front(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger, second: signal.Signals
) -> None:
    grace = 60.0  # far longer than the test may wait: only the second signal ends it
    (first,) = await workers.start_ready(concurrency=4, shutdown_grace=grace)
    specs = [JobSpec("sleepy" if i % 2 else "sleepy_sync", {"seconds": 30.0}) for i in range(4)]
    active = [job.id for job in await queue.enqueue_many(specs)]
    await wait_for(lambda: len(ledger.started_by(first.pid)) == 4, timeout=30)
    behind = [job.id for job in await queue.enqueue_many([JobSpec("record", n) for n in range(3)])]

    first.send(signal.SIGTERM)
    await wait_for(lambda: "stopping: finishing active jobs" in first.output(), timeout=30)
    assert first.alive()  # in its grace period, the jobs still running
    stopped_at = first.send(second)
    assert await first.exited(timeout=30) == 0
    exited_after = time.time() - stopped_at
    assert exited_after < grace / 2, exited_after  # at once, not at the end of the grace
    assert "second signal: stopping now" in first.output()

    # Waiting again, ahead of the jobs that were waiting already, with no attempt spent.
    waiting = await queue.list_jobs(JobState.WAITING, limit=10)
    assert set(job.id for job in waiting[:4]) == set(active), waiting
    assert [job.id for job in waiting[4:]] == behind
    for job in waiting[:4]:
        assert (job.attempt, job.stalls, job.history) == (0, 0, ()), job
    assert ledger.counts() == dict.fromkeys(active, 1)  # none ran to the end, none ran twice
