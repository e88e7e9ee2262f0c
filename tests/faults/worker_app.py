"""A worker process for the fault tests: ``python -m tests.faults.worker_app --queue Q --record F``.

Every handler appends one line ``job_id attempt pid unix_time`` to the record file when it
starts (one ``write`` on an ``O_APPEND`` descriptor, so lines from several processes never
interleave), so a test counts executions without trusting Conveyor's own bookkeeping. The
time in the record is the machine's real clock, even when ``--clock-offset`` skews the
worker's ``time.time``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import conveyor
from conveyor import defaults
from conveyor.retry import Immediate

#: The real clock, taken before ``--clock-offset`` may replace ``time.time``.
real_time = time.time


class Recorder:
    """Appends one line per execution to a file shared by every worker of a test."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, ctx: conveyor.JobContext) -> None:
        line = f"{ctx.id} {ctx.attempt} {os.getpid()} {real_time():.6f}\n"
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
        max_stalls=args.max_stalls,
        unknown_job_grace=args.unknown_job_grace,
    )
    queue_options = conveyor.QueueOptions(
        completed_keep_count=args.completed_keep_count,
        dead_keep_count=args.dead_keep_count,
        events_maxlen=args.events_maxlen,
    )
    worker = conveyor.Worker(args.queue, options=options, queue_options=queue_options)

    def done(ctx: conveyor.JobContext) -> dict[str, Any]:
        """The result: who ran the attempt, and what this worker's (maybe skewed) clock said."""
        return {"pid": os.getpid(), "attempt": ctx.attempt, "token": ctx.token,
                "clock": time.time()}  # fmt: skip

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

    add_poison_handlers(worker, log_run)
    return worker


class PoisonError(RuntimeError):
    """What the handler that always fails raises."""


def add_poison_handlers(worker: conveyor.Worker, log_run: Recorder) -> None:
    """Handlers that misbehave in every way a job can: the worker must outlive them all."""

    @worker.handler(backoff=Immediate())
    async def shape(ctx: conveyor.JobContext, payload: Any) -> str:
        """Expects ``{"user": {"email": str}}``: another shape raises TypeError or KeyError."""
        log_run(ctx)
        return str(payload["user"]["email"]).lower()

    @worker.handler(backoff=Immediate())
    async def fails(ctx: conveyor.JobContext, payload: Any) -> None:
        log_run(ctx)
        raise PoisonError(f"attempt {ctx.attempt} failed, as always")

    @worker.handler(backoff=Immediate())
    async def hangs(ctx: conveyor.JobContext, payload: Any) -> None:
        log_run(ctx)
        await asyncio.Event().wait()  # forever, until the timeout cancels it

    @worker.handler(backoff=Immediate())
    def hangs_sync(ctx: conveyor.JobContext, payload: Any) -> None:
        log_run(ctx)
        threading.Event().wait()  # forever: a thread cannot be cancelled

    @worker.handler
    async def unencodable(ctx: conveyor.JobContext, payload: Any) -> dict[str, Any]:
        log_run(ctx)
        return {"handle": object()}

    @worker.handler
    async def huge_result(ctx: conveyor.JobContext, payload: Any) -> str:
        log_run(ctx)
        return "x" * (defaults.MAX_RESULT_BYTES + 1)


def skew_clock(offset: float) -> None:
    """Make this process's wall clock (``time.time``) run ``offset`` seconds off the real one."""
    if offset:
        time.time = lambda: real_time() + offset


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
    parser.add_argument("--dead-keep-count", type=int, default=defaults.DEAD_KEEP_COUNT)
    parser.add_argument("--events-maxlen", type=int, default=defaults.EVENTS_MAXLEN)
    parser.add_argument("--max-stalls", type=int, default=defaults.MAX_STALLS)
    parser.add_argument("--unknown-job-grace", type=float, default=defaults.UNKNOWN_JOB_GRACE)
    parser.add_argument(
        "--clock-offset", type=float, default=0.0, help="seconds time.time() is ahead (<0: behind)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    skew_clock(args.clock_offset)
    build_worker(args).run()


if __name__ == "__main__":
    main()
