"""What a running handler is told about its job."""

from __future__ import annotations

from dataclasses import dataclass


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
