"""Dramatiq with the Redis broker: ``send`` (no bulk API); one worker process
(``--processes 1``) with ``--threads`` = concurrency.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dramatiq
import recorder
from dramatiq.brokers.redis import RedisBroker
from harness import QUEUE, SLEEP_SECONDS, Adapter

broker = RedisBroker(url=os.environ.get("BENCH_URL", "redis://localhost"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop(i: int) -> None:
    recorder.start()
    recorder.done()


@dramatiq.actor(queue_name=QUEUE)
def sleep(i: int) -> None:
    recorder.start()
    time.sleep(SLEEP_SECONDS)
    recorder.done()


@dramatiq.actor(queue_name=QUEUE)
def lat(t: float) -> None:
    recorder.latency(t)


@dramatiq.actor(queue_name=QUEUE)
def warm() -> None:
    recorder.ready()


class DramatiqAdapter(Adapter):
    name = "dramatiq"
    dist = "dramatiq"
    concurrency = 100  # best of 10/50/100/200/500 on the 2-core machine
    notes = "--processes 1 --threads concurrency, default middleware"

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        actor = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            actor.send(i)

    async def enqueue_warm(self) -> None:
        warm.send()

    async def enqueue_timed(self) -> None:
        lat.send(time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [
            str(Path(sys.executable).parent / "dramatiq"),
            "dramatiq_bench",
            "--processes",
            "1",
            "--threads",
            str(concurrency),
            "--queues",
            QUEUE,
        ]


def make_adapter(variant: str = "") -> Adapter:
    return DramatiqAdapter()
