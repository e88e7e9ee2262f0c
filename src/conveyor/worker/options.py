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
    #: Seconds a job whose name this worker has no handler for is left waiting for a worker
    #: that has one, counted from when no live worker of the queue knows the name (and no
    #: earlier than a worker first passed it over); then it is dead as ``unknown_job``.
    unknown_job_grace: float = defaults.UNKNOWN_JOB_GRACE
    idle_block: float = defaults.IDLE_BLOCK
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    heartbeat_ttl: float = defaults.HEARTBEAT_TTL
    #: Plain ``def`` handlers hung past their timeout (abandoned threads) that the worker
    #: tolerates; one more and it stops, exit status 1, for its supervisor to restart it.
    max_abandoned_threads: int = defaults.MAX_ABANDONED_THREADS
    #: Seconds a starting worker waits for an unreachable server before it gives up with
    #: ``ServerUnavailable`` (``None``: it waits until the server answers, or a signal).
    startup_timeout: float | None = None
    #: A background task (fetcher, stall recovery, schedule firer, lock keeper) that fails
    #: is logged and restarted with backoff; after this many failures in a row the worker
    #: stops with :class:`~conveyor.WorkerFailedError` (exit status 1 from the CLI).
    task_restarts: int = defaults.TASK_RESTARTS
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
        if self.task_restarts < 0:
            raise ValueError("task_restarts must not be negative")
        if self.fetch_batch < 1:
            raise ValueError("fetch_batch must be at least 1")
        if not 0 < self.lock_renew_interval < self.lock_ttl:
            raise ValueError("lock_renew_interval must be positive and below lock_ttl")
        limit = self.max_abandoned_threads
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_abandoned_threads must be an integer >= 0, got {limit!r}")
        if not _seconds(self.shutdown_grace):
            raise ValueError("shutdown_grace must be a finite number of seconds, 0 or more")
        if self.startup_timeout is not None and not _seconds(self.startup_timeout):
            raise ValueError(
                "startup_timeout must be a finite number of seconds, 0 or more (or None)"
            )
        if not _seconds(self.unknown_job_grace) or self.unknown_job_grace > defaults.MAX_SECONDS:
            raise ValueError(
                f"unknown_job_grace must be 0 to {defaults.MAX_SECONDS:.0f} seconds, "
                f"got {self.unknown_job_grace!r}"
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
