"""Seeing what happens: events, waiting for results, progress and logs, metrics, workers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

import conveyor
from conveyor import Fixed, JobContext, JobState
from conveyor.worker.log_context import JobLogFilter, JsonFormatter
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


def make_worker(queue: conveyor.Queue, url: str) -> conveyor.Worker:
    worker = conveyor.Worker(queue.name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def ok(ctx: JobContext, payload: Any) -> Any:
        return payload

    @worker.handler(backoff=Fixed(0.05))
    async def flaky(ctx: JobContext, payload: Any) -> str:
        if ctx.attempt < 2:
            raise RuntimeError("first try fails")
        return "second try"

    @worker.handler
    async def broken(ctx: JobContext, payload: Any) -> None:
        raise ValueError("always")

    @worker.handler
    async def slow(ctx: JobContext, payload: Any) -> None:
        await asyncio.sleep(30)

    @worker.handler
    def chatty(ctx: JobContext, payload: int) -> str:
        for step in range(payload):
            ctx.log(f"step {step} of {payload}")
            ctx.progress({"done": step + 1, "of": payload})
        logging.getLogger("myapp").info("chatty finished")
        return "talked"

    return worker


async def collect_until(
    queue: conveyor.Queue, last_id: str, job_id: str, final: str
) -> list[conveyor.Event]:
    seen: list[conveyor.Event] = []

    async def read() -> None:
        async for event in queue.events(last_id=last_id, block=1.0):
            if event.job_id == job_id:
                seen.append(event)
                if event.event == final:
                    return

    await asyncio.wait_for(read(), 30)
    return seen


async def test_events_follow_each_lifecycle_path(queue: conveyor.Queue, server_url: str) -> None:
    start = (await queue.enqueue("ok", 0)).id  # something in the stream to start after
    position = "0"
    async for event in queue.events(last_id="0", block=0.1):
        position = event.id
        if event.job_id == start:
            break
    async with RunningWorker(make_worker(queue, server_url)):
        done = await queue.enqueue("ok", 1)
        assert [e.event for e in await collect_until(queue, position, done.id, "completed")] == [
            "added", "active", "completed",
        ]  # fmt: skip
        retried = await queue.enqueue("flaky", 1)
        names = [e.event for e in await collect_until(queue, position, retried.id, "completed")]
        assert names == ["added", "active", "failed", "retrying", "delayed", "waiting", "active",
                         "completed"]  # fmt: skip
        dead = await queue.enqueue("broken", 1, attempts=1)
        events = await collect_until(queue, position, dead.id, "dead")
        assert [e.event for e in events] == ["added", "active", "failed", "dead"]
        assert events[-1].fields["reason"] == "attempts_exhausted"
        assert events[-1].timestamp >= events[0].timestamp
    await queue.dead_letters.replay([dead.id])
    await queue.pause()
    kinds = [e.event async for e in _until(queue.events(last_id=position, block=1.0), "paused")]
    assert "replayed" in kinds and kinds[-1] == "paused"


async def _until(events: Any, final: str) -> Any:
    async for event in events:
        yield event
        if event.event == final:
            return


async def test_a_subscriber_resumes_from_its_last_id(queue: conveyor.Queue) -> None:
    await queue.enqueue_many([("ok", i) for i in range(3)])
    first = [e async for e in _take(queue.events(last_id="0", block=0.1), 3)]
    await queue.enqueue_many([("ok", i) for i in range(3, 5)])  # while "disconnected"
    rest = [e async for e in _take(queue.events(last_id=first[-1].id, block=0.1), 2)]
    payload_ids = [e.job_id for e in first + rest]
    assert len(set(payload_ids)) == 5
    assert [e.event for e in rest] == ["added", "added"]


async def _take(events: Any, n: int) -> Any:
    count = 0
    async for event in events:
        yield event
        count += 1
        if count == n:
            return


async def test_result_waits_for_completion_death_and_time(
    queue: conveyor.Queue, server_url: str
) -> None:
    async with RunningWorker(make_worker(queue, server_url)):
        job = await queue.enqueue("ok", {"answer": 42})
        assert await queue.result(job.id, timeout=30) == {"answer": 42}
        assert await queue.result(job.id, timeout=0.1) == {"answer": 42}  # already finished
        dead = await queue.enqueue("broken", 1, attempts=1)
        with pytest.raises(conveyor.JobFailed) as failed:
            await queue.result(dead.id, timeout=30)
        assert failed.value.job.dead_reason is conveyor.DeadReason.ATTEMPTS_EXHAUSTED
        assert "ValueError: always" in str(failed.value)
        slow = await queue.enqueue("slow", 1)
        with pytest.raises(conveyor.ResultTimeout):
            await queue.result(slow.id, timeout=0.3)
        with pytest.raises(conveyor.JobNotFound):
            await queue.result("no-such-job", timeout=1)


async def test_the_sync_face_waits_too(queue: conveyor.Queue, server_url: str) -> None:
    sync = conveyor.SyncQueue(queue.name, url=server_url)
    async with RunningWorker(make_worker(queue, server_url)):
        job = sync.enqueue("ok", "from sync")
        result = await asyncio.to_thread(sync.result, job.id, timeout=30)
    assert result == "from sync"
    assert sync.wait(job.id, timeout=1).state is JobState.COMPLETED
    sync.close()


async def test_progress_and_logs_are_stored_and_bounded(
    queue: conveyor.Queue, server_url: str
) -> None:
    async with RunningWorker(make_worker(queue, server_url)):
        short = await queue.enqueue("chatty", 3)
        long = await queue.enqueue("chatty", 2000)
        done = await queue.wait(short.id, timeout=30)
        big = await queue.wait(long.id, timeout=60)
    assert done.progress == {"done": 3, "of": 3}
    assert [line.split(" ", 1)[1] for line in done.logs] == ["step 0 of 3", "step 1 of 3",
                                                             "step 2 of 3"]  # fmt: skip
    assert big.progress == {"done": 2000, "of": 2000}
    size = sum(len(line) + 1 for line in big.logs)
    assert conveyor.defaults.MAX_LOG_BYTES // 2 < size <= conveyor.defaults.MAX_LOG_BYTES
    assert big.logs[-1].endswith("step 1999 of 2000")  # the newest lines are kept


def test_progress_too_large_is_refused() -> None:
    from conveyor.worker.context import JobContext as Ctx
    from conveyor.worker.reporter import Reporter

    reporter = Reporter.__new__(Reporter)
    ctx = Ctx("id", "n", "q", 1, 1, "t", "w", reporter)
    with pytest.raises(conveyor.PayloadError, match="progress"):
        ctx.progress("x" * (conveyor.defaults.MAX_PROGRESS_BYTES + 1))


async def test_metrics_after_a_known_workload(queue: conveyor.Queue, server_url: str) -> None:
    async with RunningWorker(make_worker(queue, server_url)) as worker:
        jobs = await queue.enqueue_many([("ok", i) for i in range(5)])
        flaky = await queue.enqueue("flaky", 0)
        dead = await queue.enqueue("broken", 0, attempts=2, backoff=conveyor.Immediate())
        for job in [*jobs, flaky]:
            await queue.wait(job.id, timeout=30)
        await queue.wait(dead.id, timeout=30)
        await queue.enqueue("ok", "waiting", delay=0)  # may be taken at once; not asserted
        live = await wait_for(lambda: _with_workers(queue))
    assert live.completed_total >= 6
    assert live.failed_total == 3  # flaky once, broken twice
    assert live.dead_total == 1
    assert sum(live.per_minute("completed")) >= 6 and sum(live.per_minute("failed")) == 3
    assert live.processing_time(0.5) is not None
    assert live.processing_time(0.99) >= live.processing_time(0.5)
    assert live.counts.dead == 1 and live.oldest_dead_age is not None
    (info,) = live.workers
    assert info.id == worker.id and info.concurrency == WORKER_TEST_OPTIONS.concurrency
    assert info.handlers == sorted(worker.handlers)  # the job names it serves
    assert (await queue.metrics()).workers == []  # gone once stopped


async def _with_workers(queue: conveyor.Queue) -> conveyor.QueueMetrics | None:
    metrics = await queue.metrics()
    return metrics if metrics.workers and metrics.workers[0].jobs_done >= 9 else None


async def test_job_fields_are_on_every_log_record(queue: conveyor.Queue, server_url: str) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(JobLogFilter())
    app = logging.getLogger("myapp")
    app.addHandler(handler)
    app.setLevel(logging.INFO)
    try:
        async with RunningWorker(make_worker(queue, server_url)):
            job = await queue.enqueue("chatty", 1)
            await queue.wait(job.id, timeout=30)
    finally:
        app.removeHandler(handler)
    (record,) = [r for r in records if r.getMessage() == "chatty finished"]
    assert (record.job_id, record.job_name, record.attempt) == (job.id, "chatty", 1)  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(record))
    assert line["job_id"] == job.id and line["message"] == "chatty finished"
