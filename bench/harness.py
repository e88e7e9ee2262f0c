"""The common interface every library's adapter implements, and the measures built on it.

An adapter only knows how its library enqueues and how to start one worker process; the
timing, the worker's lifecycle and the statistics live here, once, for every library.
This module runs in whichever virtual environment the adapter needs (stdlib + redis + psutil).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ADAPTERS_DIR = BENCH_DIR / "adapters"
QUEUE = "bench"
SLEEP_SECONDS = 0.01


class Unsupported(Exception):
    """The library has no such feature (e.g. no bulk enqueue API)."""


class Adapter:
    """One library, seen through the few operations the benchmark needs.

    Every worker the adapter starts registers four handlers: ``noop(i)`` (records its
    completion), ``sleep(i)`` (sleeps 10 ms, then records), ``lat(t)`` (records now - t) and
    ``warm()`` (signals the worker is up). They all call :mod:`recorder`.
    """

    name = "?"
    dist = "?"  #: distribution name whose version is reported
    concurrency = 100  #: the best setting found for the processing measure
    notes = ""
    has_bulk = False
    sleep_concurrency_ok = True  #: False where one process cannot run jobs concurrently
    #: Largest n for the processing measure, for libraries too slow to run 20,000 in time.
    max_process_jobs: int | None = None

    async def connect(self, url: str) -> None:
        self.url = url

    async def close(self) -> None:
        pass

    async def enqueue_one(self, n: int, kind: str = "noop") -> None:
        """Enqueue ``n`` jobs one at a time, waiting for each to be accepted."""
        raise NotImplementedError

    async def enqueue_bulk(self, n: int, kind: str = "noop") -> None:
        """Enqueue ``n`` jobs with the library's bulk API."""
        raise Unsupported("no bulk enqueue API")

    async def enqueue_warm(self) -> None:
        raise NotImplementedError

    async def enqueue_timed(self) -> None:
        """Enqueue one ``lat`` job carrying ``time.time()`` taken just before the call."""
        raise NotImplementedError

    def worker_command(self, concurrency: int) -> list[str]:
        """The argv that starts ONE worker process serving :data:`QUEUE`."""
        raise NotImplementedError

    async def last_ack_at(self, timeout: float) -> float | None:
        """Once every job is acknowledged, the server's time of the last acknowledgement
        (Unix seconds), where the adapter can tell; else None."""
        return None

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_URL": self.url}

    async def fill(self, n: int, kind: str) -> None:
        """Queue ``n`` jobs the fastest way the library offers (not timed)."""
        if self.has_bulk:
            await self.enqueue_bulk(n, kind)
        else:
            await self.enqueue_one(n, kind)


# --- running one worker process -----------------------------------------------------


@dataclass
class WorkerRun:
    """One worker subprocess with its recorder files."""

    argv: list[str]
    env: dict[str, str]
    expect: int
    concurrency: int
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-w-")))
    process: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0
    peak_rss: int = 0

    @property
    def out(self) -> Path:
        return self.folder / "done.json"

    @property
    def ready_file(self) -> Path:
        return self.folder / "ready"

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env["BENCH_OUT"] = str(self.out)
        env["BENCH_READY"] = str(self.ready_file)
        env["BENCH_EXPECT"] = str(self.expect)
        env["BENCH_CONCURRENCY"] = str(self.concurrency)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(BENCH_DIR), str(ADAPTERS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        )
        self.spawned_at = time.time()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=str(ADAPTERS_DIR), start_new_session=True,
            )  # fmt: skip

    def _rss(self) -> int:
        import psutil

        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    def _check_alive(self) -> None:
        assert self.process is not None
        try:
            runaway = self.log.stat().st_size > 50 * 2**20
        except OSError:
            runaway = False
        if runaway:
            raise RuntimeError(f"worker is logging errors in a loop: {self.log_tail(3)}")
        if self.process.poll() is not None:
            raise RuntimeError(
                f"worker exited with code {self.process.returncode}: {self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])[-1500:]

    async def wait_for(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_rss = 0.0
        while not self._finished(path):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not finish within {timeout:g}s: {self.log_tail(5)}")
            if time.monotonic() - last_rss > 0.25:
                self.peak_rss = max(self.peak_rss, self._rss())
                last_rss = time.monotonic()
            await asyncio.sleep(0.05)
        self.peak_rss = max(self.peak_rss, self._rss())

    def _finished(self, path: Path) -> bool:
        if path.exists():
            return True
        if path == self.out and self.env.get("BENCH_RECORD_LINES") == "1":
            import recorder

            data = recorder.read_lines(str(self.out), self.expect)
            if data is not None:
                self.out.write_text(json.dumps(data))
                return True
        return False

    def result(self) -> dict[str, Any]:
        """The recorder's data; the run's folder is removed (kept when a run fails)."""
        import shutil

        data: dict[str, Any] = json.loads(self.out.read_text())
        shutil.rmtree(self.folder, ignore_errors=True)
        return data

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        # leftover children of the worker (a supervisor's forks) share its group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# --- the measures -------------------------------------------------------------------


async def m_enqueue_one(a: Adapter, n: int, **_: Any) -> dict[str, Any]:
    await a.enqueue_one(min(100, max(1, n // 20)))  # connect, load scripts
    t0 = time.perf_counter()
    await a.enqueue_one(n)
    elapsed = time.perf_counter() - t0
    return {"value": n / elapsed, "unit": "jobs/s", "n": n}


async def m_enqueue_bulk(a: Adapter, n: int, **_: Any) -> dict[str, Any]:
    await a.enqueue_bulk(min(100, max(1, n // 20)))
    t0 = time.perf_counter()
    await a.enqueue_bulk(n)
    elapsed = time.perf_counter() - t0
    return {"value": n / elapsed, "unit": "jobs/s", "n": n}


async def m_process(
    a: Adapter, n: int, concurrency: int | None = None, timeout: float = 300, **_: Any
) -> dict[str, Any]:
    if a.max_process_jobs is not None:
        n = min(n, a.max_process_jobs)
    concurrency = concurrency or a.concurrency
    await a.fill(n, "noop")
    run = WorkerRun(a.worker_command(concurrency), a.worker_env(), n, concurrency)
    run.start()
    try:
        await run.wait_for(run.out, timeout)
        last_ack = await a.last_ack_at(timeout=10.0)
    finally:
        run.stop()
    data = run.result()
    ends = sorted(data["ends"])
    span = ends[-1] - ends[0]
    return {
        "value": (len(ends) - 1) / span if span > 0 else float("nan"),
        "unit": "jobs/s",
        "n": n,
        "concurrency": concurrency,
        "startup_s": data["first_start"] - run.spawned_at,
        "span_s": span,
        "rss_mb": run.peak_rss / 2**20,
        # the server's clock against the handler's: both are this machine's realtime clock
        "ack_lag_ms": None if last_ack is None else (last_ack - ends[-1]) * 1000,
    }


async def m_latency(
    a: Adapter, n: int, rate: float = 200.0, duration: float = 5.0, timeout: float = 120,
    concurrency: int | None = None, **_: Any,
) -> dict[str, Any]:  # fmt: skip
    count = max(1, int(rate * duration))
    concurrency = concurrency or a.concurrency
    run = WorkerRun(a.worker_command(concurrency), a.worker_env(), count, concurrency)
    run.start()
    try:
        await a.enqueue_warm()
        await run.wait_for(run.ready_file, 60)
        startup = float(run.ready_file.read_text()) - run.spawned_at
        await asyncio.sleep(0.5)  # let the warm-up settle: the worker is idle now
        t0 = time.perf_counter()
        for i in range(count):
            pause = t0 + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await a.enqueue_timed()
        sent = time.perf_counter() - t0
        await run.wait_for(run.out, timeout)
    finally:
        run.stop()
    lat = sorted(run.result()["latencies"])
    return {
        "value": _percentile(lat, 0.5) * 1000,
        "unit": "ms",
        "p50_ms": _percentile(lat, 0.5) * 1000,
        "p95_ms": _percentile(lat, 0.95) * 1000,
        "p99_ms": _percentile(lat, 0.99) * 1000,
        "max_ms": lat[-1] * 1000,
        "n": count,
        "achieved_rate": count / sent if sent > 0 else rate,
        "startup_s": startup,
    }


async def m_sleep(
    a: Adapter, n: int = 2000, concurrency: int = 100, timeout: float = 120, **_: Any
) -> dict[str, Any]:
    if not a.sleep_concurrency_ok:
        raise Unsupported("runs one job at a time per process")
    await a.fill(n, "sleep")
    run = WorkerRun(a.worker_command(concurrency), a.worker_env(), n, concurrency)
    run.start()
    try:
        await run.wait_for(run.out, timeout)
    finally:
        run.stop()
    data = run.result()
    wall = max(data["ends"]) - data["first_start"]
    ideal = n * SLEEP_SECONDS / concurrency
    return {"value": wall, "unit": "s", "ideal_s": ideal, "vs_ideal": wall / ideal, "n": n,
            "concurrency": concurrency}  # fmt: skip


async def m_memory(a: Adapter, n: int, **_: Any) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(a.url)
    await a.enqueue_one(1)  # registries, scripts and other fixed costs
    deadline = time.monotonic() + 30
    while (
        int(client.info("memory").get("lazyfree_pending_objects", 0))
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)  # a previous flush still being freed in the background
    before = int(client.info("memory")["used_memory"])
    await a.fill(n, "noop")
    after = int(client.info("memory")["used_memory"])
    client.close()
    per_job = (after - before) / n
    return {"value": per_job * 100_000 / 2**20, "unit": "MB/100k", "bytes_per_job": per_job,
            "n": n}  # fmt: skip


MEASURES = {
    "enqueue_one": m_enqueue_one,
    "enqueue_bulk": m_enqueue_bulk,
    "process": m_process,
    "latency": m_latency,
    "sleep": m_sleep,
    "memory": m_memory,
}


def load_adapter(spec: str, url: str) -> Adapter:
    """``spec`` is an adapter module's stem, optionally with a variant: ``rq:simple``."""
    import importlib

    os.environ["BENCH_URL"] = url  # adapters configure their library at import
    sys.path[:0] = [str(BENCH_DIR), str(ADAPTERS_DIR)]
    lib, _, variant = spec.partition(":")
    module = importlib.import_module(f"{lib}_bench")
    return module.make_adapter(variant)  # type: ignore[no-any-return]


def version_of(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
