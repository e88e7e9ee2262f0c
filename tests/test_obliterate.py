"""A queue object stays valid after ``obliterate()``: its next enqueue registers the queue
(and a partitioned queue's partition count) again, wherever the queue was obliterated."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner

import conveyor
from conveyor import JobContext, JobState
from conveyor.cli import main
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

pytestmark = pytest.mark.timeout(60)


def listed_by_status(name: str) -> dict[str, Any] | None:
    """The row of ``conveyor status --json`` (every known queue) for ``name``, if any."""
    done = CliRunner().invoke(main, ["status", "--json"])
    assert done.exit_code == 0, done.output
    rows = [row for row in json.loads(done.output)["queues"] if row["queue"] == name]
    return rows[0] if rows else None


@pytest.fixture
async def partitioned(server_url: str, queue_name: str) -> AsyncIterator[conveyor.Queue]:
    q = conveyor.Queue(queue_name, url=server_url, partitions=4)
    yield q
    await q.obliterate(force=True)
    await q.close()


async def test_the_same_object_enqueues_into_a_registered_queue_again(
    queue: conveyor.Queue,
) -> None:
    await queue.enqueue("work", 1)
    await queue.obliterate()
    assert listed_by_status(queue.name) is None

    job = await queue.enqueue("work", 2)

    row = listed_by_status(queue.name)  # a fresh connection, as another process has
    assert row is not None and row["waiting"] == 1
    assert (await queue.get_job(job.id)) is not None


def test_the_sync_face_registers_again_too(sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.enqueue_many([("work", n) for n in range(3)])
    sync_queue.obliterate()

    sync_queue.enqueue_many([("work", n) for n in range(2)])

    row = listed_by_status(sync_queue.name)
    assert row is not None and row["waiting"] == 2


async def test_a_queue_obliterated_by_another_process_is_registered_on_the_next_enqueue(
    queue: conveyor.Queue, server_url: str
) -> None:
    await queue.enqueue("work", 1)  # connected: registered once, long ago
    async with conveyor.Queue(queue.name, url=server_url) as elsewhere:
        await elsewhere.obliterate()
    assert listed_by_status(queue.name) is None

    await queue.enqueue("work", 2, priority=3)  # the option path too

    row = listed_by_status(queue.name)
    assert row is not None and row["waiting"] == 1


async def test_a_partitioned_queue_gets_its_partitions_back_and_its_jobs_run(
    partitioned: conveyor.Queue, server_url: str
) -> None:
    await partitioned.enqueue("work", 0)
    await partitioned.obliterate()

    jobs = await partitioned.enqueue_many([("work", n) for n in range(8)])
    assert len({job.queue for job in jobs}) == 4  # into every partition, as before

    row = listed_by_status(partitioned.name)
    assert row is not None and row["partitions"] == 4 and row["waiting"] == 8
    async with conveyor.Queue(partitioned.name, url=server_url) as fresh:
        assert len(await fresh._parts()) == 4
    worker = conveyor.Worker(partitioned.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def work(ctx: JobContext, payload: int) -> int:
        return payload

    async with RunningWorker(worker):
        await wait_for(lambda: _all_completed(partitioned, jobs))


async def _all_completed(queue: conveyor.Queue, jobs: list[conveyor.Job]) -> bool:
    for job in jobs:
        found = await queue.get_job(job.id)
        if found is None or found.state is not JobState.COMPLETED:
            return False
    return True


async def test_a_schedule_set_after_obliterate_registers_the_queue(
    queue: conveyor.Queue,
) -> None:
    await queue.enqueue("work")
    await queue.obliterate()

    await queue.schedule(conveyor.Schedule(id="tick", name="tick", every=3600))

    row = listed_by_status(queue.name)
    assert row is not None


async def test_a_producer_holding_an_old_partition_count_says_so(
    partitioned: conveyor.Queue, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await partitioned.enqueue("work")
    await partitioned.obliterate()
    async with conveyor.Queue(partitioned.name, url=server_url, partitions=2) as redeclared:
        await redeclared.counts()

    await partitioned.enqueue("work", partition_key="k")

    assert "declared again with 2 partitions while this producer uses 4" in caplog.text
    async with conveyor.Queue(partitioned.name, url=server_url) as fresh:
        assert len(await fresh._parts()) == 2  # the new declaration stands
