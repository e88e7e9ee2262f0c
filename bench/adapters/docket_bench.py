"""docket (pydocket): ``add`` and ``add_many``; the worker is ``docket worker`` with
``--concurrency``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import recorder
from docket import Docket
from harness import QUEUE, SLEEP_SECONDS, Adapter


async def noop(i: int) -> None:
    recorder.start()
    recorder.done()


async def sleep(i: int) -> None:
    recorder.start()
    await asyncio.sleep(SLEEP_SECONDS)
    recorder.done()


async def lat(t: float) -> None:
    recorder.latency(t)


async def warm() -> None:
    recorder.ready()


tasks = [noop, sleep, lat, warm]


class DocketAdapter(Adapter):
    name = "docket"
    dist = "pydocket"
    concurrency = 500  # best of 10/50/100/200/500 on the 2-core machine
    has_bulk = True
    notes = (
        "docket worker --concurrency concurrency; add_many (chunks of 1000) for bulk; "
        "max_connections=1000 in the URL (redis-py 8's default pool of 100 runs out at "
        "concurrency 100)"
    )

    async def connect(self, url: str) -> None:
        self.url = url
        self.docket = Docket(name=QUEUE, url=url)
        await self.docket.__aenter__()
        for t in tasks:
            self.docket.register(t)

    async def close(self) -> None:
        await self.docket.__aexit__(None, None, None)

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        fn = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            await self.docket.add(fn)(i)

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        fn = {"noop": noop, "sleep": sleep}[kind]
        await self.docket.add_many([self.docket.call(fn)(i) for i in range(n)], chunk_size=1000)

    async def enqueue_warm(self) -> None:
        await self.docket.add(warm)()

    async def enqueue_timed(self) -> None:
        await self.docket.add(lat)(time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [
            str(Path(sys.executable).parent / "docket"),
            "worker",
            "--tasks",
            "docket_bench:tasks",
            "--docket",
            QUEUE,
            "--url",
            self.url + "?max_connections=1000",
            "--concurrency",
            str(concurrency),
            "--logging-level",
            "WARNING",
        ]


def make_adapter(variant: str = "") -> Adapter:
    return DocketAdapter()
