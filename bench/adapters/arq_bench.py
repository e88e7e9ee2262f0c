"""arq: ``enqueue_job`` (no bulk API); the worker is ``arq.run_worker`` with ``max_jobs``.

arq polls its queue every ``poll_delay`` (default 0.5 s), which bounds its latency.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import recorder
from arq import create_pool, run_worker
from arq.connections import RedisSettings
from harness import QUEUE, SLEEP_SECONDS, Adapter


async def noop(ctx: Any, i: int) -> None:
    recorder.start()
    recorder.done()


async def sleep(ctx: Any, i: int) -> None:
    recorder.start()
    await asyncio.sleep(SLEEP_SECONDS)
    recorder.done()


async def lat(ctx: Any, t: float) -> None:
    recorder.latency(t)


async def warm(ctx: Any) -> None:
    recorder.ready()


class WorkerSettings:
    functions = [noop, sleep, lat, warm]
    queue_name = QUEUE
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_URL", "redis://localhost"))
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))


class ArqAdapter(Adapter):
    name = "arq"
    dist = "arq"
    concurrency = 500  # best of 10/50/100/200/500 on the 2-core machine
    notes = "max_jobs = concurrency, poll_delay 0.5 s (default), results kept (default)"

    async def connect(self, url: str) -> None:
        self.url = url
        self.pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        for i in range(n):
            await self.pool.enqueue_job(kind, i)

    async def enqueue_warm(self) -> None:
        await self.pool.enqueue_job("warm")

    async def enqueue_timed(self) -> None:
        await self.pool.enqueue_job("lat", time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "arq_bench"]


def make_adapter(variant: str = "") -> Adapter:
    return ArqAdapter()


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
