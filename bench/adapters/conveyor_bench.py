"""Conveyor: default queue options (locks, events, retention all on), async handlers.

Runs in Conveyor's own virtual environment. The worker is ``python -m conveyor_bench N``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import recorder
from harness import QUEUE, SLEEP_SECONDS, Adapter

import conveyor

BULK_CHUNK = 2000
FETCH_BATCH = int(os.environ.get("BENCH_CONVEYOR_FETCH_BATCH", "0") or 0)


class ConveyorAdapter(Adapter):
    name = "conveyor"
    dist = "conveyor-jobs"
    concurrency = 200
    has_bulk = True
    notes = (
        "default options: locks, events, retention and metrics on, at-least-once; "
        "async handlers; asyncio Queue"
    )

    async def connect(self, url: str) -> None:
        self.url = url
        self.q = conveyor.Queue(QUEUE, url=url)

    async def close(self) -> None:
        await self.q.close()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        enqueue = self.q.enqueue
        for i in range(n):
            await enqueue(kind, {"i": i})

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        for start in range(0, n, BULK_CHUNK):
            await self.q.enqueue_many(
                [(kind, {"i": i}) for i in range(start, min(n, start + BULK_CHUNK))]
            )

    async def enqueue_warm(self) -> None:
        await self.q.enqueue("warm")

    async def enqueue_timed(self) -> None:
        await self.q.enqueue("lat", {"t": time.time()})

    async def last_ack_at(self, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while (c := await self.q.counts()).waiting + c.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        newest = await self.q.list_jobs("completed", limit=50)  # newest first
        return max((j.finished_at or 0.0 for j in newest), default=None)

    def worker_command(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "conveyor_bench", self.url, str(concurrency)]


class ConveyorSyncAdapter(ConveyorAdapter):
    """The producer's blocking face (``SyncQueue``), as a web app without asyncio uses it."""

    name = "conveyor-sync"
    notes = "SyncQueue (blocking producer face); same worker"

    async def connect(self, url: str) -> None:
        self.url = url
        self.q = conveyor.Queue(QUEUE, url=url)
        self.sq = conveyor.SyncQueue(QUEUE, url=url)

    async def close(self) -> None:
        await self.q.close()
        self.sq.close()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        enqueue = self.sq.enqueue
        for i in range(n):
            enqueue(kind, {"i": i})

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        for start in range(0, n, BULK_CHUNK):
            self.sq.enqueue_many(
                [(kind, {"i": i}) for i in range(start, min(n, start + BULK_CHUNK))]
            )

    async def enqueue_timed(self) -> None:
        self.sq.enqueue("lat", {"t": time.time()})


def make_adapter(variant: str = "") -> Adapter:
    return ConveyorSyncAdapter() if variant == "sync" else ConveyorAdapter()


# --- the worker process ---------------------------------------------------------------


def build_worker(url: str, concurrency: int) -> conveyor.Worker:
    options = conveyor.WorkerOptions(concurrency=concurrency)
    if FETCH_BATCH:
        options = conveyor.WorkerOptions(concurrency=concurrency, fetch_batch=FETCH_BATCH)
    w = conveyor.Worker(QUEUE, url=url, options=options)

    @w.handler
    async def noop(ctx: Any, payload: Any) -> None:
        recorder.start()
        recorder.done()

    @w.handler
    async def sleep(ctx: Any, payload: Any) -> None:
        recorder.start()
        await asyncio.sleep(SLEEP_SECONDS)
        recorder.done()

    @w.handler
    async def lat(ctx: Any, payload: Any) -> None:
        recorder.latency(payload["t"])

    @w.handler
    async def warm(ctx: Any, payload: Any) -> None:
        recorder.ready()

    return w


if __name__ == "__main__":
    build_worker(sys.argv[1], int(sys.argv[2])).run()
