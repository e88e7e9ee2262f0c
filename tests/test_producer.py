"""The producer side, on both faces (async Queue and SyncQueue) against a real server."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import redis

import conveyor
from conveyor import JobSpec, JobState
from tests.conftest import Face


async def test_enqueue_stores_the_job_and_its_options(face: Face) -> None:
    job = await face.enqueue("send_email", {"to": "a@example.com"}, priority=7, attempts=5,
                             timeout=12.5)  # fmt: skip
    stored = await face.get_job(job.id)
    assert stored.state is JobState.WAITING
    assert stored.payload == {"to": "a@example.com"}
    assert (stored.priority, stored.max_attempts, stored.timeout) == (7, 5, 12.5)
    assert stored.attempt == 0 and stored.created_at > 0


async def test_a_repeated_id_returns_the_existing_job(face: Face) -> None:
    first = await face.enqueue("report", {"v": 1}, id="report-2026-11")
    again = await face.enqueue("report", {"v": 2}, id="report-2026-11")
    assert again.id == first.id
    assert again.payload == {"v": 1}
    assert (await face.counts()).waiting == 1


async def test_bulk_enqueue_in_one_call(face: Face) -> None:
    jobs = await face.enqueue_many(
        [("a", 1), JobSpec("b", 2, priority=3), JobSpec("c", 3, delay=60), JobSpec("d", 4, id="x")]
    )
    assert [j.name for j in jobs] == ["a", "b", "c", "d"]
    assert jobs[2].state is JobState.DELAYED and jobs[3].id == "x"
    counts = await face.counts()
    assert (counts.waiting, counts.delayed) == (3, 1)
    assert await face.enqueue_many([]) == []


async def test_waiting_order_is_priority_then_fifo(face: Face) -> None:
    await face.enqueue_many([("low1", 0), ("high1", 0), ("low2", 0), ("high2", 0)])
    await face.enqueue("urgent", 0, priority=10)
    await face.enqueue("later", 0, priority=-5)
    await face.enqueue_many([JobSpec("high3", 0, priority=5), JobSpec("mid", 0, priority=1)])
    order = [j.name for j in await face.list_jobs("waiting")]
    assert order == ["urgent", "high3", "mid", "low1", "high1", "low2", "high2", "later"]


async def test_delay_and_run_at_make_delayed_jobs(face: Face) -> None:
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    a = await face.enqueue("x", 1, delay=30)
    b = await face.enqueue("y", 1, run_at=soon)
    assert a.state is JobState.DELAYED and b.state is JobState.DELAYED
    stored = await face.get_job(b.id)
    assert stored.due_at == pytest.approx(soon.timestamp(), abs=0.01)
    with pytest.raises(ValueError, match="timezone"):
        await face.enqueue("z", 1, run_at=dt.datetime.now())


async def test_remove_pause_resume_drain(face: Face) -> None:
    jobs = await face.enqueue_many([("a", 1), ("b", 2), JobSpec("c", 3, delay=30)])
    assert await face.remove(jobs[0].id) is True
    assert await face.remove(jobs[0].id) is False
    await face.pause()
    assert (await face.counts()).paused
    await face.resume()
    assert not (await face.counts()).paused
    assert await face.drain() == 2
    counts = await face.counts()
    assert (counts.waiting, counts.delayed) == (0, 0)


async def test_bad_input_is_refused_before_anything_is_stored(face: Face) -> None:
    with pytest.raises(conveyor.PayloadError, match="over the limit"):
        await face.enqueue("big", "x" * (conveyor.defaults.MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(conveyor.PayloadError, match="JSON"):
        await face.enqueue("obj", object())
    with pytest.raises(ValueError, match="priority"):
        await face.enqueue("p", 1, priority=5000)
    with pytest.raises(ValueError, match="attempts"):
        await face.enqueue("p", 1, attempts=0)
    with pytest.raises(conveyor.PayloadError):
        await face.enqueue_many([("ok", 1), ("bad", object())])
    assert (await face.counts()).waiting == 0


async def test_durable_enqueue_waits_for_the_append_only_file(face: Face) -> None:
    job = await face.enqueue("important", 1, durable=conveyor.Durable(aof_local=True))
    assert job.durability == conveyor.Durability(aof_local=1, replicas=0)
    with pytest.raises(conveyor.NotDurableError) as refused:
        await face.enqueue("replicated", 1, durable=conveyor.Durable(replicas=1, timeout=0.05))
    assert refused.value.replicas == 0
    assert (await face.counts()).waiting == 2  # stored all the same, and said so


async def test_obliterate_refuses_while_jobs_are_active(face: Face, server_url: str) -> None:
    job = await face.enqueue("a", 1)
    raw = redis.Redis.from_url(server_url)
    keys = conveyor.keys.QueueKeys(face.name)
    raw.zadd(keys.key("active"), {job.id: 9e12})
    raw.hset(keys.job(job.id), "state", "active")
    raw.zrem(keys.key("waiting"), job.id)
    with pytest.raises(conveyor.QueueBusyError):
        await face.obliterate()
    with pytest.raises(conveyor.JobStateError):
        await face.remove(job.id)
    await face.obliterate(force=True)
    assert await face.get_job(job.id) is None
    raw.close()


async def test_an_unreachable_server_gives_one_clear_error() -> None:
    for queue in (conveyor.Queue("q", url="redis://:secret@127.0.0.1:1/0"),
                  conveyor.SyncQueue("q", url="redis://:secret@127.0.0.1:1/0")):  # fmt: skip
        with pytest.raises(conveyor.ServerUnavailable) as failed:
            await Face(queue).enqueue("a", 1)
        message = str(failed.value)
        assert "127.0.0.1:1" in message and "secret" not in message


def test_queue_names_are_checked() -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        conveyor.Queue("no spaces{}")


async def test_concurrent_first_calls_share_one_connection(
    server_url: str, queue_name: str
) -> None:
    queue = conveyor.Queue(queue_name, url=server_url)
    jobs = await asyncio.gather(*(queue.enqueue("a", i, delay=60) for i in range(8)))
    assert len({j.id for j in jobs}) == 8
    assert all(j.due_at is not None and j.due_at > j.created_at for j in jobs)
    await queue.obliterate(force=True)
    await queue.close()  # a second, leaked connection would warn (warnings are errors here)


async def test_a_coded_error_after_a_script_reload_is_still_translated(
    face: Face, server_url: str
) -> None:
    job = await face.enqueue("a", 1)
    keys = conveyor.keys.QueueKeys(face.name)
    raw = redis.Redis.from_url(server_url)
    raw.hset(keys.job(job.id), "state", "active")
    raw.script_flush()  # the next call meets NOSCRIPT, reloads, and its reply is an error
    raw.close()
    with pytest.raises(conveyor.JobStateError):
        await face.remove(job.id)
