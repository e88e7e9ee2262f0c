"""Exceptions raised by Conveyor's public API."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises."""


class ServerUnavailable(ConveyorError):
    """The Redis/Valkey server could not be reached after a short bounded retry."""


class ConfigurationError(ConveyorError):
    """A URL, option or server setting is not usable."""


class UnsafeServerError(ConfigurationError):
    """The server may evict or lose jobs (for example ``maxmemory-policy`` evicts keys)."""


class PayloadError(ConveyorError, ValueError):
    """A payload or result is not JSON, or is larger than the configured limit."""


class DeadImportError(ConveyorError, ValueError):
    """A dead-letter import refused a file (nothing was written); ``problems`` holds each
    bad record as (line number, what is wrong)."""

    #: At most this many problems are spelled out in the message (all are in ``problems``).
    SHOWN = 20

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} bad record{'' if count == 1 else 's'}, nothing imported:"]
        lines += [f"  line {number}: {why}" for number, why in problems[: self.SHOWN]]
        if count > self.SHOWN:
            rest = ", ".join(str(number) for number, _ in problems[self.SHOWN :])
            lines.append(f"  and {count - self.SHOWN} more, on lines {rest}")
        super().__init__("\n".join(lines))


class JobNotFound(ConveyorError, LookupError):
    """No job with that id exists in the queue."""


class JobFailed(ConveyorError):
    """The job awaited with ``queue.result()`` is dead; ``job`` holds its reason and history."""

    def __init__(self, job: object, message: str) -> None:
        super().__init__(message)
        self.job = job


class JobCancelled(JobFailed):
    """The job awaited with ``queue.result()`` was cancelled."""


class RateLimited(ConveyorError):
    """Raise from a handler when a downstream says "slow down".

    The whole queue starts no job for ``seconds`` (across all workers) and this job goes
    back to the front of the queue without spending an attempt.
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"rate limited for {seconds:g}s")
        self.seconds = seconds


class ResultTimeout(ConveyorError, TimeoutError):
    """The job did not finish within the time ``queue.result()`` was given."""


class JobStateError(ConveyorError):
    """The job is in a state that does not allow the operation (e.g. removing an active job)."""


class QueueBusyError(ConveyorError):
    """The queue has active jobs and the operation was not forced."""


class NotDurableError(ConveyorError):
    """A durable enqueue stored the job, but the server did not confirm the asked durability."""

    def __init__(self, message: str, *, aof_local: int, replicas: int) -> None:
        super().__init__(message)
        self.aof_local = aof_local
        self.replicas = replicas


class EmbeddedServerError(ConveyorError):
    """The embedded Valkey server could not be started, found or stopped."""


class WorkerFailedError(ConveyorError):
    """A background task of a worker (a fetcher, stall recovery, the lock keeper, ...) kept
    failing, so the worker stopped rather than heartbeat without working (the CLI exits 1)."""


class PermanentError(ConveyorError):
    """Raise from a handler to send the job to the dead-letter queue at once, without retries."""


class RetryLater(ConveyorError):
    """Raise from a handler to retry the job after ``delay`` seconds (still within its budget)."""

    def __init__(self, delay: float, message: str = "") -> None:
        super().__init__(message or f"retry requested in {delay:g}s")
        self.delay = delay


class WorkerStuckError(WorkerFailedError):
    """The worker stopped itself: more handler threads hung past their timeout than
    ``WorkerOptions.max_abandoned_threads`` allows (a supervisor should restart it)."""
