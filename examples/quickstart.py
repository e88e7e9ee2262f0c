"""Quickstart: enqueue from a web app, run a worker, read the result.

Run it with ``python examples/quickstart.py``; with no ``CONVEYOR_URL`` it uses the
embedded server. The test suite runs this file, so the README cannot drift from it.
"""

from __future__ import annotations

import asyncio

from conveyor import JobContext, JobState, Queue, SyncQueue, Worker

worker = Worker("emails")


@worker.handler
async def send_welcome(ctx: JobContext, payload: dict[str, str]) -> str:
    # Side effects should be idempotent: a job may run again if a worker dies mid-way.
    return f"sent welcome mail to {payload['to']} (attempt {ctx.attempt})"


def enqueue_from_a_view(address: str) -> str:
    """What a Django or Flask view does: enqueue and answer at once."""
    with SyncQueue("emails") as queue:
        return queue.enqueue("send_welcome", {"to": address}).id


async def main() -> None:
    job_id = await asyncio.to_thread(enqueue_from_a_view, "ada@example.com")
    serving = asyncio.create_task(worker.serve())
    async with Queue("emails") as queue:
        while (job := await queue.get_job(job_id)) and job.state is not JobState.COMPLETED:
            await asyncio.sleep(0.05)
        print(job.result if job else "job vanished")
    worker.stop()
    await serving


if __name__ == "__main__":
    asyncio.run(main())
