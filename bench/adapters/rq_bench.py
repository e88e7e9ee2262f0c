"""RQ: the default forking ``Worker`` (one job per forked child) and ``SimpleWorker``.

One RQ worker process runs one job at a time, so the concurrency measures do not apply.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import recorder
from harness import QUEUE, SLEEP_SECONDS, Adapter
from redis import Redis
from rq import Queue


def noop(i: int) -> None:
    recorder.start()
    recorder.done()


def sleep(i: int) -> None:
    recorder.start()
    time.sleep(SLEEP_SECONDS)
    recorder.done()


def lat(t: float) -> None:
    recorder.latency(t)


def warm() -> None:
    recorder.ready()


class RQAdapter(Adapter):
    dist = "rq"
    concurrency = 1
    has_bulk = True
    sleep_concurrency_ok = False

    def __init__(self, variant: str) -> None:
        self.simple = variant == "simple"
        self.name = "rq-simple" if self.simple else "rq"
        self.worker_class = "rq.worker.SimpleWorker" if self.simple else "rq.worker.Worker"
        self.max_process_jobs = 5000 if self.simple else 1000
        self.notes = (
            f"{self.worker_class}, one job at a time; Queue.enqueue_many for bulk; logging WARNING"
        )

    async def connect(self, url: str) -> None:
        self.url = url
        self.redis = Redis.from_url(url)
        self.q = Queue(QUEUE, connection=self.redis)

    async def close(self) -> None:
        self.redis.close()

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        fn = {"noop": noop, "sleep": sleep}[kind]
        for i in range(n):
            self.q.enqueue(fn, i)

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        fn = {"noop": noop, "sleep": sleep}[kind]
        for start in range(0, n, 1000):
            self.q.enqueue_many(
                [Queue.prepare_data(fn, (i,)) for i in range(start, min(n, start + 1000))]
            )

    async def enqueue_warm(self) -> None:
        self.q.enqueue(warm)

    async def enqueue_timed(self) -> None:
        self.q.enqueue(lat, time.time())

    def worker_env(self) -> dict[str, str]:
        # the forking worker runs each job in a child: record completions in a shared file
        return {**super().worker_env(), "BENCH_RECORD_LINES": "0" if self.simple else "1"}

    def worker_command(self, concurrency: int) -> list[str]:
        rq = str(Path(sys.executable).parent / "rq")
        return [
            rq,
            "worker",
            "-u",
            self.url,
            "-w",
            self.worker_class,
            "--logging_level",
            "WARNING",
            QUEUE,
        ]


def make_adapter(variant: str = "") -> Adapter:
    return RQAdapter(variant)
