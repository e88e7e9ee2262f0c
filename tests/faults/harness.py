"""The fault tier's harness: worker subprocesses, the ledger of executions they append to,
and private servers to crash. Used by the fixtures in ``conftest.py`` and by ``scripts/soak.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio

import conveyor
from conveyor import embedded
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


class PrivateServer:
    """A Valkey server of one test's own (the embedded binary, AOF ``everysec``), to crash.

    Started on creation; :meth:`close` stops it (or kills it) for good.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.info = embedded.ensure_server(data_dir)
        self.url = self.info.url

    @property
    def pid(self) -> int:
        assert self.info.pid is not None
        return self.info.pid

    def client(self) -> redis.asyncio.Redis:
        """A plain client that fails at once (no retries) when the server is away."""
        return redis.asyncio.Redis.from_url(self.url, socket_timeout=10, retry_on_error=[])

    async def used_memory(self) -> int:
        async with self.client() as client:
            return int((await client.info("memory"))["used_memory"])

    async def fsync(self) -> None:
        """Return once the server says every write so far is fsynced to its AOF (``WAITAOF``;
        under ``everysec`` Valkey says so once the write is in the file: test_durability.py).
        """
        async with self.client() as client:
            local, _ = await client.execute_command("WAITAOF", 1, 0, 0)
        assert int(local) == 1

    # kill, shutdown_nosave and stop return when the server was gone: every job that
    # started before that moment may have been running across the fault.

    async def kill(self) -> float:
        """SIGKILL the server (a crash: the last second of writes may not be fsynced)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: process_gone(pid), timeout=30)
        return time.time()

    async def shutdown_nosave(self) -> float:
        """``SHUTDOWN NOSAVE``: no RDB snapshot, but the AOF is flushed and fsynced."""
        pid = self.pid
        async with self.client() as client:
            # The server closes the connection as it goes.
            with contextlib.suppress(redis.ConnectionError):
                await client.execute_command("SHUTDOWN", "NOSAVE")
        await wait_for(lambda: process_gone(pid), timeout=30)
        return time.time()

    async def stop(self) -> float:
        """Stop the server cleanly (``SHUTDOWN``: the AOF is flushed and fsynced)."""
        assert await asyncio.to_thread(embedded.stop_server, self.data_dir)
        return time.time()

    async def start(self) -> float:
        """Start it again on the same data folder (and socket); returns when it answers."""
        self.info = await asyncio.to_thread(embedded.ensure_server, self.data_dir)
        assert self.info.url == self.url
        return time.time()

    def close(self) -> None:
        try:
            embedded.stop_server(self.data_dir)
        except conveyor.ConveyorError:
            if self.info.pid is not None and not process_gone(self.info.pid):
                os.kill(self.info.pid, signal.SIGKILL)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"
