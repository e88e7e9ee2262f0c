"""Retention by age is exact for readers: a finished job past its retention is not shown by
get_job, list_jobs, the dead-letter list, the CLI or the dashboard, even though nothing has
completed since (so nothing has trimmed it yet)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from starlette.testclient import TestClient

import conveyor
from conveyor import JobContext, JobState, QueueOptions
from conveyor.cli import main
from conveyor.dashboard import create_app
from conveyor.keys import QueueKeys
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

pytestmark = pytest.mark.timeout(60)

#: Short enough to wait out, long enough to see the job before it expires.
KEEP = 0.5
SHORT = QueueOptions(completed_keep_age=KEEP, dead_keep_age=KEEP)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.05)


def stored(url: str, queue: str, job_id: str) -> bool:
    """Whether the job's hash is still in the server (not trimmed yet)."""
    with redis.Redis.from_url(url) as client:
        return bool(client.exists(QueueKeys(queue).job(job_id)))


@pytest.fixture
def short_queue(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    q = conveyor.SyncQueue(queue_name, url=server_url, options=SHORT)
    yield q
    q.obliterate(force=True)
    q.close()


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def dashboard(url: str, queue: str) -> TestClient:
    """A test client of the dashboard, as a browser on the same machine."""
    app = create_app(url, queues=[queue])
    return TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))


def test_a_dead_job_past_its_retention_is_gone_for_every_reader(
    short_queue: conveyor.SyncQueue, server_url: str
) -> None:
    q = short_queue
    job = q.enqueue("doomed", 1)
    assert q.dead_letters.kill(job.id)
    dead = q.get_job(job.id)
    assert dead is not None and dead.state is JobState.DEAD
    assert [j.id for j in q.list_jobs("dead")] == [job.id]

    wait_until(lambda: q.counts().dead == 0)  # counts() already drops it

    assert q.get_job(job.id) is None
    assert q.list_jobs("dead") == []
    assert q.dead_letters.list().jobs == []
    assert q.metrics().oldest_dead_age is None
    listed = cli("jobs", q.name, "--state", "dead", "--json")
    assert listed.exit_code == 0, listed.output
    assert job.id not in listed.output
    shown = cli("job", q.name, job.id)
    assert shown.exit_code == 1 and "no job" in shown.output
    with dashboard(server_url, q.name) as web:
        assert web.get(f"/api/queues/{q.name}/jobs/{job.id}").status_code == 404
        page = web.get(f"/api/queues/{q.name}/jobs", params={"state": "dead"}).json()
        assert page["jobs"] == []
        named = web.get(
            f"/api/queues/{q.name}/jobs", params={"state": "dead", "name": "doomed"}
        ).json()
        assert named["jobs"] == []
        assert web.get(f"/api/queues/{q.name}/dlq").json()["jobs"] == []
    assert stored(server_url, q.name, job.id)  # nothing trimmed it: the readers hid it


def test_a_cancelled_job_past_its_retention_is_gone(
    short_queue: conveyor.SyncQueue, server_url: str
) -> None:
    q = short_queue
    job = q.enqueue("later", delay=3600)
    assert q.cancel(job.id) == "cancelled"
    assert [j.id for j in q.list_jobs("cancelled")] == [job.id]

    wait_until(lambda: q.get_job(job.id) is None)

    assert q.list_jobs("cancelled") == []
    assert q.counts().cancelled == 0
    assert stored(server_url, q.name, job.id)


def test_a_partitioned_queue_hides_expired_jobs_too(server_url: str, queue_name: str) -> None:
    with conveyor.SyncQueue(queue_name, url=server_url, options=SHORT, partitions=3) as q:
        jobs = q.enqueue_many([("doomed", n) for n in range(3)])
        for job in jobs:
            assert q.dead_letters.kill(job.id)
        assert len(q.list_jobs("dead")) == 3

        wait_until(lambda: q.counts().dead == 0)

        assert [q.get_job(job.id) for job in jobs] == [None] * 3
        assert q.list_jobs("dead") == []
        assert q.dead_letters.list().jobs == []
        with dashboard(server_url, q.name) as web:
            page = web.get(f"/api/queues/{q.name}/jobs", params={"state": "dead"}).json()
            assert page["jobs"] == []
        q.obliterate(force=True)


async def test_a_completed_job_past_its_retention_is_gone_without_another_completion(
    server_url: str, queue_name: str
) -> None:
    queue = conveyor.Queue(queue_name, url=server_url, options=SHORT)
    worker = conveyor.Worker(
        queue_name, url=server_url, options=WORKER_TEST_OPTIONS, queue_options=SHORT
    )

    @worker.handler
    async def work(ctx: JobContext, payload: int) -> int:
        return payload * 2

    try:
        kept = await queue.enqueue("work", 1, retention=3600)  # its own, longer retention
        job = await queue.enqueue("work", 2)
        async with RunningWorker(worker):
            assert (await queue.result(job.id, timeout=30)) == 4
            assert (await queue.result(kept.id, timeout=30)) == 2

        async def gone() -> bool:
            return await queue.get_job(job.id) is None

        await wait_for(gone)  # no worker runs: nothing completes, nothing trims

        assert [j.id for j in await queue.list_jobs("completed")] == [kept.id]
        assert (await queue.counts()).completed == 1
        assert stored(server_url, queue_name, job.id)
        assert (await queue.get_job(kept.id)) is not None
    finally:
        await queue.obliterate(force=True)
        await queue.close()
