"""BullMQ's Python package: ``Queue.add`` and ``Queue.addBulk``; the worker is a
``bullmq.Worker`` with ``concurrency``, in its own process (``python -m bullmq_bench``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import recorder
from bullmq import Queue, Worker
from harness import QUEUE, SLEEP_SECONDS, Adapter


async def process(job: Any, token: str) -> None:
    name = job.name
    if name == "noop":
        recorder.start()
        recorder.done()
    elif name == "sleep":
        recorder.start()
        await asyncio.sleep(SLEEP_SECONDS)
        recorder.done()
    elif name == "lat":
        recorder.latency(job.data["t"])
    elif name == "warm":
        recorder.ready()


class BullMQAdapter(Adapter):
    name = "bullmq"
    dist = "bullmq"
    concurrency = 10  # best of 10/50/100/200/500 on the 2-core machine
    has_bulk = True
    notes = (
        "Worker concurrency = concurrency; addBulk in chunks of 1000; completed jobs kept (default)"
    )

    async def connect(self, url: str) -> None:
        self.url = url
        self.q = Queue(QUEUE, {"connection": url})

    async def close(self) -> None:
        await self.q.close()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        for i in range(n):
            await self.q.add(kind, {"i": i})

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        for start in range(0, n, 1000):
            await self.q.addBulk(
                [{"name": kind, "data": {"i": i}} for i in range(start, min(n, start + 1000))]
            )

    async def enqueue_warm(self) -> None:
        await self.q.add("warm", {})

    async def enqueue_timed(self) -> None:
        await self.q.add("lat", {"t": time.time()})

    def worker_command(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "bullmq_bench"]


def make_adapter(variant: str = "") -> Adapter:
    return BullMQAdapter()


async def _serve() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    worker = Worker(
        QUEUE,
        process,
        {
            "connection": os.environ["BENCH_URL"],
            "concurrency": int(os.environ["BENCH_CONCURRENCY"]),
        },
    )
    await stop.wait()
    await worker.close()


if __name__ == "__main__":
    asyncio.run(_serve())
