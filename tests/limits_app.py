"""A worker process for the flow-control tests: each job appends "start end" to a file."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import conveyor

LOG = os.environ.get("LIMITS_LOG", "/dev/null")

worker = conveyor.Worker(
    sys.argv[1] if len(sys.argv) > 1 else "limits",
    options=conveyor.WorkerOptions(
        concurrency=5, lock_ttl=5.0, lock_renew_interval=1.0, idle_block=0.5, shutdown_grace=5.0
    ),
)


@worker.handler
async def tick(ctx: conveyor.JobContext, seconds: float) -> None:
    start = time.time()
    await asyncio.sleep(seconds)
    line = f"{start} {time.time()}\n".encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if __name__ == "__main__":
    worker.run()
