"""Worker behaviour against a real server: the lifecycle, ordering, retries and the DLQ."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

import conveyor
from conveyor import AttemptCause, DeadReason, Fixed, Immediate, JobContext, JobState
from conveyor.keys import QueueKeys
from conveyor.worker import calls
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


def make_worker(queue: conveyor.Queue, url: str, **options: Any) -> conveyor.Worker:
    import dataclasses

    return conveyor.Worker(
        queue.name, url=url, options=dataclasses.replace(WORKER_TEST_OPTIONS, **options)
    )


async def in_state(queue: conveyor.Queue, job_id: str, state: JobState) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job is not None and job.state is state else None


async def test_sync_and_async_handlers_complete_with_results(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url)
    threads: list[str] = []

    @worker.handler
    async def double(ctx: JobContext, payload: int) -> int:
        return payload * 2

    @worker.handler(name="thumbnail")
    def make_thumbnail(ctx: JobContext, payload: dict[str, str]) -> dict[str, str]:
        threads.append(threading.current_thread().name)
        return {"thumb": payload["image"] + ".small.png", "job": ctx.id}

    async with RunningWorker(worker):
        a = await queue.enqueue("double", 21)
        b = await queue.enqueue("thumbnail", {"image": "cat"})
        done_a = await wait_for(lambda: in_state(queue, a.id, JobState.COMPLETED))
        done_b = await wait_for(lambda: in_state(queue, b.id, JobState.COMPLETED))
    assert done_a.result == 42
    assert done_b.result == {"thumb": "cat.small.png", "job": b.id}
    assert threads and threads[0].startswith("conveyor-job")
    assert done_b.finished_at >= done_b.started_at >= done_b.created_at


async def test_jobs_run_in_priority_then_fifo_order(queue: conveyor.Queue, server_url: str) -> None:
    worker = make_worker(queue, server_url, concurrency=1)
    seen: list[str] = []

    @worker.handler
    async def note(ctx: JobContext, payload: str) -> None:
        seen.append(payload)

    await queue.enqueue_many([("note", "a"), ("note", "b"), ("note", "c")])
    await queue.enqueue("note", "first", priority=5)
    async with RunningWorker(worker):
        await wait_for(lambda: len(seen) == 4)
    assert seen == ["first", "a", "b", "c"]


async def test_a_delayed_job_runs_when_due_and_not_before(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, idle_block=5.0)
    started: dict[str, float] = {}

    @worker.handler
    async def tick(ctx: JobContext, payload: None) -> None:
        started[ctx.id] = time.time()

    async with RunningWorker(worker):
        job = await queue.enqueue("tick", None, delay=1.0)
        done = await wait_for(lambda: in_state(queue, job.id, JobState.COMPLETED))
    # Both times come from the server's clock: started_at is the fetch, due_at the promise.
    assert done.started_at >= done.due_at
    assert done.due_at - done.created_at == pytest.approx(1.0, abs=0.01)


async def test_failures_retry_with_backoff_then_go_dead_with_history(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url)

    @worker.handler(backoff=Fixed(0.05))
    def flaky(ctx: JobContext, payload: None) -> None:
        raise ConnectionError(f"smtp down (attempt {ctx.attempt})")

    async with RunningWorker(worker):
        job = await queue.enqueue("flaky", None, attempts=3)
        dead = await wait_for(lambda: in_state(queue, job.id, JobState.DEAD))
    assert dead.dead_reason is DeadReason.ATTEMPTS_EXHAUSTED
    assert [a.attempt for a in dead.history] == [1, 2, 3]
    assert all(a.cause is AttemptCause.ERROR for a in dead.history)
    assert dead.history[-1].error.type == "ConnectionError"
    assert "attempt 3" in dead.error.message
    assert "Traceback" in dead.history[0].error.traceback
    assert (await queue.counts()).dead == 1


async def test_a_transient_failure_then_success(queue: conveyor.Queue, server_url: str) -> None:
    worker = make_worker(queue, server_url)

    @worker.handler(backoff=Immediate())
    async def once_broken(ctx: JobContext, payload: None) -> str:
        if ctx.attempt == 1:
            raise TimeoutError("upstream slow")
        return "ok"

    async with RunningWorker(worker):
        job = await queue.enqueue("once_broken", None)
        done = await wait_for(lambda: in_state(queue, job.id, JobState.COMPLETED))
    assert done.result == "ok" and done.attempt == 2
    assert len(done.history) == 1 and done.history[0].error.type == "TimeoutError"


async def test_bad_jobs_go_dead_at_once_and_the_worker_keeps_running(
    queue: conveyor.Queue, server_url: str
) -> None:
    # No grace: no live worker knows "no_such_handler" (see tests/test_rolling_deploy.py).
    worker = make_worker(queue, server_url, unknown_job_grace=0.0)

    @worker.handler
    async def known(ctx: JobContext, payload: Any) -> str:
        return "fine"

    @worker.handler
    async def strict(ctx: JobContext, payload: Any) -> None:
        raise conveyor.PermanentError("account closed")

    @worker.handler
    async def unencodable(ctx: JobContext, payload: Any) -> object:
        return object()

    garbled = await queue.enqueue("known", "will be garbled")
    raw = redis.Redis.from_url(server_url)
    raw.hset(QueueKeys(queue.name).job(garbled.id), "payload", b"\xff{not json")
    raw.close()
    unknown = await queue.enqueue("no_such_handler", 1, attempts=5)
    permanent = await queue.enqueue("strict", 1, attempts=5)
    weird = await queue.enqueue("unencodable", 1, attempts=5)
    good = await queue.enqueue("known", 1)
    async with RunningWorker(worker):
        results = {
            job.id: await wait_for(lambda job=job: in_state(queue, job.id, JobState.DEAD))
            for job in (garbled, unknown, permanent, weird)
        }
        assert await wait_for(lambda: in_state(queue, good.id, JobState.COMPLETED))
    assert results[garbled.id].dead_reason is DeadReason.INVALID_PAYLOAD
    assert results[unknown.id].dead_reason is DeadReason.UNKNOWN_JOB
    assert "no_such_handler" in results[unknown.id].error.message
    assert results[permanent.id].dead_reason is DeadReason.PERMANENT_ERROR
    assert results[weird.id].dead_reason is DeadReason.PERMANENT_ERROR
    assert results[weird.id].error.type == "PayloadError"
    assert all(job.attempt == 1 for job in results.values())


async def test_an_async_handler_is_cancelled_at_its_timeout(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url)
    cancelled = asyncio.Event()

    @worker.handler(timeout=0.2)
    async def hang(ctx: JobContext, payload: None) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with RunningWorker(worker):
        job = await queue.enqueue("hang", None, attempts=1)
        dead = await wait_for(lambda: in_state(queue, job.id, JobState.DEAD))
    assert cancelled.is_set()
    assert dead.history[0].cause is AttemptCause.TIMEOUT
    assert dead.error.type == "JobTimeoutError"
    attempt = dead.history[0]
    assert attempt.ended_at - attempt.started_at >= 0.2 - 1e-3  # at the deadline, not before


async def test_a_sync_handler_timeout_fails_the_attempt_and_gives_the_slot_back(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, concurrency=1)
    release = threading.Event()
    ran: list[str] = []

    @worker.handler(timeout=0.2)
    def stuck(ctx: JobContext, payload: None) -> None:
        release.wait(30)

    @worker.handler
    def after(ctx: JobContext, payload: None) -> None:
        ran.append(threading.current_thread().name)

    try:
        async with RunningWorker(worker):
            job = await queue.enqueue("stuck", None, attempts=1)
            dead = await wait_for(lambda: in_state(queue, job.id, JobState.DEAD))
            second = await queue.enqueue("after", None)
            # The stuck thread was abandoned at the timeout: a new thread runs the next job.
            await wait_for(lambda: in_state(queue, second.id, JobState.COMPLETED))
            assert not release.is_set() and len(ran) == 1
    finally:
        release.set()
    assert dead.history[0].cause is AttemptCause.TIMEOUT


async def test_a_paused_queue_starts_nothing_until_resumed(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(queue, server_url)
    ran: list[str] = []
    fetched: list[int] = []  # the jobs each fetch of this queue took
    parse_fetch = calls.parse_fetch

    def counted(queue_name: str, reply: Any) -> calls.Fetched:
        result = parse_fetch(queue_name, reply)
        if queue_name == queue.name:
            fetched.append(len(result.claims))
        return result

    monkeypatch.setattr(calls, "parse_fetch", counted)

    @worker.handler
    async def work(ctx: JobContext, payload: None) -> None:
        ran.append(ctx.id)

    await queue.pause()
    async with RunningWorker(worker):
        await wait_for(lambda: fetched)
        job = await queue.enqueue("work", None)
        seen = len(fetched)
        # The worker looks at the paused queue at least twice after the job is there.
        await wait_for(lambda: len(fetched) >= seen + 2)
        assert not ran and not any(fetched) and (await queue.counts()).waiting == 1
        await queue.resume()
        await wait_for(lambda: in_state(queue, job.id, JobState.COMPLETED))


async def _counts_workers(queue: conveyor.Queue) -> bool:
    return (await queue.counts()).workers >= 1


async def test_completed_jobs_are_trimmed_by_count(server_url: str, queue_name: str) -> None:
    options = conveyor.QueueOptions(completed_keep_count=5)
    queue = conveyor.Queue(queue_name, url=server_url, options=options)
    worker = conveyor.Worker(
        queue_name, url=server_url, options=WORKER_TEST_OPTIONS, queue_options=options
    )
    done: list[str] = []

    @worker.handler
    async def work(ctx: JobContext, payload: int) -> int:
        done.append(ctx.id)
        return payload

    jobs = await queue.enqueue_many([("work", i) for i in range(20)])
    keep_none = await queue.enqueue("work", 99, retention=0)
    async with RunningWorker(worker):
        await wait_for(lambda: len(done) == 21)
        await wait_for(lambda: _settled(queue, 21))
    assert (await queue.counts()).completed == 5
    kept = [await queue.get_job(job.id) for job in jobs]
    assert sum(job is not None for job in kept) == 5  # the oldest were deleted, not just hidden
    assert await queue.get_job(keep_none.id) is None
    await queue.obliterate(force=True)
    await queue.close()


async def _settled(queue: conveyor.Queue, total: int) -> bool:
    counts = await queue.counts()
    return counts.active == 0 and counts.waiting == 0


async def test_a_worker_refuses_a_server_that_may_evict_jobs(
    queue: conveyor.Queue, server_url: str
) -> None:
    raw = redis.Redis.from_url(server_url)
    raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(conveyor.UnsafeServerError, match="noeviction"):
            await make_worker(queue, server_url).serve()
        async with RunningWorker(make_worker(queue, server_url, allow_unsafe_server=True)):
            await wait_for(lambda: _counts_workers(queue))
    finally:
        raw.config_set("maxmemory-policy", "noeviction")
        raw.close()


async def test_workers_register_and_unregister(queue: conveyor.Queue, server_url: str) -> None:
    async with RunningWorker(make_worker(queue, server_url)):
        await wait_for(lambda: _counts_workers(queue))
    assert (await queue.counts()).workers == 0


async def test_one_worker_serves_several_queues(server_url: str, queue_name: str) -> None:
    names = [f"{queue_name}-a", f"{queue_name}-b"]
    queues = [conveyor.Queue(n, url=server_url) for n in names]
    worker = conveyor.Worker(names, url=server_url, options=WORKER_TEST_OPTIONS)
    seen: list[str] = []

    @worker.handler
    async def where(ctx: JobContext, payload: None) -> None:
        seen.append(ctx.queue)

    async with RunningWorker(worker):
        for q in queues:
            await q.enqueue("where", None)
        await wait_for(lambda: len(seen) == 2)
    assert sorted(seen) == sorted(names)
    for q in queues:
        await q.obliterate(force=True)
        await q.close()


def test_a_handler_that_cannot_take_ctx_and_payload_is_refused_at_registration() -> None:
    worker = conveyor.Worker("unused", url="redis://127.0.0.1:1")
    with pytest.raises(TypeError, match=r"two arguments: \(ctx, payload\)"):

        @worker.handler
        async def send(payload: dict[str, Any]) -> None:
            pass

    @worker.handler
    def flexible(*args: Any, **kwargs: Any) -> None:
        pass

    assert "flexible" in worker.handlers and "send" not in worker.handlers


async def test_a_full_worker_refills_with_a_small_fetch_first_then_doubles(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.worker import calls

    sizes: list[int] = []
    fetch = calls.fetch

    def recording_fetch(*args: Any, **kwargs: Any) -> Any:
        sizes.append(args[2])
        return fetch(*args, **kwargs)

    monkeypatch.setattr(calls, "fetch", recording_fetch)
    worker = make_worker(queue, server_url, concurrency=100, fetch_batch=100)
    release = asyncio.Event()
    started: list[str] = []
    done: list[str] = []

    @worker.handler
    async def block(ctx: JobContext, payload: None) -> None:
        started.append(ctx.id)
        await release.wait()
        done.append(ctx.id)

    await queue.enqueue_many([("block", None)] * 200)
    async with RunningWorker(worker):
        # Full: the next fetch waits for free slots, and must then start small again.
        await wait_for(lambda: len(started) == 100)
        release.set()
        await wait_for(lambda: len(done) == 200)
    # 25, then 50 while those start, then the 25 slots left; full: the refill starts at 25.
    assert sizes[:4] == [25, 50, 25, 25]


def test_fetch_counts_the_attempt_and_complete_checks_the_lock_token(
    sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    from conveyor import connection
    from conveyor.transport import SyncTransport
    from conveyor.worker import calls

    keys, options = QueueKeys(sync_queue.name), conveyor.QueueOptions()
    job = sync_queue.enqueue("ok", 1, retention=60)
    transport = SyncTransport(connection.sync_client(server_url), server_url)
    try:
        (reply,) = transport.execute(
            [
                calls.fetch(
                    keys, options, 10, "w1", "w1.0", 60_000, names=["ok"], unknown_job_grace=60.0
                )
            ]
        )
        (claim,) = calls.parse_fetch(sync_queue.name, reply).claims
        assert (claim.id, claim.attempt, claim.token) == (job.id, 1, "w1.0.1")
        forged = (job.id, "w9.0.1", b"1", 0)
        refused = [[[job.id.encode()], []]]  # (refused: the lock is not held, of which missing)
        assert transport.execute([calls.complete(keys, options, [forged])]) == refused
        assert sync_queue.get_job(job.id).state is JobState.ACTIVE  # type: ignore[union-attr]
        done = (job.id, claim.token, b"2", 0)
        assert transport.execute([calls.complete(keys, options, [done])]) == [[[], []]]
        assert transport.execute([calls.complete(keys, options, [done])]) == refused
        stored = sync_queue.get_job(job.id)
        assert stored is not None and stored.state is JobState.COMPLETED and stored.result == 2
        assert stored.attempt == 1
    finally:
        transport.close()
