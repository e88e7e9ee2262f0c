"""What a running handler is told about its job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Reports(Protocol):
    """Where a job's progress and log lines go (the worker's
    :class:`~conveyor.worker.reporter.Reporter`, or a child process's pipe to it)."""

    def progress(self, queue: str, job_id: str, token: str, value: Any) -> None: ...

    def log(self, queue: str, job_id: str, token: str, message: str) -> None: ...


@dataclass(slots=True)
class JobContext:
    """What a handler knows about the job it runs.

    ``token`` is unique to this attempt's lock: use ``(id, attempt)`` or ``token`` to make
    side effects idempotent, since a job may run more than once (at-least-once delivery).
    """

    id: str
    name: str
    queue: str
    attempt: int
    max_attempts: int
    token: str
    worker_id: str
    reporter: Reports | None = field(default=None, repr=False)
    #: Set when someone cancelled this job or its timeout passed; a long ``def`` handler
    #: should check it and stop (its thread cannot be killed).
    cancelled: bool = False

    def progress(self, value: Any) -> None:
        """Report progress (a number or a small JSON value); readable as ``job.progress``.

        Safe to call from async and sync handlers; it never blocks on the server.
        """
        if self.reporter is not None:
            self.reporter.progress(self.queue, self.id, self.token, value)

    def log(self, message: str) -> None:
        """Append a line to the job's log (``job.logs``), kept up to 64 KiB per job."""
        if self.reporter is not None:
            self.reporter.log(self.queue, self.id, self.token, message)
