"""Queue-wide rate and concurrency limits hold across worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor import JobContext, Limits
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def start_workers(server_url: str, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    log = tmp_path / "runs.log"
    procs: list[subprocess.Popen[bytes]] = []
    names: list[str] = []

    def start(queue: str, count: int) -> None:
        env = {**os.environ, "CONVEYOR_URL": server_url, "LIMITS_LOG": str(log)}
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-m", "tests.limits_app", queue],
                                          cwd=ROOT, env=env))  # fmt: skip

    yield log, names, start  # type: ignore[misc]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _all_done(queue: conveyor.Queue, jobs: list[conveyor.Job]) -> None:
    for job in jobs:
        await queue.wait(job.id, timeout=60)


@pytest.mark.timeout(90)
async def test_a_rate_limit_holds_across_two_worker_processes(
    queue: conveyor.Queue, start_workers: Any
) -> None:
    _, _, start = start_workers
    await queue.set_limits(Limits(rate=(10, 1.0)))
    assert (await queue.limits()).rate == (10, 1.0)
    position = "0"
    jobs = await queue.enqueue_many([("tick", 0.0) for _ in range(30)])
    start(queue.name, 2)
    await _all_done(queue, jobs)
    # The server's clock, at the moment each job was given to a worker.
    starts = sorted([e.timestamp async for e in _events(queue, position, "active", len(jobs))])
    assert len(starts) == 30
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 1.0 - 0.002, "more than 10 starts in one second"
    assert starts[-1] - starts[0] >= 2.0 - 0.002


async def _events(queue: conveyor.Queue, last_id: str, kind: str, n: int) -> Any:
    seen = 0
    async for event in queue.events(last_id=last_id, block=1.0):
        if event.event == kind:
            yield event
            seen += 1
            if seen == n:
                return


@pytest.mark.timeout(90)
async def test_a_concurrency_limit_is_never_exceeded(
    queue: conveyor.Queue, start_workers: Any
) -> None:
    log, _, start = start_workers
    await queue.set_limits(Limits(concurrency=3))
    jobs = await queue.enqueue_many([("tick", 0.1) for _ in range(24)])
    start(queue.name, 2)  # 2 processes x concurrency 5 = 10 slots, but only 3 may run
    await _all_done(queue, jobs)
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 24
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= 3


async def test_a_handler_can_say_slow_down(queue: conveyor.Queue, server_url: str) -> None:
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)
    calls: list[int] = []

    @worker.handler
    async def call_api(ctx: JobContext, payload: None) -> str:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise conveyor.RateLimited(0.5, "429 Too Many Requests")
        return "ok"

    async with RunningWorker(worker):
        job = await queue.enqueue("call_api", None, attempts=1)
        done = await queue.wait(job.id, timeout=30)
    assert done.result == "ok"
    assert calls == [1, 1]  # handed back without spending an attempt
    assert not done.history
