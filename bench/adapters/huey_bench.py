"""Huey with ``RedisHuey`` (blocking dequeue): calling the task enqueues it (``map`` is a
loop of single enqueues, so no bulk API); one consumer with thread workers.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import recorder
from harness import QUEUE, SLEEP_SECONDS, Adapter
from huey import RedisHuey

huey = RedisHuey(QUEUE, url=os.environ.get("BENCH_URL", "redis://localhost"))


@huey.task()
def noop(i: int) -> None:
    recorder.start()
    recorder.done()


@huey.task()
def sleep(i: int) -> None:
    recorder.start()
    time.sleep(SLEEP_SECONDS)
    recorder.done()


@huey.task()
def lat(t: float) -> None:
    recorder.latency(t)


@huey.task()
def warm() -> None:
    recorder.ready()


class HueyAdapter(Adapter):
    name = "huey"
    dist = "huey"
    concurrency = 10  # best of 10/50/100/200/500 on the 2-core machine
    notes = "huey_consumer -k thread -w concurrency, -q (quiet logging)"

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        task = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            task(i)

    async def enqueue_warm(self) -> None:
        warm()

    async def enqueue_timed(self) -> None:
        lat(time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [
            str(Path(sys.executable).parent / "huey_consumer"),
            "huey_bench.huey",
            "-k",
            "thread",
            "-w",
            str(concurrency),
            "-q",
        ]


def make_adapter(variant: str = "") -> Adapter:
    return HueyAdapter()
