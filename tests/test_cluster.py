"""Conveyor on a real local cluster of three primaries: what only a cluster can show.

The whole behavioural suite also runs on a cluster (``CONVEYOR_TEST_CLUSTER=1``, a second
pass in CI); these tests check the cluster-specific parts: queues spread over the shards,
scripts reloaded on the node that lost them, a ``WAITAOF`` sent to the node that took the
write, and clients passed in by the application.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio.cluster
import redis.cluster

import conveyor
from conveyor import connection
from conveyor.keys import QueueKeys
from conveyor.lua import script
from tests import servers
from tests.conftest import CLUSTER_MODE, WORKER_TEST_OPTIONS, RunningWorker, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The session's cluster in cluster mode, else a cluster of this module's own."""
    if CLUSTER_MODE:
        yield request.getfixturevalue("server_url")
        return
    with servers.local_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def raw(cluster_url: str) -> Iterator[redis.cluster.RedisCluster]:
    client = connection.sync_client(cluster_url)
    assert isinstance(client, redis.cluster.RedisCluster)
    yield client
    client.close()


@pytest.fixture
def names() -> list[str]:
    """Twelve fresh queue names: enough to land on every one of three shards."""
    tag = uuid.uuid4().hex[:8]
    return [f"spread-{tag}-{n}" for n in range(12)]


@pytest.fixture
async def queues(cluster_url: str, names: list[str]) -> AsyncIterator[list[conveyor.Queue]]:
    opened = [conveyor.Queue(name, url=cluster_url) for name in names]
    yield opened
    for queue in opened:
        await queue.obliterate(force=True)
        await queue.close()


def _node_of(raw: redis.cluster.RedisCluster, queue: str) -> str:
    node = raw.get_node_from_key(QueueKeys(queue).key("waiting"))  # type: ignore[no-untyped-call]
    return str(node.name)


async def test_queues_spread_over_the_shards_and_one_worker_serves_them_all(
    cluster_url: str, queues: list[conveyor.Queue], raw: redis.cluster.RedisCluster
) -> None:
    assert len({_node_of(raw, q.name) for q in queues}) == 3
    done: set[str] = set()
    worker = conveyor.Worker([q.name for q in queues], url=cluster_url,
                             options=WORKER_TEST_OPTIONS)  # fmt: skip

    @worker.handler
    async def mark(ctx: conveyor.JobContext, payload: str) -> None:
        done.add(payload)

    async with RunningWorker(worker):
        for queue in queues:
            await queue.enqueue("mark", queue.name)
        await wait_for(lambda: done == {q.name for q in queues})
    for queue in queues:
        counts = await queue.counts()
        assert (counts.completed, counts.waiting, counts.active) == (1, 0, 0)


def _flush_scripts(raw: redis.cluster.RedisCluster) -> None:
    for node in raw.get_primaries():  # type: ignore[no-untyped-call]
        raw.execute_command("SCRIPT", "FLUSH", target_nodes=node)  # type: ignore[no-untyped-call]


def _nodes_knowing(raw: redis.cluster.RedisCluster, sha: str) -> set[str]:
    known = set()
    for node in raw.get_primaries():  # type: ignore[no-untyped-call]
        (exists,) = raw.execute_command("SCRIPT", "EXISTS", sha, target_nodes=node)  # type: ignore[no-untyped-call]
        if exists:
            known.add(str(node.name))
    return known


async def test_scripts_are_loaded_again_on_the_node_that_lost_them(
    cluster_url: str, queues: list[conveyor.Queue], raw: redis.cluster.RedisCluster
) -> None:
    first, sync_name = queues[0], queues[1].name
    enqueue_sha = script("enqueue").sha
    await first.enqueue("a", 1)
    _flush_scripts(raw)
    await first.enqueue("b", 2)  # one script call: NOSCRIPT, load, call again
    assert _nodes_knowing(raw, enqueue_sha) == {_node_of(raw, first.name)}
    with conveyor.SyncQueue(sync_name, url=cluster_url) as sync_queue:
        sync_queue.enqueue("c", 3)
        _flush_scripts(raw)
        sync_queue.enqueue_many([("d", 4), ("e", 5)])
        assert _nodes_knowing(raw, enqueue_sha) == {_node_of(raw, sync_name)}
        assert sync_queue.counts().waiting == 3
    assert (await first.counts()).waiting == 2


async def test_a_durable_enqueue_waits_on_the_node_that_took_the_write(
    queues: list[conveyor.Queue], raw: redis.cluster.RedisCluster
) -> None:
    # Every queue's WAITAOF must go to its own shard (a WAITAOF elsewhere would count the
    # writes of another connection: zero, and the call would fail).
    for queue in queues[:6]:
        job = await queue.enqueue("a", 1, durable=conveyor.Durable(aof_local=True))
        assert job.durability == conveyor.Durability(aof_local=1, replicas=0)
    assert len({_node_of(raw, q.name) for q in queues[:6]}) > 1


def _blocked_clients(raw: redis.cluster.RedisCluster) -> int:
    """Clients blocked in a command (BLPOP here), on all the nodes together."""
    infos = raw.info("clients", target_nodes=redis.cluster.RedisCluster.ALL_NODES)
    return sum(int(info["blocked_clients"]) for info in infos.values())


async def test_blocked_workers_wake_on_every_shard(
    cluster_url: str, queues: list[conveyor.Queue], raw: redis.cluster.RedisCluster
) -> None:
    started: dict[str, float] = {}
    options = conveyor.WorkerOptions(concurrency=4, idle_block=5.0, lock_ttl=2.0,
                                     lock_renew_interval=0.5, shutdown_grace=5.0)  # fmt: skip
    worker = conveyor.Worker([q.name for q in queues[:6]], url=cluster_url, options=options)

    @worker.handler
    async def mark(ctx: conveyor.JobContext, payload: str) -> None:
        started[payload] = asyncio.get_running_loop().time()

    before = _blocked_clients(raw)
    async with RunningWorker(worker):
        # Every fetcher is blocked on its queue's marker, on the node serving that queue.
        await wait_for(lambda: _blocked_clients(raw) >= before + 6, timeout=30)
        loop = asyncio.get_running_loop()
        for queue in queues[:6]:
            sent = loop.time()
            await queue.enqueue("mark", queue.name)
            await wait_for(lambda queue=queue: queue.name in started, timeout=10)
            assert started[queue.name] - sent < 1.0  # woken, not the 5 s idle timeout


async def test_clients_passed_in_by_the_application(cluster_url: str, names: list[str]) -> None:
    target = connection.parse_url(cluster_url)
    seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
    client = redis.asyncio.RedisCluster(startup_nodes=seeds)
    ran: list[int] = []
    worker = conveyor.Worker(names[0], client=client, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def add(ctx: conveyor.JobContext, payload: int) -> None:
        ran.append(payload)

    try:
        queue = conveyor.Queue(names[0], client=client)
        async with RunningWorker(worker):
            await queue.enqueue("add", 7)
            await wait_for(lambda: ran == [7])
        await queue.obliterate(force=True)
    finally:
        await client.aclose()
    assert connection.client_url(client).startswith("redis+cluster://")


async def test_a_whole_cluster_restart_fails_fast_then_everyone_recovers(
    tmp_path: Path, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor")
    ran: list[int] = []
    with servers.local_cluster(tmp_path / "own") as cluster:
        worker = conveyor.Worker(queue_name, url=cluster.url, options=WORKER_TEST_OPTIONS)

        @worker.handler
        async def add(ctx: conveyor.JobContext, payload: int) -> None:
            ran.append(payload)

        async with conveyor.Queue(queue_name, url=cluster.url) as queue, RunningWorker(worker):
            first = await queue.enqueue("add", 1)
            await queue.result(first.id, timeout=30)  # acknowledged: it cannot run again
            assert ran == [1]
            cluster.stop()
            started = time.monotonic()
            with pytest.raises(conveyor.ServerUnavailable, match="redis\\+cluster://"):
                await queue.enqueue("add", 2)
            assert time.monotonic() - started < 10
            # The worker's fetches fail meanwhile, with backoff: wait until it said so.
            await wait_for(lambda: "retrying with backoff" in caplog.text, timeout=30)
            for node in cluster.nodes:
                node.start()
            await wait_for(lambda: _enqueued(queue, 3), timeout=30)
            await wait_for(lambda: ran == [1, 3], timeout=30)


async def _enqueued(queue: conveyor.Queue, payload: int) -> bool:
    try:
        await queue.enqueue("add", payload, id=f"job-{payload}")
    except conveyor.ServerUnavailable:
        return False
    return True


async def test_a_partitioned_queue_spreads_over_the_shards(
    cluster_url: str, raw: redis.cluster.RedisCluster
) -> None:
    name = f"parted-{uuid.uuid4().hex[:8]}"
    queue = conveyor.Queue(name, url=cluster_url, partitions=8)
    try:
        # One round trip writes to every partition, each followed by its own WAITAOF,
        # which must reach the shard that took that partition's write.
        jobs = await queue.enqueue_many(
            [("mark", n) for n in range(16)], durable=conveyor.Durable(aof_local=True)
        )
        assert {job.durability for job in jobs} == {conveyor.Durability(aof_local=1, replicas=0)}
        assert len({_node_of(raw, part.queue) for part in queue.parts}) == 3
        done: set[int] = set()
        worker = conveyor.Worker(name, url=cluster_url, options=WORKER_TEST_OPTIONS)

        @worker.handler
        async def mark(ctx: conveyor.JobContext, payload: int) -> None:
            done.add(payload)

        async with RunningWorker(worker):
            await wait_for(lambda: done == set(range(16)))
        assert (await queue.counts()).waiting == 0
    finally:
        await queue.obliterate(force=True)
        await queue.close()
