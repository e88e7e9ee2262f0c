"""A tiny app for the CLI tests: ``conveyor worker tests.cli_app:worker`` serves it."""

from __future__ import annotations

import threading
from typing import Any

import conveyor

worker = conveyor.Worker(
    "cli-app",
    options=conveyor.WorkerOptions(
        concurrency=2, idle_block=1.0, shutdown_grace=5.0, stall_check_interval=1.0
    ),
)


@worker.handler
async def add(ctx: conveyor.JobContext, payload: dict[str, int]) -> int:
    return payload["a"] + payload["b"]


#: The same handler as a mapping, for ``conveyor worker tests.cli_app:handlers -q Q``.
handlers: dict[str, Any] = {"add": add}

not_a_worker = 42


def shout(ctx: conveyor.JobContext, payload: str) -> str:
    """A plain ``def``: a thread handler unless the worker runs such handlers in processes."""
    return payload.upper()


#: Handlers that run in threads unless ``--process-handlers`` says otherwise.
threaded = conveyor.Worker("cli-app-threads", handlers=[shout])


def hang(ctx: conveyor.JobContext, payload: Any) -> None:
    """Hangs its thread (the worker process exits around it)."""
    threading.Event().wait(120)


#: A worker whose jobs hang, for the abandoned-thread limit.
stuck = conveyor.Worker(
    "cli-app-stuck", handlers=[hang], options=conveyor.WorkerOptions(idle_block=1.0)
)
