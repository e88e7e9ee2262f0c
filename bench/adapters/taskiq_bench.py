"""Taskiq with taskiq-redis's ``ListQueueBroker``: ``kiq`` (no bulk API); one worker process
(``--workers 1``) with ``--max-async-tasks`` = concurrency.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import recorder
from harness import QUEUE, SLEEP_SECONDS, Adapter, version_of
from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(os.environ.get("BENCH_URL", "redis://localhost"), queue_name=QUEUE)


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    recorder.start()
    recorder.done()


@broker.task(task_name="sleep")
async def sleep(i: int) -> None:
    recorder.start()
    await asyncio.sleep(SLEEP_SECONDS)
    recorder.done()


@broker.task(task_name="lat")
async def lat(t: float) -> None:
    recorder.latency(t)


@broker.task(task_name="warm")
async def warm() -> None:
    recorder.ready()


class TaskiqAdapter(Adapter):
    name = "taskiq"
    dist = "taskiq"
    concurrency = 100  # best of 10/50/100/200/500 on the 2-core machine
    notes = (
        f"taskiq-redis {version_of('taskiq-redis')} ListQueueBroker (no acknowledgement), "
        "--workers 1 --max-async-tasks concurrency"
    )

    async def connect(self, url: str) -> None:
        self.url = url
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        task = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            await task.kiq(i)

    async def enqueue_warm(self) -> None:
        await warm.kiq()

    async def enqueue_timed(self) -> None:
        await lat.kiq(time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [
            str(Path(sys.executable).parent / "taskiq"),
            "worker",
            "taskiq_bench:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(concurrency),
            "--log-level",
            "WARNING",
        ]


def make_adapter(variant: str = "") -> Adapter:
    return TaskiqAdapter()
