"""Fixtures of the fault tier: worker subprocesses, the ledger of executions they append to,
and private servers to crash.

Every worker started here is SIGKILLed (if still running) and reaped when the test ends,
before its queue is obliterated or its private server stopped. The harness itself lives in
``harness.py`` (``scripts/soak.py`` uses it too); its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from tests.faults.harness import (
    LOCK_TTL,
    REPO_ROOT,
    STALL_CHECK_INTERVAL,
    START_DEADLINE,
    Execution,
    Ledger,
    PrivateServer,
    WorkerProcess,
    Workers,
)

__all__ = [
    "LOCK_TTL",
    "REPO_ROOT",
    "STALL_CHECK_INTERVAL",
    "START_DEADLINE",
    "Execution",
    "Ledger",
    "PrivateServer",
    "WorkerProcess",
    "Workers",
]


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


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[PrivateServer]:
    """A Valkey server of the test's own, to crash and restart; never the session server."""
    server = PrivateServer(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_workers(
    private_server: PrivateServer, queue_name: str, ledger: Ledger, tmp_path: Path
) -> Iterator[Workers]:
    """Worker subprocesses on the private server (reaped before it stops)."""
    pool = Workers(private_server.url, queue_name, ledger, tmp_path)
    try:
        yield pool
    finally:
        pool.reap_all()
        pool.dump_logs()
