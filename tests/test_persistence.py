"""Jobs survive the embedded server being stopped, or killed, and started again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import conveyor
from conveyor import embedded
from tests.conftest import wait_for


@pytest.fixture
def own_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    yield data_dir
    embedded.stop_server(data_dir)


@pytest.mark.timeout(60)
def test_jobs_survive_a_server_stop_and_start(own_server: Path) -> None:
    info = embedded.ensure_server(own_server)
    with conveyor.SyncQueue("persist", url=info.url) as queue:
        jobs = queue.enqueue_many([("a", i) for i in range(100)])
        delayed = queue.enqueue("later", 1, delay=3600)
    assert embedded.stop_server(own_server)
    assert not embedded.server_status(own_server).running
    info = embedded.ensure_server(own_server)
    with conveyor.SyncQueue("persist", url=info.url) as queue:
        assert queue.counts().waiting == 100
        assert queue.get_job(jobs[42].id).payload == 42
        assert queue.get_job(delayed.id).state is conveyor.JobState.DELAYED


@pytest.mark.timeout(60)
async def test_durable_enqueues_survive_a_killed_server(own_server: Path) -> None:
    info = embedded.ensure_server(own_server)
    durable = conveyor.Durable(aof_local=True)
    async with conveyor.Queue("crash", url=info.url) as queue:
        acknowledged = [(await queue.enqueue("a", i, durable=durable)).id for i in range(50)]
    assert info.pid is not None
    os.kill(info.pid, signal.SIGKILL)
    await wait_for(lambda: not embedded.server_status(own_server).running)
    info = embedded.ensure_server(own_server)
    async with conveyor.Queue("crash", url=info.url) as queue:
        for job_id in acknowledged:
            assert await queue.get_job(job_id) is not None
        assert (await queue.counts()).waiting == 50
