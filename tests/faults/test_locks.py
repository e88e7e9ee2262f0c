"""Locks: renewal outlives misbehaving handlers, and a worker that lost a lock cannot settle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

import conveyor
from conveyor import AttemptCause, JobSpec, JobState
from conveyor.keys import QueueKeys
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for
from tests.faults.conftest import LOCK_TTL, Ledger, Workers
from tests.faults.worker_app import Recorder

pytestmark = pytest.mark.faults


@pytest.mark.timeout(90)
async def test_locks_outlive_handlers_that_hog_the_cpu_or_block_the_event_loop(
    queue: conveyor.Queue, workers: Workers, ledger: Ledger, tmp_path: Path
) -> None:
    # The watcher runs beside the misbehaving worker, checking for stalled jobs every
    # 0.5 s; one long job keeps its only slot busy, so it takes none of the others.
    (watcher,) = await workers.start_ready(concurrency=1)
    gate = tmp_path / "gate-open"
    held = await queue.enqueue("gate", {"path": str(gate)})
    await wait_for(lambda: held.id in ledger.started_by(watcher.pid), timeout=30)
    (busy,) = await workers.start_ready(concurrency=10)

    misbehaving = LOCK_TTL * 2.5
    specs = [
        JobSpec("cpu", {"seconds": misbehaving}),  # a thread holding the GIL
        JobSpec("sleepy", {"seconds": 1.0}),  # neighbours, stuck behind the blocked loop
        JobSpec("sleepy", {"seconds": 1.0}),
        JobSpec("blocker", {"seconds": misbehaving}),  # time.sleep in an async def
    ]
    ids = [job.id for job in await queue.enqueue_many(specs)]

    async def done() -> bool:
        return (await queue.counts()).completed == len(ids)

    await wait_for(done, timeout=60)
    assert watcher.alive() and busy.alive()
    gate.touch()

    async def gate_done() -> bool:
        job = await queue.get_job(held.id)
        return job is not None and job.state is JobState.COMPLETED

    await wait_for(gate_done, timeout=30)

    assert ledger.counts() == dict.fromkeys([held.id, *ids], 1)
    assert ledger.started_by(busy.pid) == set(ids)
    for job_id in [held.id, *ids]:
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.state is JobState.COMPLETED
        assert (job.attempt, job.stalls, job.history) == (1, 0, ()), job
    for job_id, spec in zip(ids, specs, strict=True):
        job = await queue.get_job(job_id)
        assert job is not None and job.started_at is not None and job.finished_at is not None
        if spec.name in ("cpu", "blocker"):
            assert job.finished_at - job.started_at >= misbehaving - 0.1  # outlived the TTL


@pytest.mark.timeout(60)
@pytest.mark.parametrize("late_outcome", ["returns", "raises"])
async def test_a_worker_that_lost_its_lock_cannot_settle_the_job(
    queue: conveyor.Queue,
    server_url: str,
    ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
    late_outcome: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    record = Recorder(str(ledger.path))
    release = asyncio.Event()
    tokens: list[str] = []

    async def held(ctx: conveyor.JobContext, payload: Any) -> dict[str, str]:
        record(ctx)
        tokens.append(ctx.token)
        if len(tokens) == 1:  # the first run hangs on until the job was taken from it
            await release.wait()
            if late_outcome == "raises":
                raise RuntimeError("the first run failed, too late")
        return {"token": ctx.token, "worker": ctx.worker_id}

    # The first worker renews nothing and checks for stalls (practically) never during the
    # test, so its lock ends only when the test pushes the deadline into the past.
    first = conveyor.Worker(
        queue.name, url=server_url, handlers={"held": held},
        options=conveyor.WorkerOptions(concurrency=2, lock_ttl=60.0, lock_renew_interval=30.0,
                                       stall_check_interval=3600.0, idle_block=1.0),
    )  # fmt: skip
    rescuer = conveyor.Worker(
        queue.name, url=server_url, handlers={"held": held}, options=WORKER_TEST_OPTIONS
    )
    try:
        async with RunningWorker(first):
            job = await queue.enqueue("held", {})
            await wait_for(lambda: len(tokens) == 1)
            async with redis.asyncio.Redis.from_url(server_url) as client:
                active = QueueKeys(queue.name).key("active")
                assert await client.zadd(active, {job.id: 1}, xx=True, ch=True) == 1

            async with RunningWorker(rescuer):

                async def rerun_completed() -> conveyor.Job | None:
                    stored = await queue.get_job(job.id)
                    return stored if stored and stored.state is JobState.COMPLETED else None

                rerun = await wait_for(rerun_completed)
                release.set()
                refused = {
                    "returns": f"job {job.id} finished after its lock was lost",
                    "raises": f"job {job.id} failed after its lock was lost",
                }[late_outcome]
                await wait_for(lambda: refused in caplog.text)
    finally:
        record.close()

    final = await queue.get_job(job.id)
    assert final is not None and final == rerun  # the late settlement changed nothing
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert ledger.counts() == {job.id: 2}
    assert final.state is JobState.COMPLETED
    assert final.result["token"] == tokens[1]
    assert final.attempt == 2 and final.stalls == 1
    (stalled,) = final.history
    assert (stalled.attempt, stalled.cause, stalled.worker) == (1, AttemptCause.STALLED, first.id)
