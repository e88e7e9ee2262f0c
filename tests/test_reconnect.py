"""When the server goes away and comes back, producers and workers recover by themselves.

A producer call during the outage fails with one clear ``ServerUnavailable`` after a short
bounded retry, or, with ``wait_for_server`` in the URL, waits up to that long; workers log
the outage once and resume. Each test runs its own server on a loopback port, so it can
stop and start it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor.worker.fetcher import Fetcher
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for
from tests.servers import ServerProcess, valkey

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with valkey(tmp_path / "server") as running:
        yield running


def _restart_later(server: ServerProcess, delay: float) -> threading.Thread:
    def restart() -> None:
        time.sleep(delay)
        server.start()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


async def test_a_producer_fails_fast_and_clearly_then_recovers(
    server: ServerProcess, queue_name: str
) -> None:
    async with conveyor.Queue(queue_name, url=server.url) as queue:
        await queue.enqueue("before", 1)
        server.stop()
        started = time.monotonic()
        with pytest.raises(conveyor.ServerUnavailable, match=f"127.0.0.1:{server.port}"):
            await queue.enqueue("during", 2)
        assert time.monotonic() - started < 10  # a short bounded retry, not a hang
        server.start()
        await queue.enqueue("after", 3)  # the same queue object reconnects by itself
        assert (await queue.counts()).waiting == 2  # the first job survived the restart


def test_the_sync_face_fails_fast_too(server: ServerProcess, queue_name: str) -> None:
    with conveyor.SyncQueue(queue_name, url=server.url) as queue:
        queue.enqueue("before", 1)
        server.stop()
        started = time.monotonic()
        with pytest.raises(conveyor.ServerUnavailable):
            queue.enqueue("during", 2)
        assert time.monotonic() - started < 10
        server.start()
        assert queue.enqueue("after", 3).state is conveyor.JobState.WAITING


async def test_wait_for_server_rides_out_a_restart(
    server: ServerProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{server.url}/?wait_for_server=20"
    async with conveyor.Queue(queue_name, url=url) as queue:
        await queue.enqueue("before", 1)
        server.stop()
        restart = _restart_later(server, 1.5)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="conveyor.connection"):
            jobs = await asyncio.gather(*(queue.enqueue("during", n) for n in range(3)))
        waited = time.monotonic() - started
        restart.join(30)
        assert not restart.is_alive(), "the server did not restart"
        assert {job.state for job in jobs} == {conveyor.JobState.WAITING}
        assert 1.0 < waited < 15
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "waiting up to 20s" in m]) == 1  # once, not per call
        assert len([m for m in messages if "reachable again" in m]) == 1


def test_wait_for_server_is_bounded(server: ServerProcess, queue_name: str) -> None:
    with conveyor.SyncQueue(queue_name, url=f"{server.url}?wait_for_server=1.5") as queue:
        queue.enqueue("before", 1)
        server.stop()
        started = time.monotonic()
        with pytest.raises(conveyor.ServerUnavailable):
            queue.enqueue("during", 2)
        assert 1.5 <= time.monotonic() - started < 10


def test_a_bad_wait_for_server_is_a_configuration_error(queue_name: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="wait_for_server"):
        conveyor.SyncQueue(queue_name, url="redis://127.0.0.1:1/?wait_for_server=soon").counts()


async def test_a_worker_resumes_by_itself_and_logs_the_outage_once(
    server: ServerProcess,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done: list[int] = []
    failures: list[str] = []  # each failed fetch or blocked read of the worker
    report_outage = Fetcher._report_outage

    def counted(fetcher: Fetcher, exc: conveyor.ServerUnavailable) -> None:
        failures.append(str(exc))
        report_outage(fetcher, exc)

    monkeypatch.setattr(Fetcher, "_report_outage", counted)
    worker = conveyor.Worker(queue_name, url=server.url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def record(ctx: conveyor.JobContext, payload: int) -> None:
        done.append(payload)

    caplog.set_level(logging.INFO, logger="conveyor")
    async with conveyor.Queue(queue_name, url=server.url) as queue, RunningWorker(worker):
        first = await queue.enqueue("record", 1)
        await queue.result(first.id, timeout=30)  # acknowledged: it cannot stall and run again
        assert done == [1]
        server.stop()
        await wait_for(lambda: len(failures) >= 3)  # several fetch attempts fail, with backoff
        server.start()
        await queue.enqueue("record", 2)
        await wait_for(lambda: done == [1, 2])
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    outage = [m for m in messages if "retrying with backoff" in m]
    assert len(outage) == 1, messages
    assert any("reachable again" in m for m in messages)


async def test_a_worker_started_while_the_server_is_down_waits_for_it(
    server: ServerProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[int] = []
    worker = conveyor.Worker(queue_name, url=server.url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def record(ctx: conveyor.JobContext, payload: int) -> None:
        done.append(payload)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    caplog.set_level(logging.INFO, logger="conveyor")
    server.stop()
    async with RunningWorker(worker) as running:
        await wait_for(lambda: any("waiting until it answers" in m for m in warnings()))
        await asyncio.to_thread(server.start)
        async with conveyor.Queue(queue_name, url=server.url) as queue:
            await queue.enqueue("record", 1)
            await wait_for(lambda: done == [1])
        assert running.queues  # it laid out its queues once the server answered
    outage = [m for m in warnings() if "waiting until it answers" in m]
    assert len(outage) == 1, warnings()  # logged once, however many tries failed
    assert f"127.0.0.1:{server.port}" in outage[0]
    assert any("is reachable: starting" in m for m in warnings()), warnings()


async def test_a_bounded_start_up_wait_gives_up_clearly(queue_name: str) -> None:
    options = dataclasses.replace(WORKER_TEST_OPTIONS, startup_timeout=0.5)
    worker = conveyor.Worker(queue_name, url="redis://127.0.0.1:1", options=options)
    started = time.monotonic()
    with pytest.raises(conveyor.ServerUnavailable) as caught:
        await asyncio.wait_for(worker.serve(), 30)
    assert time.monotonic() - started >= 0.5
    message = str(caught.value)
    assert message.startswith("cannot reach the Redis/Valkey server at redis://127.0.0.1:1")
    assert message.endswith("gave up after waiting 0.5s (startup_timeout)")


async def test_stopping_a_worker_that_waits_for_the_server_ends_the_wait(queue_name: str) -> None:
    worker = conveyor.Worker(queue_name, url="redis://127.0.0.1:1", options=WORKER_TEST_OPTIONS)
    serving = asyncio.create_task(worker.serve())
    await wait_for(lambda: worker._wake is not None)
    worker.stop()
    await asyncio.wait_for(serving, 10)  # returns without an error and without starting


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_start_up_and_shutdown_waits_are_checked(value: float) -> None:
    with pytest.raises(ValueError, match="startup_timeout must be a finite number of seconds"):
        conveyor.WorkerOptions(startup_timeout=value)
    with pytest.raises(ValueError, match="shutdown_grace must be a finite number of seconds"):
        conveyor.WorkerOptions(shutdown_grace=value)
