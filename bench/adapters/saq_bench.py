"""SAQ: ``Queue.enqueue`` (no bulk API: ``map``/``apply`` also wait for results); the
worker is the ``saq`` command with ``concurrency``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import recorder
from harness import QUEUE, SLEEP_SECONDS, Adapter
from saq import Queue


async def noop(ctx: Any, *, i: int) -> None:
    recorder.start()
    recorder.done()


async def sleep(ctx: Any, *, i: int) -> None:
    recorder.start()
    await asyncio.sleep(SLEEP_SECONDS)
    recorder.done()


async def lat(ctx: Any, *, t: float) -> None:
    recorder.latency(t)


async def warm(ctx: Any) -> None:
    recorder.ready()


# redis-py 8's asyncio pool holds at most 100 connections by default, which SAQ runs out
# of above ~100 concurrent jobs; the URL raises the limit.
settings = {
    "queue": Queue.from_url(
        os.environ.get("BENCH_URL", "redis://localhost") + "?max_connections=1000", name=QUEUE
    ),
    "functions": [noop, sleep, lat, warm],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "10")),
}


class SaqAdapter(Adapter):
    name = "saq"
    dist = "saq"
    concurrency = 50  # best of 10/50/100/200/500 on the 2-core machine
    notes = "worker concurrency = concurrency, max_connections=1000 in the URL, defaults otherwise"

    async def connect(self, url: str) -> None:
        self.url = url
        self.q = Queue.from_url(url, name=QUEUE)
        await self.q.connect()

    async def close(self) -> None:
        await self.q.disconnect()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        for i in range(n):
            await self.q.enqueue(kind, i=i)

    async def enqueue_warm(self) -> None:
        await self.q.enqueue("warm")

    async def enqueue_timed(self) -> None:
        await self.q.enqueue("lat", t=time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [str(Path(sys.executable).parent / "saq"), "saq_bench.settings"]


def make_adapter(variant: str = "") -> Adapter:
    return SaqAdapter()
