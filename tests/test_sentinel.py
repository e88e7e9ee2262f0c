"""A Sentinel URL follows a failover: a real primary, its replica and a Sentinel, on loopback.

Jobs flow while the Sentinel is told to fail over (``SENTINEL FAILOVER``): every job whose
enqueue was acknowledged and confirmed replicated before (or after) the failover runs, and
the worker and the producer carry on against the new primary by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for
from tests.servers import SentinelGroup, sentinel_group

pytestmark = pytest.mark.timeout(60)

REPLICATED = conveyor.Durable(aof_local=False, replicas=1, timeout=5.0)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path / "sentinel") as running:
        yield running


async def _enqueue_replicated(queue: conveyor.Queue, numbers: range, confirmed: list[int]) -> None:
    """Enqueue one job per number; note those the server confirmed were replicated."""
    for number in numbers:
        try:
            await queue.enqueue("record", number, id=f"job-{number}", durable=REPLICATED)
        except conveyor.NotDurableError:
            continue  # stored, but not confirmed replicated: no promise to check
        confirmed.append(number)
        await asyncio.sleep(0.01)


async def test_jobs_and_workers_follow_a_forced_failover(
    group: SentinelGroup, queue_name: str
) -> None:
    url = f"{group.url}?wait_for_server=30"
    ran: set[int] = set()
    worker = conveyor.Worker(queue_name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def record(ctx: conveyor.JobContext, payload: int) -> None:
        ran.add(payload)

    confirmed: list[int] = []
    async with conveyor.Queue(queue_name, url=url) as queue, RunningWorker(worker):
        await _enqueue_replicated(queue, range(0, 40), confirmed)
        old_primary = group.current_primary_port()
        assert old_primary == group.primary.port
        producing = asyncio.create_task(_enqueue_replicated(queue, range(40, 200), confirmed))
        await wait_for(lambda: len(confirmed) >= 45)  # the failover lands mid-stream
        with group.sentinel.client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", group.service)
        await wait_for(lambda: group.current_primary_port() == group.replica.port, timeout=30)
        await asyncio.wait_for(producing, 45)
        after = len(confirmed)
        await _enqueue_replicated(queue, range(200, 220), confirmed)  # the new primary serves
        assert len(confirmed) - after == 20
        await wait_for(lambda: set(confirmed) <= ran, timeout=40)
        counts = await queue.counts()
    assert counts.completed >= len(confirmed)
    assert len(confirmed) >= 60  # not a vacuous test: jobs were confirmed across the failover
    with group.replica.client() as new_primary:
        assert new_primary.info("replication")["role"] == "master"
