"""Celery with the Redis broker (no result backend): ``delay`` (no bulk publish API); one
worker process with the thread pool.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import recorder
from celery import Celery
from harness import QUEUE, SLEEP_SECONDS, Adapter

app = Celery("bench", broker=os.environ.get("BENCH_URL", "redis://localhost"))
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
POOL = os.environ.get("BENCH_CELERY_POOL", "threads")


@app.task(name="noop")
def noop(i: int) -> None:
    recorder.start()
    recorder.done()


@app.task(name="sleep")
def sleep(i: int) -> None:
    recorder.start()
    time.sleep(SLEEP_SECONDS)
    recorder.done()


@app.task(name="lat")
def lat(t: float) -> None:
    recorder.latency(t)


@app.task(name="warm")
def warm() -> None:
    recorder.ready()


class CeleryAdapter(Adapter):
    name = "celery"
    dist = "celery"
    concurrency = 10  # best of 10/50/100/200/500 on the 2-core machine
    notes = (
        f"-P {POOL} -c concurrency, --without-gossip/mingle/heartbeat, prefetch x4, "
        "acks early (default), -l WARNING"
    )

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        task = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            task.delay(i)

    async def enqueue_warm(self) -> None:
        warm.delay()

    async def enqueue_timed(self) -> None:
        lat.delay(time.time())

    def worker_command(self, concurrency: int) -> list[str]:
        return [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "celery_bench",
            "worker",
            "-P",
            POOL,
            "-c",
            str(concurrency),
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]


def make_adapter(variant: str = "") -> Adapter:
    return CeleryAdapter()
