"""Partitioned queues: N ordinary queues, each in its own slot, used as one queue."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import conveyor
from conveyor import ConveyorError, DeadFilter, JobContext, JobSpec, JobState, PermanentError
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

PARTITIONS = 4


@pytest.fixture
async def partitioned(server_url: str, queue_name: str) -> AsyncIterator[conveyor.Queue]:
    q = conveyor.Queue(queue_name, url=server_url, partitions=PARTITIONS)
    yield q
    await q.obliterate(force=True)
    await q.close()


async def partition_counts(queue: conveyor.Queue, url: str) -> list[int]:
    """Waiting jobs per partition, read through each partition as a plain queue."""
    waiting = []
    for index in range(PARTITIONS):
        async with conveyor.Queue(f"{queue.name}~{index}", url=url) as part:
            waiting.append((await part.counts()).waiting)
    return waiting


async def test_jobs_spread_round_robin_and_count_as_one_queue(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    for n in range(40):
        await partitioned.enqueue("work", {"n": n})
    await partitioned.enqueue_many([("work", {"n": n}) for n in range(40, 80)])
    assert partitioned.partitioned
    assert (await partitioned.counts()).waiting == 80
    assert await partition_counts(partitioned, server_url) == [20] * PARTITIONS


async def test_a_partition_key_keeps_its_jobs_together_and_in_order(
    partitioned: conveyor.Queue,
) -> None:
    specs = [JobSpec("work", {"n": n}, partition_key=f"user-{n % 3}") for n in range(30)]
    jobs = await partitioned.enqueue_many(specs)
    assert [job.payload["n"] for job in jobs] == list(range(30))  # input order kept
    by_key: dict[str, set[str]] = {}
    for spec, job in zip(specs, jobs, strict=True):
        assert spec.partition_key is not None
        by_key.setdefault(spec.partition_key, set()).add(job.queue)
    assert all(len(queues) == 1 for queues in by_key.values())
    one = next(iter(by_key["user-0"]))
    waiting = await partitioned.list_jobs("waiting", limit=100)
    order = [job.payload["n"] for job in waiting if job.queue == one and job.payload["n"] % 3 == 0]
    assert order == sorted(order) and len(order) == 10


async def test_the_number_of_partitions_is_found_and_fixed(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    await partitioned.enqueue("work")
    async with conveyor.Queue(partitioned.name, url=server_url) as found:
        await found.counts()
        assert len(found.parts) == PARTITIONS
    with pytest.raises(ConveyorError, match="4 partition"):
        async with conveyor.Queue(partitioned.name, url=server_url, partitions=8) as other:
            await other.counts()


async def test_an_unpartitioned_queue_with_jobs_cannot_become_partitioned(
    queue: conveyor.Queue, server_url: str
) -> None:
    await queue.enqueue("work")
    with pytest.raises(ConveyorError, match="unpartitioned"):
        async with conveyor.Queue(queue.name, url=server_url, partitions=2) as other:
            await other.enqueue("work")
    assert (await queue.counts()).waiting == 1
    assert not queue.partitioned


async def test_jobs_are_found_by_id_in_any_partition(partitioned: conveyor.Queue) -> None:
    first = await partitioned.enqueue("work", {"v": 1}, id="order-17")
    again = await partitioned.enqueue("work", {"v": 2}, id="order-17")
    assert again.id == first.id and again.payload == {"v": 1}  # idempotent across partitions
    keyed = await partitioned.enqueue("work", id="k-1", partition_key="tenant-9", delay=60)
    fetched = await partitioned.get_job(keyed.id)
    assert fetched is not None and fetched.state is JobState.DELAYED
    assert await partitioned.set_priority(keyed.id, 5)
    assert await partitioned.promote(keyed.id)
    assert (await partitioned.get_job(keyed.id)).state is JobState.WAITING  # type: ignore[union-attr]
    assert await partitioned.cancel(first.id) == "cancelled"
    assert await partitioned.remove(keyed.id)
    assert await partitioned.get_job(keyed.id) is None
    assert not await partitioned.remove("no-such-job")
    with pytest.raises(conveyor.JobNotFound, match=partitioned.name):
        await partitioned.wait("no-such-job", timeout=1)


async def test_pages_merge_partitions_in_one_queue_order(partitioned: conveyor.Queue) -> None:
    await partitioned.enqueue_many([JobSpec("work", {"n": n}) for n in range(12)])
    urgent = await partitioned.enqueue("work", {"n": "urgent"}, priority=9)
    pages = [await partitioned.list_jobs("waiting", offset=o, limit=5) for o in (0, 5, 10)]
    assert [len(page) for page in pages] == [5, 5, 3]
    listed = [job for page in pages for job in page]
    assert listed[0].id == urgent.id  # the highest priority first, whatever its partition
    numbers = [job.payload["n"] for job in listed[1:]]
    assert sorted(numbers) == list(range(12))  # every job once, no page overlaps
    for part in {job.queue for job in listed[1:]}:  # each partition keeps its FIFO order
        own = [job.payload["n"] for job in listed[1:] if job.queue == part]
        assert own == sorted(own)


async def test_a_worker_serves_every_partition_fairly(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    heavy = [JobSpec("work", {"kind": "heavy"}, partition_key="big-tenant") for _ in range(300)]
    busy = (await partitioned.enqueue_many(heavy))[0].queue
    light = await partitioned.enqueue_many(
        [JobSpec("work", {"kind": "light"}, partition_key=f"small-{n}") for n in range(12)]
    )
    # Jobs of the busy partition wait their turn there; the others must not wait at all.
    elsewhere = {job.id for job in light if job.queue != busy}
    assert len({job.queue for job in light if job.id in elsewhere}) == PARTITIONS - 1
    started: list[tuple[str, str]] = []
    worker = conveyor.Worker(partitioned.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def work(ctx: JobContext, payload: dict[str, Any]) -> None:
        started.append((payload["kind"], ctx.id))
        await asyncio.sleep(0.001)

    async def all_completed() -> bool:
        return (await partitioned.counts()).completed == 312

    async with RunningWorker(worker):
        await wait_for(all_completed, timeout=120)
    order = [job_id for _, job_id in started]
    last_light = max(order.index(job_id) for job_id in elsewhere)
    # Each partition has its own fetcher sharing the worker's slots: the jobs of the quiet
    # partitions do not wait behind the 300 jobs of the busy one.
    assert last_light < 100, last_light
    assert {queue.queue for queue in worker.queues} == {
        f"{partitioned.name}~{i}" for i in range(PARTITIONS)
    }
    counts = await partitioned.counts()
    assert counts.waiting == 0 and counts.completed == 312


async def test_dead_letters_of_all_partitions_read_and_replay_as_one(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    jobs = await partitioned.enqueue_many([JobSpec("doomed", {"n": n}) for n in range(10)])
    worker = conveyor.Worker(partitioned.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def doomed(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise PermanentError(f"bad input {payload['n']}")

    async with RunningWorker(worker):
        for job in jobs:
            await partitioned.wait(job.id, timeout=60)
    dead = partitioned.dead_letters
    first = await dead.list(limit=6)
    assert len(first.jobs) == 6 and first.cursor is not None
    second = await dead.list(cursor=first.cursor, limit=6)
    assert len(second.jobs) == 4 and second.cursor is None
    listed = [job.id for job in first.jobs + second.jobs]
    assert sorted(listed) == sorted(job.id for job in jobs)
    died = [job.finished_at or 0 for job in first.jobs + second.jobs]
    assert died == sorted(died, reverse=True)  # newest first across partitions
    assert {job.queue for job in first.jobs + second.jobs} != {partitioned.name}

    one = await dead.replay([jobs[0].id], payload={"n": "fixed"})
    assert one.moved == 1
    dry = await dead.replay(where=DeadFilter(name="doomed"), dry_run=True)
    assert dry.matched == 9 and dry.moved == 0
    dropped = await dead.drop([jobs[1].id, "never-existed"])
    assert dropped.moved == 1
    replayed = await dead.replay(all=True)
    assert replayed.moved == 8
    counts = await partitioned.counts()
    assert counts.dead == 0 and counts.waiting == 9
    assert (await partitioned.get_job(jobs[0].id)).payload == {"n": "fixed"}  # type: ignore[union-attr]


async def test_events_of_all_partitions_arrive_in_one_stream(
    partitioned: conveyor.Queue,
) -> None:
    before = await partitioned.enqueue("work", {"n": "before"})
    oldest = partitioned.events(last_id="0", block=1.0)
    mark = await asyncio.wait_for(oldest.__anext__(), 30)
    await oldest.aclose()  # type: ignore[attr-defined]
    assert mark.job_id == before.id

    stream = partitioned.events(last_id=mark.id, block=1.0)  # resume after it, live
    jobs = await partitioned.enqueue_many([JobSpec("work", {"n": n}) for n in range(8)])
    wanted = {job.id for job in jobs}
    seen: list[conveyor.Event] = []
    while not wanted <= {e.job_id for e in seen}:
        seen.append(await asyncio.wait_for(stream.__anext__(), 30))
    await stream.aclose()  # type: ignore[attr-defined]
    assert {e.queue for e in seen if e.job_id in wanted} == {job.queue for job in jobs}
    stamps = [e.timestamp for e in seen]
    assert stamps == sorted(stamps)  # merged by time


async def test_pause_drain_and_obliterate_cover_every_partition(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    await partitioned.enqueue_many([("work", n) for n in range(8)])
    await partitioned.pause()
    assert (await partitioned.counts()).paused
    await partitioned.resume()
    assert not (await partitioned.counts()).paused
    assert await partitioned.drain() == 8
    await partitioned.enqueue("work")
    await partitioned.obliterate()
    async with conveyor.Queue(partitioned.name, url=server_url) as again:
        await again.counts()
        assert not again.partitioned  # the partition count went with the queue


def test_the_sync_face_uses_partitions_too(server_url: str, queue_name: str) -> None:
    with conveyor.SyncQueue(queue_name, url=server_url, partitions=3) as q:
        jobs = q.enqueue_many([("work", n) for n in range(9)])
        assert Counter(job.queue for job in jobs) == {f"{queue_name}~{i}": 3 for i in range(3)}
        assert q.counts().waiting == 9
        assert q.get_job(jobs[4].id) is not None
        q.obliterate()


def test_the_cli_shows_a_partitioned_queue_as_one(server_url: str, queue_name: str) -> None:
    from conveyor.cli import main
    from tests.cli_runner import invoke_json

    with conveyor.SyncQueue(queue_name, url=server_url, partitions=3) as q:
        q.enqueue_many([("work", n) for n in range(5)])
        made = invoke_json(main, "enqueue", queue_name, "work", "7", "--partition-key", "k")
        (row,) = invoke_json(main, "status", queue_name)["queues"]
        assert (row["queue"], row["waiting"], row["partitions"]) == (queue_name, 6, 3)
        listed = invoke_json(main, "jobs", queue_name, "--state", "waiting")
        assert len(listed) == 6
        shown = invoke_json(main, "job", queue_name, made["id"])
        assert shown["payload"] == 7
        q.obliterate()


async def test_dead_jobs_route_to_a_partitioned_dead_letter_queue(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    target = conveyor.Queue(f"{partitioned.name}-dlq", url=server_url, partitions=2)
    await target.counts()  # declares its partitions
    options = conveyor.QueueOptions(dead_letter_queue=target.name, max_attempts=1)
    worker = conveyor.Worker(partitioned.name, url=server_url, options=WORKER_TEST_OPTIONS,
                             queue_options=options)  # fmt: skip

    @worker.handler
    async def doomed(ctx: JobContext, payload: int) -> None:
        raise ValueError(payload)

    jobs = await partitioned.enqueue_many([("doomed", n) for n in range(6)])

    async def all_routed() -> bool:
        return (await target.counts()).waiting == 6

    async with RunningWorker(worker):
        await wait_for(all_routed, timeout=60)
    copies = await target.list_jobs("waiting", limit=10)
    assert sorted(c.payload["id"] for c in copies) == sorted(job.id for job in jobs)
    assert {c.queue for c in copies} <= {f"{target.name}~0", f"{target.name}~1"}
    await target.obliterate(force=True)
    await target.close()


async def test_a_running_worker_takes_up_partitions_declared_after_it_started(
    server_url: str, queue_name: str
) -> None:
    done: set[int] = set()
    worker = conveyor.Worker(queue_name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def work(ctx: JobContext, payload: int) -> None:
        done.add(payload)

    async with RunningWorker(worker):
        assert [keys.queue for keys in worker.queues] == [queue_name]
        async with conveyor.Queue(queue_name, url=server_url, partitions=3) as later:
            await later.enqueue_many([("work", n) for n in range(9)])
            await wait_for(lambda: done == set(range(9)), timeout=60)
            assert len(worker.queues) == 3
            await later.obliterate(force=True)
