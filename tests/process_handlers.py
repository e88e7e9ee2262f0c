"""Handlers for the process-pool tests: importable by name, as a child process needs them.

Run as ``python -m tests.process_handlers --queue Q`` it is a worker whose handlers all run
in child processes (named ``__main__:...``, so that path is exercised too). A payload with
a ``ledger`` path makes a handler append ``job_id attempt pid unix_time`` to that file when
it starts, so a test sees which process ran which attempt without trusting Conveyor.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from typing import Any

import conveyor
from conveyor import JobContext

_LEAKED: list[bytes] = []


def _record(ctx: JobContext, payload: Any) -> None:
    if isinstance(payload, dict) and payload.get("ledger"):
        fd = os.open(payload["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)


def echo(ctx: JobContext, payload: Any) -> Any:
    """Return the payload as it came."""
    return payload


def whoami(ctx: JobContext, payload: Any) -> dict[str, Any]:
    """The context as the handler saw it, and the process it ran in."""
    fields = ("id", "name", "queue", "attempt", "max_attempts", "token", "worker_id")
    return {"pid": os.getpid(), **{name: getattr(ctx, name) for name in fields}}


def spin(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Burn the CPU in pure Python for ``seconds`` (wall clock), or until ``until`` exists."""
    _record(ctx, payload)
    deadline = time.monotonic() + payload["seconds"]
    until = payload.get("until")
    while time.monotonic() < deadline and not (until and os.path.exists(until)):
        for _ in range(100):
            sum(i * i for i in range(1000))
    return {"pid": os.getpid()}


def hang_first(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Hang on the first attempt (ignoring SIGTERM if ``stubborn``); succeed afterwards."""
    _record(ctx, payload)
    if ctx.attempt == 1:
        if payload.get("stubborn"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
    return {"pid": os.getpid()}


def crash(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Crash the child (``how``: segfault or exit) on attempts up to ``crash_attempts``."""
    _record(ctx, payload)
    if ctx.attempt <= payload.get("crash_attempts", 1_000):
        if payload["how"] == "segfault":
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        os._exit(3)
    return {"pid": os.getpid()}


def leak(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Keep ``mb`` MiB alive in the child (every page written, so it is resident)."""
    _LEAKED.append(b"\x01" * (payload.get("mb", 0) << 20))
    return {"pid": os.getpid()}


def modules(ctx: JobContext, names: list[str]) -> dict[str, bool]:
    """Which of these modules the child has imported."""
    return {name: name in sys.modules for name in names}


def report(ctx: JobContext, payload: Any) -> dict[str, Any]:
    """Report progress and a log line, as a handler in a thread would."""
    ctx.progress({"done": 1, "of": 2})
    ctx.log("halfway there")
    return {"pid": os.getpid()}


class QuotaError(Exception):
    """An application error with attributes of its own."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def fail(ctx: JobContext, kind: str) -> None:
    """Raise the kind of error the test asks for."""
    if kind == "value":
        raise ValueError("bad value", 42)
    if kind == "permanent":
        raise conveyor.PermanentError("account closed")
    if kind == "retry_later":
        raise conveyor.RetryLater(0.05, "not yet")
    if kind == "quota":
        raise QuotaError("over quota", status=429)

    class LocalError(Exception):
        pass

    raise LocalError("only the child knows this class")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    args = _parse_args(argv)
    options = conveyor.WorkerOptions(
        concurrency=args.concurrency, processes=args.processes, process_handlers=True,
        shutdown_grace=args.shutdown_grace, lock_ttl=2.0, lock_renew_interval=0.5,
        stall_check_interval=0.5, idle_block=1.0, child_kill_grace=1.0,
    )  # fmt: skip
    conveyor.Worker(args.queue, handlers=[spin, echo, whoami], options=options).run()


if __name__ == "__main__":
    main()
