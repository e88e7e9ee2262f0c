"""Enqueue as the server receives it: packed batches, ids, stored fields, the lean path."""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from collections.abc import AsyncIterator

import pytest
import redis

import conveyor
from conveyor import Dedup, JobSpec, JobState, ops
from conveyor.keys import QueueKeys
from tests.conftest import CLUSTER_MODE


@pytest.fixture
async def backoff_queue(server_url: str, queue_name: str) -> AsyncIterator[conveyor.Queue]:
    options = conveyor.QueueOptions(backoff=conveyor.Fixed(7.0), max_attempts=4)
    queue = conveyor.Queue(queue_name, url=server_url, options=options)
    yield queue
    await queue.obliterate(force=True)
    await queue.close()


def test_generated_ids_are_32_hex_digits_and_unique() -> None:
    ids = ops.new_job_ids(1000) + ops.new_job_ids(1000)
    assert all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in ids)
    assert len(set(ids)) == 2000


def test_a_forked_child_draws_its_own_ids() -> None:
    before = ops.new_job_ids(3)
    read, write = os.pipe()
    with warnings.catch_warnings():  # fork of a threaded test process: the child only writes
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(ops.new_job_ids(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = ops.new_job_ids(3)
    assert len(child) == 3
    assert not set(child) & set(parent + before)
    assert child[0][:20] != parent[0][:20]  # a new random prefix, not the parent's counter


async def test_a_mixed_batch_returns_what_it_stored(queue: conveyor.Queue) -> None:
    await queue.enqueue("old", {"v": 0}, id="taken")
    holder = await queue.enqueue("dedup", 0, dedup=Dedup("k", 60))
    jobs = await queue.enqueue_many([
        ("plain", {"i": 1}),
        JobSpec("options", [1, "é"], id="o-1", priority=3, attempts=5, timeout=2.5,
                retention=30, meta={"trace": "t"}),
        JobSpec("later", None, delay=60),
        JobSpec("at", 1, run_at=4102444800.0),
        JobSpec("again", {"v": 9}, id="taken"),
        JobSpec("dup", 1, dedup=Dedup("k", 60)),
        ("plain", {"i": 2}),
        JobSpec("grouped", 1, group="tenant-a"),
    ])  # fmt: skip
    states = [job.state for job in jobs]
    assert states == [JobState.WAITING, JobState.WAITING, JobState.DELAYED, JobState.DELAYED,
                      JobState.WAITING, JobState.WAITING, JobState.WAITING,
                      JobState.WAITING]  # fmt: skip
    assert jobs[4].payload == {"v": 0} and jobs[4].name == "old"  # the existing job
    assert jobs[5].id == holder.id  # the deduplication key's holder
    for job in (*jobs[:4], *jobs[6:]):
        stored = await queue.get_job(job.id)
        assert stored is not None
        assert (stored.name, stored.payload, stored.state) == (job.name, job.payload, job.state)
        assert (stored.priority, stored.max_attempts, stored.timeout, stored.group) == (
            job.priority, job.max_attempts, job.timeout, job.group)  # fmt: skip
        assert stored.options == job.options
        assert stored.due_at == pytest.approx(job.due_at, abs=1.0)
    assert jobs[1].options == {"trace": "t"} and jobs[7].group == "tenant-a"
    assert jobs[3].due_at == pytest.approx(4102444800.0)
    counts = await queue.counts()
    assert (counts.waiting, counts.delayed) == (6, 2)
    waiting = [job.name for job in await queue.list_jobs("waiting")]
    assert waiting == ["options", "old", "dedup", "plain", "plain"]  # priority, then FIFO


async def test_fields_at_their_default_are_not_stored_but_read_back(
    queue: conveyor.Queue, server_url: str
) -> None:
    job = await queue.enqueue("a", 1)
    raw = redis.Redis.from_url(server_url)
    fields = raw.hgetall(QueueKeys(queue.name).job(job.id))
    raw.close()
    assert not {b"attempt", b"stalls", b"timeout_ms", b"options"} & set(fields)
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert (stored.attempt, stored.stalls, stored.timeout, stored.options) == (0, 0, None, {})


async def test_pairs_carry_the_queue_backoff(backoff_queue: conveyor.Queue) -> None:
    (job,) = await backoff_queue.enqueue_many([("a", 1)])
    stored = await backoff_queue.get_job(job.id)
    assert stored is not None
    assert job.options == stored.options == {"backoff": {"type": "fixed", "seconds": 7.0,
                                                          "jitter": 0.0}}  # fmt: skip
    assert job.max_attempts == stored.max_attempts == 4


async def test_a_call_larger_than_one_batch_keeps_its_order(
    queue: conveyor.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "_BATCH_BYTES", 40)  # a few jobs per MessagePack batch
    jobs = await queue.enqueue_many([("n", {"i": i, "pad": "x" * 10}) for i in range(25)])
    assert [job.state for job in jobs] == [JobState.WAITING] * 25
    waiting = await queue.list_jobs("waiting", limit=100)
    assert [job.payload["i"] for job in waiting] == list(range(25))


async def test_a_bad_item_in_a_batch_writes_nothing(queue: conveyor.Queue) -> None:
    with pytest.raises(conveyor.PayloadError, match="expected a JobSpec"):
        await queue.enqueue_many([("ok", 1), ["not", "a tuple"]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="job name must be 1-200 characters"):
        await queue.enqueue_many([("ok", 1), ("", 2)])
    assert (await queue.counts()).waiting == 0


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_a_dropped_connection_is_replaced_on_the_next_call(
    face: str, server_url: str, queue_name: str
) -> None:
    queue = conveyor.Queue(queue_name, url=server_url)
    sync_queue = conveyor.SyncQueue(queue_name, url=server_url)
    raw = redis.Redis.from_url(server_url)
    for _ in range(2):
        if face == "async":
            await queue.enqueue("a", 1)
        else:
            sync_queue.enqueue("a", 1)
        raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert (await queue.counts()).waiting == 2
    raw.close()
    sync_queue.close()
    await queue.obliterate(force=True)
    await queue.close()


async def test_a_debounce_in_the_batch_of_its_holder_moves_it_once(queue: conveyor.Queue) -> None:
    debounce = Dedup("k", 60, debounce=True)
    jobs = await queue.enqueue_many([
        ("before", 0),
        JobSpec("d", {"v": 1}, dedup=debounce, delay=0),
        ("between", 0),
        JobSpec("d", {"v": 2}, dedup=debounce, delay=0),
    ])  # fmt: skip
    assert jobs[3].id == jobs[1].id
    waiting = await queue.list_jobs("waiting")
    assert [(job.name, job.payload) for job in waiting] == [
        ("before", 0), ("between", 0), ("d", {"v": 2})]  # fmt: skip
    assert (await queue.counts()).waiting == 3


async def test_a_batch_leaves_the_event_stream_trimmed(server_url: str, queue_name: str) -> None:
    options = conveyor.QueueOptions(events_maxlen=100)
    async with conveyor.Queue(queue_name, url=server_url, options=options) as queue:
        await queue.enqueue_many([("a", i) for i in range(1000)])
        await queue.enqueue("one", 0)
        raw = redis.Redis.from_url(server_url)
        length = raw.xlen(QueueKeys(queue_name).key("events"))
        raw.close()
        assert 100 <= length < 300  # MAXLEN ~ keeps whole stream nodes (100 entries each)
        await queue.obliterate(force=True)


async def test_single_enqueues_keep_the_event_stream_trimmed(
    server_url: str, queue_name: str
) -> None:
    options = conveyor.QueueOptions(events_maxlen=10)
    async with conveyor.Queue(queue_name, url=server_url, options=options) as queue:
        for i in range(400):
            await queue.enqueue("one", i)
        raw = redis.Redis.from_url(server_url)
        length = raw.xlen(QueueKeys(queue_name).key("events"))
        raw.close()
        assert length < 250  # MAXLEN ~ keeps whole stream nodes (100 entries each)
        await queue.obliterate(force=True)


async def test_a_lean_call_held_past_the_read_timeout_is_cut_and_sent_again(
    server_url: str, queue_name: str
) -> None:
    if CLUSTER_MODE:
        pytest.skip("single server only: a cluster client never takes the lean path")
    url = f"{server_url}{'&' if '?' in server_url else '?'}socket_timeout=1"
    queue = conveyor.Queue(queue_name, url=url)
    raw = redis.Redis.from_url(server_url)
    try:
        await queue.enqueue("a", 1)  # opens the lean connection
        me = raw.client_id()
        before = {c["id"] for c in raw.client_list()} - {me}
        raw.execute_command("CLIENT", "PAUSE", 4000, "WRITE")  # the server holds the next call
        job = await asyncio.wait_for(queue.enqueue("a", 2), 60)
        after = {c["id"] for c in raw.client_list()} - {me}
        assert job.payload == 2
        # The held connection was cut by the watchdog (a read timeout of 1 s), and the call
        # went again over another connection, which the server answered after the pause.
        assert before - after
        assert (await queue.counts()).waiting >= 2
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")
        raw.close()
        await queue.obliterate(force=True)
        await queue.close()
