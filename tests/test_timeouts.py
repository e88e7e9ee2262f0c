"""Timeouts hold: a handler that swallows its cancellation or hangs in a thread is recorded as
timed out, gives its slot back at the timeout, and a worker whose abandoned threads pile up
says so (registry, status, metric, log) and stops past a limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor import AttemptCause, Immediate, JobContext, JobState
from conveyor.cli import main
from conveyor.prometheus import QueueCollector
from conveyor.worker.threads import HandlerThreads
from tests.cli_runner import invoke, invoke_json
from tests.conftest import RunningWorker, wait_for
from tests.test_worker import in_state, make_worker

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


async def test_a_swallowed_cancellation_is_a_timeout_and_frees_the_slot_at_the_timeout(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, concurrency=1)
    swallowed = asyncio.Event()
    release = asyncio.Event()
    returned: list[str] = []
    quick_ran: list[bool] = []

    @worker.handler(timeout=0.5, backoff=Immediate())
    async def stubborn(ctx: JobContext, payload: None) -> str:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                swallowed.set()  # and carries on as if nothing happened
            await release.wait()
        returned.append(f"attempt {ctx.attempt}")
        return f"result of attempt {ctx.attempt}"

    @worker.handler
    async def quick(ctx: JobContext, payload: None) -> None:
        quick_ran.append(bool(returned))

    async with RunningWorker(worker):
        job = await queue.enqueue("stubborn", None, attempts=2)
        await wait_for(swallowed.is_set)
        second = await queue.enqueue("quick", None)
        # The only slot was given back at the timeout: the second job runs meanwhile.
        await wait_for(lambda: in_state(queue, second.id, JobState.COMPLETED), timeout=15)
        assert quick_ran == [False] and not returned
        active = await queue.get_job(job.id)
        assert active is not None and active.state is JobState.ACTIVE  # still its attempt 1
        release.set()
        done = await wait_for(lambda: in_state(queue, job.id, JobState.COMPLETED))
    first = done.history[0]
    assert first.cause is AttemptCause.TIMEOUT  # its late return did not complete the job
    assert first.error.type == "JobTimeoutError"
    assert "ignored its cancellation" in first.error.message
    assert done.attempt == 2 and done.result == "result of attempt 2"
    assert returned == ["attempt 1", "attempt 2"]


async def test_a_swallowed_cancellation_with_no_attempt_left_is_dead_as_timeout(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url)

    @worker.handler(timeout=0.2)
    async def stubborn(ctx: JobContext, payload: None) -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.sleep(60)
        return "too late"

    async with RunningWorker(worker):
        job = await queue.enqueue("stubborn", None, attempts=1)
        dead = await wait_for(lambda: in_state(queue, job.id, JobState.DEAD))
    assert dead.history[0].cause is AttemptCause.TIMEOUT
    assert dead.result is None


async def test_a_thread_handler_sees_ctx_cancelled_at_its_timeout(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url)
    give_up = threading.Event()
    seen: list[bool] = []

    @worker.handler(timeout=0.3)
    def polite(ctx: JobContext, payload: None) -> None:
        while not ctx.cancelled and not give_up.wait(0.01):
            pass
        seen.append(ctx.cancelled)

    try:
        async with RunningWorker(worker):
            job = await queue.enqueue("polite", None, attempts=1)
            await wait_for(lambda: seen, timeout=15)
            dead = await wait_for(lambda: in_state(queue, job.id, JobState.DEAD))
    finally:
        give_up.set()
    assert seen == [True]
    assert dead.history[0].cause is AttemptCause.TIMEOUT
    assert dead.dead_reason is conveyor.DeadReason.ATTEMPTS_EXHAUSTED


async def test_hung_threads_are_abandoned_counted_and_replaced(
    queue: conveyor.Queue, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(queue, server_url, concurrency=4)
    release = threading.Event()
    hung = threading.Semaphore(0)
    finished = threading.Semaphore(0)
    good: list[str] = []

    @worker.handler(timeout=0.3, backoff=Immediate())
    def hang(ctx: JobContext, payload: None) -> None:
        hung.release()
        try:
            release.wait(60)
        finally:
            finished.release()

    @worker.handler
    def work(ctx: JobContext, payload: int) -> int:
        good.append(ctx.id)
        return payload

    caplog.set_level(logging.WARNING, logger="conveyor")
    try:
        async with RunningWorker(worker):
            hanging = [(await queue.enqueue("hang", None, attempts=2)).id for _ in range(2)]
            for job_id in hanging:
                await wait_for(lambda job_id=job_id: in_state(queue, job_id, JobState.DEAD))
            # Each timed out twice: 4 threads hang, yet the worker keeps its 4 slots.
            jobs = [await queue.enqueue("work", n) for n in range(5)]
            for job in jobs:
                await wait_for(lambda job=job: in_state(queue, job.id, JobState.COMPLETED),
                               timeout=15)  # fmt: skip
            assert len(good) == 5

            async def registry() -> int:
                (info,) = (await queue.metrics()).workers
                return info.abandoned_threads

            await wait_for(lambda: _equal(registry(), 4))
            status = await asyncio.to_thread(invoke_json, main, "status", queue.name)
            (row,) = status["queues"]
            assert row["abandoned_threads"] == 4
            human = await asyncio.to_thread(invoke, main, "status", queue.name)
            assert "4 handler threads hung past their timeout" in " ".join(human.stdout.split())
            assert _abandoned_metric(await queue.metrics()) == 4.0
            release.set()
            for _ in range(4):
                await asyncio.to_thread(finished.acquire, True, 30)
            # The threads came back: the count goes down with the next heartbeat.
            await wait_for(lambda: _equal(registry(), 0))
    finally:
        release.set()
    warnings = [r.message for r in caplog.records
                if r.levelno == logging.WARNING and "abandoned" in r.message]  # fmt: skip
    assert len(warnings) == 4
    assert sorted(sum(job_id in m for m in warnings) for job_id in hanging) == [2, 2]


async def _equal(value: Any, expected: int) -> bool:
    return bool(await value == expected)


def _abandoned_metric(snapshot: conveyor.QueueMetrics) -> float | None:
    for family in QueueCollector([snapshot]).collect():
        if family.name == "conveyor_abandoned_threads":
            return float(sum(s.value for s in family.samples))
    return None


async def test_past_the_abandoned_thread_limit_the_worker_stops_with_status_1(
    sync_queue: conveyor.SyncQueue, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tests.cli_app:stuck",
             "--queue", sync_queue.name, "--concurrency", "2", "--max-abandoned-threads", "1"],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        ids = [sync_queue.enqueue("hang", None, attempts=1, timeout=0.3).id for _ in range(2)]
        await wait_for(lambda: proc.poll() is not None, timeout=45, interval=0.05)
        assert proc.returncode == 1, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = log.read_text()
    assert "2 handler threads are stuck past their timeout (limit 1," in text
    assert "exiting with 2 handler threads still running (exit status 1" in text
    assert "Traceback" not in text
    for job_id in ids:
        job = sync_queue.get_job(job_id)
        assert job is not None and job.state is JobState.DEAD
        assert job.history[0].cause is AttemptCause.TIMEOUT
    assert sync_queue.counts().workers == 0  # it unregistered: a graceful stop


def test_the_thread_pool_replaces_an_abandoned_thread_and_forgets_it_when_it_returns() -> None:
    pool = HandlerThreads(1, "test-threads")
    release = threading.Event()
    started = threading.Event()

    def hang() -> str:
        started.set()
        release.wait(30)
        return "late"

    try:
        hung = pool.submit(hang)
        assert started.wait(30)
        queued = pool.submit(threading.current_thread)  # no thread free: it waits
        assert not queued.done()
        assert pool.abandon(hung) and pool.abandoned == 1
        assert not pool.abandon(hung)  # once
        replacement = queued.result(timeout=30)  # a fresh thread took it
        assert replacement.name.startswith("test-threads_")
        release.set()
        assert hung.result(timeout=30) == "late"
        assert not pool.abandon(hung)  # it returned: nothing to abandon
        deadline = time.monotonic() + 30
        while pool.abandoned and time.monotonic() < deadline:
            time.sleep(0.01)  # the count drops right after the result is set
        assert pool.abandoned == 0
        assert pool.submit(lambda: 42).result(timeout=30) == 42
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("test-threads_")]


async def test_serve_raises_worker_stuck_error_past_the_limit(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, concurrency=2, max_abandoned_threads=0)
    release = threading.Event()

    @worker.handler(timeout=0.2)
    def hang(ctx: JobContext, payload: None) -> None:
        release.wait(60)

    try:
        serving = asyncio.create_task(worker.serve())
        job = await queue.enqueue("hang", None, attempts=1)
        with pytest.raises(conveyor.WorkerStuckError, match=r"1 handler threads .* \(limit 0"):
            await asyncio.wait_for(serving, 30)
    finally:
        release.set()
    dead = await queue.get_job(job.id)
    assert dead is not None and dead.history[0].cause is AttemptCause.TIMEOUT
    assert (await queue.counts()).workers == 0


def test_max_abandoned_threads_is_checked_and_reaches_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="max_abandoned_threads must be an integer >= 0"):
            conveyor.WorkerOptions(max_abandoned_threads=bad)  # type: ignore[arg-type]
    assert conveyor.WorkerOptions().max_abandoned_threads == conveyor.defaults.MAX_ABANDONED_THREADS
    started: list[conveyor.Worker] = []
    monkeypatch.setattr(conveyor.Worker, "run", lambda self: started.append(self))
    result = invoke(main, "worker", "tests.cli_app:stuck", "--max-abandoned-threads", "3")
    assert result.exit_code == 0, result.output
    assert started[0].options.max_abandoned_threads == 3
    refused = invoke(main, "worker", "tests.cli_app:stuck", "--max-abandoned-threads", "-1")
    assert refused.exit_code == 2 and "--max-abandoned-threads" in refused.stderr


async def test_a_handler_that_ignores_the_shutdown_does_not_hold_its_job(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(conveyor.defaults, "SHUTDOWN_CANCEL_WAIT", 0.5)
    worker = make_worker(queue, server_url, shutdown_grace=0.2)
    started, release, returned = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @worker.handler(timeout=60)
    async def deaf(ctx: JobContext, payload: None) -> None:
        started.set()
        while not release.is_set():  # swallows every cancellation until the test is done
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        returned.set()

    serving = asyncio.create_task(worker.serve())
    job = await queue.enqueue("deaf", None)
    await asyncio.wait_for(started.wait(), 30)
    worker.stop()
    try:
        await asyncio.wait_for(asyncio.shield(serving), 30)  # the stop is not held up
        handed_back = await queue.get_job(job.id)
        assert handed_back is not None and handed_back.state is JobState.WAITING
        assert handed_back.attempt == 0  # a hand-back spends no attempt
        assert "did not stop within" in caplog.text
    finally:
        release.set()
        await asyncio.wait_for(serving, 30)
    await asyncio.wait_for(returned.wait(), 30)
    # The late return records nothing: its job was handed back.
    await wait_for(lambda: "returned after the worker stopped" in caplog.text)
    after = await queue.get_job(job.id)
    assert after is not None and after.state is JobState.WAITING and after.attempt == 0
