"""The ``conveyor worker`` command: load the app's worker (or handlers) and run it."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from conveyor.worker import Worker, WorkerOptions
from conveyor.worker.log_context import configure_logging

__all__ = ["load_target", "worker"]

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _bad(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="'MODULE:ATTR'")


def load_target(target: str) -> Any:
    """Import ``MODULE:ATTR`` (ATTR may be dotted), from the current folder like arq and rq."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise _bad(f"expected MODULE:ATTR (like myapp.tasks:worker), got {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _bad(f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise _bad(f"module {module_name!r} has no attribute {attr!r}") from None
    return value


def build_worker(
    target: Any,
    queues: tuple[str, ...],
    url: str | None,
    changes: dict[str, Any],
) -> Worker:
    """A worker from a loaded ``Worker`` or mapping, with the command line's overrides."""
    if isinstance(target, Worker):
        names = list(queues) or target.queue_names
        return Worker(
            names,
            handlers=target.registered_handlers(),
            url=url or target.url,
            client=None if url else target.client,
            options=dataclasses.replace(target.options, **changes),
            queue_options=target.queue_options,
        )
    if isinstance(target, Mapping):
        if not queues:
            raise click.UsageError("--queue is required when MODULE:ATTR is a mapping of handlers")
        return Worker(queues, handlers=target, url=url, options=WorkerOptions(**changes))
    raise _bad(
        f"expected a conveyor.Worker or a mapping of job name to function, "
        f"got {type(target).__name__}"
    )


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--queue", "-q", "queues", multiple=True, metavar="QUEUE",
              help="Queue to serve (repeatable); overrides the worker's own.")  # fmt: skip
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help="Jobs run at once. [default: the worker's, else 10]")  # fmt: skip
@click.option("--url", default=None, metavar="URL",
              help="Server URL. [default: the worker's, $CONVEYOR_URL, else embedded]")  # fmt: skip
@click.option("--grace", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Shutdown grace: how long active jobs may finish after SIGTERM before "
                   "they are handed back. [default: the worker's, else 30]")  # fmt: skip
@click.option("--startup-timeout", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS",
              help="Give up (exit 1) if the server is unreachable this long at start-up. "
                   "[default: wait until it answers]")  # fmt: skip
@click.option("--unknown-job-grace", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="How long a job whose name no live worker has a handler for waits before "
                   "it goes dead as unknown_job. [default: the worker's, else 300]")  # fmt: skip
@click.option("--allow-unsafe-server", is_flag=True,
              help="Start even if the server may evict jobs (maxmemory-policy).")  # fmt: skip
@click.option("--process-handlers", is_flag=True,
              help="Run every plain def handler in a child process.")  # fmt: skip
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Child processes. [default: CPU count, at most the concurrency]")  # fmt: skip
@click.option("--max-jobs-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a child after this many jobs.")  # fmt: skip
@click.option("--max-child-memory", type=click.IntRange(min=1), default=None, metavar="MB",
              help="Replace a child whose resident memory is over this after a job.")  # fmt: skip
@click.option("--child-init", default=None, metavar="MODULE",
              help="Module each child imports when it starts (heavy imports, models).")  # fmt: skip
@click.option("--max-abandoned-threads", type=click.IntRange(min=0), default=None, metavar="N",
              help="Stop (exit status 1) when more def handlers than this hang past their "
                   "timeout. [default: the worker's, else 10]")  # fmt: skip
@click.option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False),
              default="info", show_default=True)  # fmt: skip
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one JSON object per line.")  # fmt: skip
def worker(
    target: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    url: str | None,
    grace: float | None,
    startup_timeout: float | None,
    unknown_job_grace: float | None,
    allow_unsafe_server: bool,
    process_handlers: bool,
    processes: int | None,
    max_jobs_per_child: int | None,
    max_child_memory: int | None,
    child_init: str | None,
    max_abandoned_threads: int | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the jobs of a worker until SIGTERM or Ctrl-C (a second one stops at once).

    A worker started while the server is unreachable waits for it (logged once), unless
    --startup-timeout bounds the wait.

    MODULE:ATTR names a conveyor.Worker, or a mapping of job name to handler function
    (then --queue is required). The current folder is importable, so
    `conveyor worker myapp.tasks:worker` works from the project's root.
    """
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if unknown_job_grace is not None:
        changes["unknown_job_grace"] = unknown_job_grace
    if allow_unsafe_server:
        changes["allow_unsafe_server"] = True
    if process_handlers:
        changes["process_handlers"] = True
    if max_child_memory is not None:
        changes["max_child_memory"] = max_child_memory * 1024 * 1024
    given = {"processes": processes, "max_jobs_per_child": max_jobs_per_child,
             "child_init": child_init, "shutdown_grace": grace,
             "startup_timeout": startup_timeout,
             "max_abandoned_threads": max_abandoned_threads}  # fmt: skip
    changes.update({name: value for name, value in given.items() if value is not None})
    try:
        built = build_worker(load_target(target), queues, url, changes)
    except (TypeError, ValueError) as exc:  # a handler that is not callable, a bad queue name
        raise click.UsageError(str(exc)) from None
    # Every record names the job it was logged from (id, name, attempt).
    configure_logging(log_level.upper(), json_lines=log_format == "json")
    built.run()
