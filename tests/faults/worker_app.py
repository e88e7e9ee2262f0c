"""A worker process for the fault tests: ``python -m tests.faults.worker_app --queue Q --record F``.

Every handler appends one line ``job_id attempt pid unix_time`` to the record file when it
starts (one ``write`` on an ``O_APPEND`` descriptor, so lines from several processes never
interleave), so a test counts executions without trusting Conveyor's own bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import conveyor


class Recorder:
    """Appends one line per execution to a file shared by every worker of a test."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, ctx: conveyor.JobContext) -> None:
        line = f"{ctx.id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
        os.write(self.fd, line.encode())

    def close(self) -> None:
        os.close(self.fd)


def build_worker(args: argparse.Namespace) -> conveyor.Worker:
    """The worker, with one handler per kind of (mis)behaviour the scenarios need."""
    log_run = Recorder(args.record)
    options = conveyor.WorkerOptions(
        concurrency=args.concurrency,
        lock_ttl=args.lock_ttl,
        lock_renew_interval=args.lock_renew_interval,
        stall_check_interval=args.stall_check_interval,
        idle_block=args.idle_block,
        shutdown_grace=args.shutdown_grace,
    )
    queue_options = conveyor.QueueOptions(completed_keep_count=args.completed_keep_count)
    worker = conveyor.Worker(args.queue, options=options, queue_options=queue_options)

    def done(ctx: conveyor.JobContext) -> dict[str, Any]:
        return {"pid": os.getpid(), "attempt": ctx.attempt, "token": ctx.token}

    @worker.handler
    async def record(ctx: conveyor.JobContext, payload: Any) -> dict[str, Any]:
        log_run(ctx)
        return done(ctx)

    @worker.handler
    async def sleepy(ctx: conveyor.JobContext, payload: dict[str, float]) -> dict[str, Any]:
        log_run(ctx)
        await asyncio.sleep(payload["seconds"])
        return done(ctx)

    @worker.handler
    def sleepy_sync(ctx: conveyor.JobContext, payload: dict[str, float]) -> dict[str, Any]:
        log_run(ctx)
        time.sleep(payload["seconds"])
        return done(ctx)

    @worker.handler
    def cpu(ctx: conveyor.JobContext, payload: dict[str, float]) -> dict[str, Any]:
        log_run(ctx)
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:  # pure Python: holds the GIL between switches
            sum(i * i for i in range(1000))
        return done(ctx)

    @worker.handler
    async def blocker(ctx: conveyor.JobContext, payload: dict[str, float]) -> dict[str, Any]:
        log_run(ctx)
        time.sleep(payload["seconds"])  # blocks the event loop on purpose
        return done(ctx)

    @worker.handler
    async def gate(ctx: conveyor.JobContext, payload: dict[str, Any]) -> dict[str, Any]:
        """Hold a concurrency slot (without blocking the loop) until a file appears."""
        log_run(ctx)
        path = Path(payload["path"])
        deadline = time.monotonic() + payload.get("timeout", 60.0)
        while not path.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return done(ctx)

    return worker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--record", required=True, help="the append-only execution file")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lock-ttl", type=float, default=2.0)
    parser.add_argument("--lock-renew-interval", type=float, default=0.5)
    parser.add_argument("--stall-check-interval", type=float, default=0.5)
    parser.add_argument("--idle-block", type=float, default=1.0)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument("--completed-keep-count", type=int, default=100_000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    build_worker(parse_args(argv)).run()


if __name__ == "__main__":
    main()
