"""The settings of a worker, in one typed object."""

from __future__ import annotations

import math
from dataclasses import dataclass

from conveyor import defaults


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs. Every field has a safe default."""

    concurrency: int = defaults.CONCURRENCY
    fetch_batch: int = defaults.FETCH_BATCH
    lock_ttl: float = defaults.LOCK_TTL
    lock_renew_interval: float = defaults.LOCK_RENEW_INTERVAL
    stall_check_interval: float = defaults.STALL_CHECK_INTERVAL
    schedule_check_interval: float = defaults.SCHEDULE_CHECK_INTERVAL
    max_stalls: int = defaults.MAX_STALLS
    idle_block: float = defaults.IDLE_BLOCK
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    heartbeat_ttl: float = defaults.HEARTBEAT_TTL
    #: Seconds a starting worker waits for an unreachable server before it gives up with
    #: ``ServerUnavailable`` (``None``: it waits until the server answers, or a signal).
    startup_timeout: float | None = None
    #: Start even when the server may evict keys (``maxmemory-policy`` other than noeviction).
    allow_unsafe_server: bool = False
    # Process handlers (docs/processes.md)
    #: Run every plain ``def`` handler in a child process, unless it says ``process=False``.
    process_handlers: bool = False
    #: How many child processes; default: the CPU count or the concurrency, if smaller.
    processes: int | None = None
    #: Replace a child after it ran this many jobs (``None``: never).
    max_jobs_per_child: int | None = None
    #: Replace a child whose resident memory is over this many bytes after a job.
    max_child_memory: int | None = None
    #: A module each child imports when it starts (heavy imports, models): once per child.
    child_init: str | None = None
    #: Seconds from SIGTERM to SIGKILL when a child is stopped (a timeout, a shutdown).
    child_kill_grace: float = 2.0
    #: How children start: ``"spawn"`` or ``"forkserver"`` (never fork: the worker has threads).
    process_start_method: str = "spawn"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.fetch_batch < 1:
            raise ValueError("fetch_batch must be at least 1")
        if not 0 < self.lock_renew_interval < self.lock_ttl:
            raise ValueError("lock_renew_interval must be positive and below lock_ttl")
        if not _seconds(self.shutdown_grace):
            raise ValueError("shutdown_grace must be a finite number of seconds, 0 or more")
        if self.startup_timeout is not None and not _seconds(self.startup_timeout):
            raise ValueError(
                "startup_timeout must be a finite number of seconds, 0 or more (or None)"
            )
        _check_process_options(self)


def _seconds(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def _check_process_options(options: WorkerOptions) -> None:
    for name in ("processes", "max_jobs_per_child", "max_child_memory"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 (or None)")
    if options.child_kill_grace < 0:
        raise ValueError("child_kill_grace must not be negative")
    if options.process_start_method not in ("spawn", "forkserver"):
        raise ValueError('process_start_method must be "spawn" or "forkserver"')
