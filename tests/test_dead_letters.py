"""Operating the dead-letter set: list, filter, replay, move, drop, export/import, hooks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

import conveyor
from conveyor import DeadFilter, DeadReason, JobContext, JobState, dlq_ops
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


def failing_worker(queue_name: str, url: str, **kwargs: Any) -> conveyor.Worker:
    worker = conveyor.Worker(queue_name, url=url, options=WORKER_TEST_OPTIONS, **kwargs)

    @worker.handler
    async def value_error(ctx: JobContext, payload: Any) -> None:
        raise ValueError(f"bad value {payload}")

    @worker.handler
    async def key_error(ctx: JobContext, payload: Any) -> None:
        raise KeyError(payload)

    @worker.handler
    async def fixed(ctx: JobContext, payload: Any) -> Any:
        if payload == "broken":
            raise ValueError("still broken")
        return payload

    return worker


async def dead_count(queue: conveyor.Queue, n: int) -> bool:
    return (await queue.counts()).dead == n


async def make_dead(queue: conveyor.Queue, url: str, specs: list[conveyor.JobSpec]) -> None:
    await queue.enqueue_many([dataclasses.replace(s, attempts=1) for s in specs])
    async with RunningWorker(failing_worker(queue.name, url)):
        await wait_for(lambda: dead_count(queue, len(specs)))


async def test_list_filters_and_pages_newest_first(queue: conveyor.Queue, server_url: str) -> None:
    specs = [conveyor.JobSpec("value_error", i) for i in range(6)]
    specs += [conveyor.JobSpec("key_error", i) for i in range(4)]
    await make_dead(queue, server_url, specs)
    killed = await queue.enqueue("value_error", "never run")
    assert await queue.dead_letters.kill(killed.id)

    everything = await queue.dead_letters.list(limit=100)
    assert len(everything.jobs) == 11 and everything.cursor is None
    assert everything.jobs[0].id == killed.id  # newest first
    by_type = await queue.dead_letters.list(DeadFilter(error_type="KeyError"))
    assert {j.name for j in by_type.jobs} == {"key_error"} and len(by_type.jobs) == 4
    by_reason = await queue.dead_letters.list(DeadFilter(reason=DeadReason.KILLED))
    assert [j.id for j in by_reason.jobs] == [killed.id]
    by_name = await queue.dead_letters.list(DeadFilter(name="value_error",
                                                       reason="attempts_exhausted"))  # fmt: skip
    assert len(by_name.jobs) == 6
    assert (await queue.dead_letters.list(DeadFilter(until=time.time() - 3600))).jobs == []

    first = await queue.dead_letters.list(limit=4)
    second = await queue.dead_letters.list(cursor=first.cursor or 0, limit=4)
    assert len(first.jobs) == len(second.jobs) == 4
    assert not {j.id for j in first.jobs} & {j.id for j in second.jobs}
    job = first.jobs[1]
    assert job.first_failed_at is not None and job.history and job.dead_reason


async def test_replay_keeps_id_and_history_with_a_fresh_budget(
    queue: conveyor.Queue, server_url: str
) -> None:
    await make_dead(queue, server_url, [conveyor.JobSpec("fixed", "broken")])
    (dead,) = (await queue.dead_letters.list()).jobs
    result = await queue.dead_letters.replay([dead.id], payload="now fine")
    assert result.moved == 1
    again = await queue.dead_letters.replay([dead.id])
    assert again.moved == 0  # replaying twice makes one job
    async with RunningWorker(failing_worker(queue.name, server_url)):
        done = await wait_for(lambda: _in(queue, dead.id, JobState.COMPLETED))
    assert done.result == "now fine"
    assert done.attempt == 1 and done.replays == 1
    assert len(done.history) == 1 and done.history[0].error.message == "still broken"
    assert (await queue.counts()).waiting == 0


async def _in(queue: conveyor.Queue, job_id: str, state: JobState) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job and job.state is state else None


async def test_bulk_replay_dry_run_filter_and_rate(queue: conveyor.Queue, server_url: str) -> None:
    await make_dead(queue, server_url, [conveyor.JobSpec("key_error", i) for i in range(12)]
                    + [conveyor.JobSpec("value_error", 0)])  # fmt: skip
    preview = await queue.dead_letters.replay(where=DeadFilter(name="key_error"), dry_run=True)
    assert (preview.matched, preview.moved, preview.dry_run) == (12, 0, True)
    assert (await queue.counts()).dead == 13
    with pytest.raises(ValueError, match="exactly one"):
        await queue.dead_letters.replay()
    started = time.monotonic()
    paced = await queue.dead_letters.replay(where=DeadFilter(name="key_error"), rate=5)
    assert paced.moved == 12
    assert time.monotonic() - started >= 1.9  # 12 jobs at 5/s: batches of 5, two pauses
    assert (await queue.counts()).waiting == 12
    rest = await queue.dead_letters.replay(all=True)
    assert rest.moved == 1 and (await queue.counts()).dead == 0


async def test_replay_to_another_queue(queue: conveyor.Queue, server_url: str) -> None:
    await make_dead(queue, server_url, [conveyor.JobSpec("value_error", {"x": 1})])
    (dead,) = (await queue.dead_letters.list()).jobs
    other = conveyor.Queue(f"{queue.name}-retry", url=server_url)
    moved = await queue.dead_letters.replay(all=True, to=other.name)
    assert moved.ids == [dead.id]
    copy = await other.get_job(dead.id)
    assert copy is not None and copy.state is JobState.WAITING
    assert copy.payload == {"x": 1} and len(copy.history) == 1
    assert await queue.get_job(dead.id) is None
    assert (await queue.dead_letters.replay(all=True, to=other.name)).moved == 0
    await queue.dead_letters.kill((await queue.enqueue("value_error", 2)).id)
    same = await queue.dead_letters.replay(all=True, to=queue.name)  # a plain replay
    assert same.moved == 1 and (await queue.counts()).waiting == 1
    await other.obliterate(force=True)
    await other.close()


async def test_an_interrupted_bulk_replay_loses_nothing(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        await queue.dead_letters.kill((await queue.enqueue("fixed", i)).id)
    monkeypatch.setattr(dlq_ops, "BATCH", 3)
    ids = [j.id for j in (await queue.dead_letters.list(limit=100)).jobs]
    op = dlq_ops.bulk_replay(queue.keys, queue.options, ids)
    transport = queue._transport
    assert transport is not None
    await transport.execute(next(op))  # the first batch is sent ...
    op.close()  # ... and the process dies before the next one
    counts = await queue.counts()
    assert (counts.waiting, counts.dead) == (3, 7)
    rerun = await queue.dead_letters.replay(all=True)
    assert rerun.moved == 7
    counts = await queue.counts()
    assert (counts.waiting, counts.dead) == (10, 0)


async def test_drop_export_and_import(
    queue: conveyor.Queue, server_url: str, tmp_path: Path
) -> None:
    await make_dead(queue, server_url, [conveyor.JobSpec("key_error", i) for i in range(5)]
                    + [conveyor.JobSpec("value_error", i) for i in range(3)])  # fmt: skip
    backup = tmp_path / "dead.jsonl"
    assert await queue.dead_letters.export(backup) == 8
    dropped = await queue.dead_letters.drop(where=DeadFilter(error_type="ValueError"))
    assert dropped.moved == 3 and (await queue.counts()).dead == 5
    assert (await queue.dead_letters.drop(older_than=3600)).moved == 0
    assert (await queue.dead_letters.drop(all=True)).moved == 5
    assert await queue.dead_letters.import_(backup) == 8
    assert await queue.dead_letters.import_(backup) == 0  # importing twice is harmless
    restored = await queue.dead_letters.list(DeadFilter(error_type="KeyError"))
    assert len(restored.jobs) == 5 and restored.jobs[0].history


async def test_dead_jobs_expire_by_age_counted_from_death(server_url: str, queue_name: str) -> None:
    options = conveyor.QueueOptions(dead_keep_age=0.3, max_attempts=1)
    queue = conveyor.Queue(queue_name, url=server_url, options=options)
    worker = failing_worker(queue_name, server_url, queue_options=options)
    async with RunningWorker(worker):
        first = await queue.enqueue("value_error", 1, delay=0.5)  # dies 0.5 s after enqueue
        await wait_for(lambda: _in(queue, first.id, JobState.DEAD))
        await wait_for(lambda: dead_count(queue, 0))  # expired, not yet trimmed
        second = await queue.enqueue("value_error", 2)
        await wait_for(lambda: _in(queue, second.id, JobState.DEAD))
    assert await queue.get_job(first.id) is None  # trimmed when the next job died
    await queue.obliterate(force=True)
    await queue.close()


async def test_on_dead_hook_runs_and_its_failure_loses_nothing(
    queue: conveyor.Queue, server_url: str
) -> None:
    seen: list[conveyor.Job] = []

    def alert(job: conveyor.Job) -> None:
        seen.append(job)
        raise RuntimeError("pager is down")

    worker = failing_worker(queue.name, server_url, on_dead=alert)
    async with RunningWorker(worker):
        a = await queue.enqueue("value_error", 1, attempts=1)
        await wait_for(lambda: len(seen) == 1)
        b = await queue.enqueue("fixed", "ok")
        await wait_for(lambda: _in(queue, b.id, JobState.COMPLETED))
    assert seen[0].id == a.id and seen[0].dead_reason is DeadReason.ATTEMPTS_EXHAUSTED
    assert (await queue.get_job(a.id)).state is JobState.DEAD


async def test_dead_jobs_are_routed_to_a_named_dead_letter_queue(
    server_url: str, queue_name: str
) -> None:
    target = f"{queue_name}-dlq"
    options = conveyor.QueueOptions(dead_letter_queue=target, max_attempts=1)
    queue = conveyor.Queue(queue_name, url=server_url, options=options)
    dlq = conveyor.Queue(target, url=server_url)
    async with RunningWorker(failing_worker(queue_name, server_url, queue_options=options)):
        job = await queue.enqueue("key_error", "k")
        routed = await wait_for(lambda: _first_waiting(dlq))
    assert routed.name == "dead_letter"
    assert routed.payload["id"] == job.id and routed.payload["queue"] == queue_name
    assert routed.payload["reason"] == "attempts_exhausted"
    assert routed.payload["history"][0]["error"]["type"] == "KeyError"
    assert (await queue.get_job(job.id)).state is JobState.DEAD  # still in its own DLQ too
    for q in (queue, dlq):
        await q.obliterate(force=True)
        await q.close()


async def test_a_dead_job_that_cannot_be_copied_as_is_never_blocks_the_routing(
    server_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"{queue_name}-dlq"
    options = conveyor.QueueOptions(dead_letter_queue=target, max_attempts=1,
                                    max_payload_bytes=2 * 1024 * 1024)  # fmt: skip
    queue = conveyor.Queue(queue_name, url=server_url, options=options)
    dlq = conveyor.Queue(target, url=server_url)
    long_id = "x" * conveyor.defaults.MAX_ID_CHARS  # "queue.id.0" would be too long an id
    async with RunningWorker(failing_worker(queue_name, server_url, queue_options=options)):
        big = await queue.enqueue("key_error", "b" * (600 * 1024))  # over the target's limit
        await wait_for(lambda: "gets no dead-letter copy" in caplog.text)
        await queue.enqueue("key_error", "k", id=long_id)
        await queue.enqueue("key_error", "last")
        await wait_for(lambda: _waiting(dlq, 2))
    routed = {job.payload["id"]: job for job in await dlq.list_jobs("waiting")}
    assert long_id in routed and len(routed) == 2 and big.id not in routed
    assert (await queue.get_job(big.id)).state is JobState.DEAD  # still in its own DLQ
    for q in (queue, dlq):
        await q.obliterate(force=True)
        await q.close()


async def _waiting(queue: conveyor.Queue, n: int) -> bool:
    return (await queue.counts()).waiting == n


async def _first_waiting(queue: conveyor.Queue) -> conveyor.Job | None:
    jobs = await queue.list_jobs("waiting")
    return jobs[0] if jobs else None


async def test_a_job_that_stalls_too_often_goes_dead(
    queue: conveyor.Queue, server_url: str
) -> None:
    import redis

    job = await queue.enqueue("fixed", "ok", attempts=10)
    keys = queue.keys
    raw = redis.Redis.from_url(server_url)
    # As if three workers had already died holding it, and a fourth just did.
    raw.zrem(keys.key("waiting"), job.id)
    raw.hset(keys.job(job.id), mapping={"state": "active", "token": "gone", "stalls": 3,
                                        "attempt": 4, "worker": "dead-worker"})  # fmt: skip
    raw.zadd(keys.key("active"), {job.id: 1})
    raw.close()
    async with RunningWorker(failing_worker(queue.name, server_url)):
        dead = await wait_for(lambda: _in(queue, job.id, JobState.DEAD))
    assert dead.dead_reason is DeadReason.TOO_MANY_STALLS and dead.stalls == 4
    assert dead.history[-1].cause is conveyor.AttemptCause.STALLED
    assert dead.history[-1].worker == "dead-worker"


async def test_replay_leaves_a_corrupted_dead_job_dead_and_says_why(
    queue: conveyor.Queue, server_url: str
) -> None:
    ids = []
    for n in range(5):
        job = await queue.enqueue("fixed", n)
        assert await queue.dead_letters.kill(job.id)
        ids.append(job.id)
    client = redis.asyncio.Redis.from_url(server_url)
    bandless, far_band, no_attempts, bad_options, good = ids
    await client.hdel(queue.keys.job(bandless), "band")  # an import from before the checks
    await client.hset(queue.keys.job(far_band), "band", str(-9 * 10**18))
    await client.hset(queue.keys.job(no_attempts), "max_attempts", "0")
    await client.hset(queue.keys.job(bad_options), "options", "nope")
    broken = {
        bandless: "band must be an integer in",
        far_band: "not '-9000000000000000000'",
        no_attempts: "max_attempts must be an integer in 1..",
        bad_options: "options",
    }

    async def still_dead() -> None:
        for job_id in broken:  # dead, and listed in the dead set: visible, never lost
            assert await client.hget(queue.keys.job(job_id), "state") == b"dead"
            assert await client.zscore(queue.keys.key("dead"), job_id) is not None
        assert (await queue.counts()).dead == len(broken)

    result = await queue.dead_letters.replay(all=True)
    assert (result.matched, result.moved, result.ids) == (5, 1, [good])
    assert set(result.refused) == set(broken)
    for job_id, why in broken.items():
        assert why in result.refused[job_id], result.refused[job_id]
    assert "not missing" in result.refused[bandless]
    await still_dead()
    assert (await queue.counts()).waiting == 1

    other = conveyor.Queue(f"{queue.name}-retry", url=server_url)
    try:  # a move to another queue checks the same fields, and leaves them dead too
        moved = await queue.dead_letters.replay(all=True, to=other.name)
        assert moved.moved == 0 and set(moved.refused) == set(broken)
        assert "band" in moved.refused[bandless] and "options" in moved.refused[bad_options]
        await still_dead()
        assert (await other.counts()).waiting == 0
    finally:
        await other.obliterate(force=True)
        await other.close()
        await client.aclose()
