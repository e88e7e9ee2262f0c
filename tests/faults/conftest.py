"""Fixtures of the fault tier: worker subprocesses, and the ledger of executions they append to.

Every worker started here is SIGKILLed (if still running) and reaped when the test ends,
before its queue is obliterated.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

import conveyor
from conveyor.keys import QueueKeys
from tests.conftest import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Short lock settings, so recovery happens in seconds.
LOCK_TTL = 2.0
STALL_CHECK_INTERVAL = 0.5
#: How long a worker process may take to start and register on a loaded machine.
START_DEADLINE = 60.0


@dataclass(frozen=True)
class Execution:
    """One line of the ledger: a handler started running a job."""

    job_id: str
    attempt: int
    pid: int
    at: float


class Ledger:
    """The append-only file where handlers record each execution, outside Redis."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def executions(self) -> list[Execution]:
        text = self.path.read_text()
        out = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # a line being written right now
            job_id, attempt, pid, at = line.split()
            out.append(Execution(job_id, int(attempt), int(pid), float(at)))
        return out

    def by_job(self) -> dict[str, list[Execution]]:
        out: dict[str, list[Execution]] = collections.defaultdict(list)
        for execution in self.executions():
            out[execution.job_id].append(execution)
        return out

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(e.job_id for e in self.executions())

    def started_by(self, pid: int) -> set[str]:
        return {e.job_id for e in self.executions() if e.pid == pid}


class WorkerProcess:
    """One ``tests.faults.worker_app`` process and its log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, sig: signal.Signals) -> float:
        """Send a signal; returns when it was sent."""
        self.popen.send_signal(sig)
        return time.time()

    def alive(self) -> bool:
        return self.popen.poll() is None

    async def exited(self, timeout: float = 30.0) -> int:
        """Wait (without blocking the loop) until the process exits; its return code."""
        await wait_for(lambda: not self.alive(), timeout=timeout, interval=0.02)
        assert self.popen.returncode is not None
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reap(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait(timeout=30)


class Workers:
    """Starts worker subprocesses for one queue; all of them are killed at the end."""

    def __init__(self, server_url: str, queue_name: str, ledger: Ledger, logs: Path) -> None:
        self.server_url = server_url
        self.queue_name = queue_name
        self.ledger = ledger
        self.logs = logs
        self.started: list[WorkerProcess] = []

    def start(self, **options: Any) -> WorkerProcess:
        """Start a worker; ``options`` are worker_app flags (``shutdown_grace=1.0``, ...)."""
        args = [sys.executable, "-m", "tests.faults.worker_app", "--queue", self.queue_name,
                "--record", str(self.ledger.path)]  # fmt: skip
        settings = {"lock_ttl": LOCK_TTL, "stall_check_interval": STALL_CHECK_INTERVAL, **options}
        for name, value in settings.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        env = {**os.environ, conveyor.defaults.URL_ENV: self.server_url, "PYTHONUNBUFFERED": "1"}
        log_path = self.logs / f"worker-{len(self.started)}.log"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                args, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        process = WorkerProcess(popen, log_path)
        self.started.append(process)
        return process

    async def registered_pids(self) -> set[int]:
        """The pids of the workers registered on the queue (live or not yet forgotten)."""
        async with redis.asyncio.Redis.from_url(self.server_url) as client:
            infos = await client.hvals(QueueKeys(self.queue_name).key("worker_info"))
        return {json.loads(info)["pid"] for info in infos}

    async def ready(self, *processes: WorkerProcess) -> None:
        """Wait until every process has registered with the queue (and is serving it)."""

        async def all_registered() -> bool:
            for process in processes:
                if not process.alive():
                    raise AssertionError(f"worker {process.pid} exited:\n{process.output()}")
            return {p.pid for p in processes} <= await self.registered_pids()

        await wait_for(all_registered, timeout=START_DEADLINE, interval=0.05)

    async def start_ready(self, count: int = 1, **options: Any) -> list[WorkerProcess]:
        processes = [self.start(**options) for _ in range(count)]
        await self.ready(*processes)
        return processes

    def reap_all(self) -> None:
        for process in self.started:
            process.reap()

    def dump_logs(self) -> None:
        for process in self.started:
            print(f"----- worker {process.pid} (exit {process.popen.returncode}) -----")
            print(process.output()[-20_000:])


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "executions.log")


@pytest.fixture
def workers(
    queue: conveyor.Queue, server_url: str, ledger: Ledger, tmp_path: Path
) -> Iterator[Workers]:
    """Worker subprocesses for the test's queue (depends on ``queue``: reaped before it goes)."""
    pool = Workers(server_url, queue.name, ledger, tmp_path)
    try:
        yield pool
    finally:
        pool.reap_all()
        pool.dump_logs()  # shown by pytest only when the test failed
