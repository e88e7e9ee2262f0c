"""Rolling deploys: a job whose name one worker does not know waits for a worker that does,
and goes dead as ``unknown_job`` only when no live worker has known the name for a grace."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
import redis.asyncio

import conveyor
from conveyor import DeadReason, JobContext, JobState, defaults
from conveyor.cli import main
from conveyor.keys import QueueKeys
from tests.cli_runner import invoke
from tests.conftest import CLUSTER_MODE, WORKER_TEST_OPTIONS, RunningWorker, wait_for


def _worker(queue: conveyor.Queue, url: str, **options: Any) -> conveyor.Worker:
    return conveyor.Worker(
        queue.name, url=url, options=dataclasses.replace(WORKER_TEST_OPTIONS, **options)
    )


def _old_and_new(queue: conveyor.Queue, url: str) -> tuple[conveyor.Worker, conveyor.Worker]:
    """The worker of the last release (``resize`` only) and of the new one (+ ``crop``)."""
    old, new = _worker(queue, url), _worker(queue, url)
    for worker in (old, new):

        @worker.handler
        async def resize(ctx: JobContext, payload: Any) -> str:
            return "resized"

    @new.handler
    async def crop(ctx: JobContext, payload: Any) -> str:
        return ctx.worker_id

    return old, new


async def test_a_job_of_a_new_name_waits_for_the_new_worker_and_costs_no_attempt(
    queue: conveyor.Queue, server_url: str
) -> None:
    old, new = _old_and_new(queue, server_url)
    async with RunningWorker(old):
        # The old worker alone sees the first half (deploys do not start workers at once).
        first = await queue.enqueue_many([conveyor.JobSpec("crop", n) for n in range(50)])
        resized = await queue.enqueue("resize", 0)
        await wait_for(lambda: _state(queue, resized.id, JobState.COMPLETED))
        async with RunningWorker(new):
            second = await queue.enqueue_many([conveyor.JobSpec("crop", n) for n in range(50)])
            ids = [job.id for job in first + second]

            async def all_done() -> bool:
                counts = await queue.counts()
                assert counts.dead == 0, "a job of the new name went dead"
                return counts.completed == len(ids) + 1

            await wait_for(all_done, timeout=60)
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None and job.state is JobState.COMPLETED
        assert job.result == new.id  # never run (nor refused) by the old worker
        assert job.attempt == 1 and not job.history


async def test_grouped_jobs_of_a_new_name_wait_in_their_group_for_the_new_worker(
    queue: conveyor.Queue, server_url: str
) -> None:
    old, new = _old_and_new(queue, server_url)
    async with RunningWorker(old):
        specs = [conveyor.JobSpec("crop", n, group=f"g{n % 3}") for n in range(12)]
        specs += [conveyor.JobSpec("resize", n, group=f"g{n % 3}") for n in range(3)]
        jobs = await queue.enqueue_many(specs)
        await wait_for(lambda: _passed_over(server_url, queue.name, jobs[0].id))
        async with RunningWorker(new):

            async def all_done() -> bool:
                counts = await queue.counts()
                assert counts.dead == 0
                return counts.completed == len(jobs)

            await wait_for(all_done, timeout=60)
    for job in jobs[:12]:
        done = await queue.get_job(job.id)
        assert done is not None and done.result == new.id and done.attempt == 1


async def test_with_no_worker_that_knows_the_name_the_job_is_dead_after_the_grace(
    queue: conveyor.Queue, server_url: str
) -> None:
    old, _ = _old_and_new(queue, server_url)
    old = _worker(queue, server_url, unknown_job_grace=1.0)

    @old.handler
    async def resize(ctx: JobContext, payload: Any) -> str:
        return "resized"

    async with RunningWorker(old):
        job = await queue.enqueue("crop", 1, attempts=3)
        dead = await wait_for(lambda: _state(queue, job.id, JobState.DEAD), timeout=30)
    assert dead.dead_reason is DeadReason.UNKNOWN_JOB
    assert dead.finished_at is not None
    assert dead.finished_at - dead.created_at >= 1.0  # it waited the grace first
    (attempt,) = dead.history
    assert attempt.cause is conveyor.AttemptCause.UNKNOWN_JOB and dead.attempt == 1
    assert "crop" in dead.error.message


async def test_a_busy_live_worker_that_knows_the_name_keeps_the_job_alive(
    queue: conveyor.Queue, server_url: str
) -> None:
    # No grace at all: the job is safe only because a live worker knows its name.
    old = _worker(queue, server_url, unknown_job_grace=0.0)
    new = _worker(queue, server_url, concurrency=1)
    release = asyncio.Event()

    @new.handler
    async def crop(ctx: JobContext, payload: Any) -> str:
        if payload == "hold":
            await release.wait()
        return ctx.worker_id

    async with RunningWorker(new), RunningWorker(old):
        holding = await queue.enqueue("crop", "hold")
        await wait_for(lambda: _state(queue, holding.id, JobState.ACTIVE))
        waiting = await queue.enqueue("crop", "next")
        # The old worker looks at it (it has free slots) and leaves it for the new one.
        await wait_for(lambda: _passed_over(server_url, queue.name, waiting.id))
        assert (await queue.counts()).dead == 0
        async with redis.asyncio.Redis.from_url(server_url) as client:
            info = await client.hget(queue.keys.key("worker_info"), new.id)
        assert info is not None and json.loads(info)["handlers"] == ["crop"]
        release.set()
        done = await wait_for(lambda: _state(queue, waiting.id, JobState.COMPLETED))
    assert done.result == new.id and done.attempt == 1


async def test_a_worker_passing_over_unknown_jobs_does_not_spin(
    queue: conveyor.Queue, server_url: str
) -> None:
    if CLUSTER_MODE:
        return  # the command counters are per node
    old, _ = _old_and_new(queue, server_url)
    async with RunningWorker(old), redis.asyncio.Redis.from_url(server_url) as client:
        job = await queue.enqueue("crop", 1)
        await wait_for(lambda: _passed_over(server_url, queue.name, job.id))
        before = await _script_calls(client)
        await asyncio.sleep(2.0)  # measuring a rate: there is no event to wait for
        calls = await _script_calls(client) - before
    # Heartbeats, stall checks, schedule checks and a fetch per pause: tens, not thousands.
    assert calls < 100, f"{calls} script calls in 2s"
    assert (await queue.get_job(job.id)).state is JobState.WAITING  # type: ignore[union-attr]


async def _state(queue: conveyor.Queue, job_id: str, state: JobState) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job is not None and job.state is state else None


async def _passed_over(url: str, queue: str, job_id: str) -> bool:
    async with redis.asyncio.Redis.from_url(url) as client:
        return bool(await client.hexists(QueueKeys(queue).job(job_id), "unknown_since_ms"))


async def _script_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


@pytest.mark.parametrize("grace", [-1.0, float("nan"), float("inf")])
def test_a_bad_grace_is_refused(grace: float) -> None:
    with pytest.raises(ValueError, match="unknown_job_grace"):
        conveyor.WorkerOptions(unknown_job_grace=grace)


def test_the_grace_is_a_worker_option_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[conveyor.Worker] = []
    monkeypatch.setattr(conveyor.Worker, "run", lambda self: started.append(self))
    result = invoke(main, "worker", "tests.cli_app:worker", "--unknown-job-grace", "12.5")
    assert result.exit_code == 0, result.output
    assert started[0].options.unknown_job_grace == 12.5
    assert conveyor.WorkerOptions().unknown_job_grace == defaults.UNKNOWN_JOB_GRACE
    refused = invoke(main, "worker", "tests.cli_app:worker", "--unknown-job-grace", "-1")
    assert refused.exit_code == 2 and "--unknown-job-grace" in refused.stderr
