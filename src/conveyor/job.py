"""The job as a value: what a job is and what happened to it, read from its stored hash."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from conveyor import codec


class JobState(str, enum.Enum):
    """Where a job is in its lifecycle."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"


class DeadReason(str, enum.Enum):
    """Why a job is in the dead-letter set."""

    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    PERMANENT_ERROR = "permanent_error"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_JOB = "unknown_job"
    TOO_MANY_STALLS = "too_many_stalls"
    KILLED = "killed"


class AttemptCause(str, enum.Enum):
    """Why one attempt failed."""

    ERROR = "error"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_JOB = "unknown_job"


class ErrorInfo(msgspec.Struct, frozen=True):
    """The error of a failed attempt."""

    type: str
    message: str
    traceback: str = ""


class Attempt(msgspec.Struct, frozen=True):
    """One failed attempt in a job's history."""

    attempt: int
    cause: AttemptCause
    error: ErrorInfo
    worker: str
    started_at: float
    ended_at: float


class Durability(msgspec.Struct, frozen=True):
    """What the server confirmed for a durable enqueue."""

    aof_local: int
    replicas: int


_attempt_decoder = msgspec.json.Decoder(Attempt)
_error_decoder = msgspec.json.Decoder(ErrorInfo)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one job. Read it with ``queue.get_job(id)``; it never talks to Redis."""

    id: str
    queue: str
    name: str
    state: JobState
    raw_payload: bytes
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    created_at: float = 0.0
    due_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    raw_result: bytes | None = None
    error: ErrorInfo | None = None
    dead_reason: DeadReason | None = None
    stalls: int = 0
    first_failed_at: float | None = None
    last_failed_at: float | None = None
    replays: int = 0
    raw_progress: bytes | None = None
    logs: tuple[str, ...] = ()
    history: tuple[Attempt, ...] = ()
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    group: str | None = None
    durability: Durability | None = None

    @property
    def payload(self) -> Any:
        """The decoded payload (raises :class:`~conveyor.PayloadError` if it is not JSON)."""
        return codec.decode(self.raw_payload)

    @property
    def progress(self) -> Any:
        """The last progress the handler reported (``None`` if none)."""
        return None if self.raw_progress is None else codec.decode(self.raw_progress)

    @property
    def result(self) -> Any:
        """The handler's return value, once completed (``None`` before)."""
        return None if self.raw_result is None else codec.decode(self.raw_result)


def _ms(value: bytes | None) -> float | None:
    return None if not value else int(value) / 1000.0


def job_from_hash(queue: str, fields: dict[bytes, bytes]) -> Job:
    """Build a :class:`Job` from the stored hash of a job."""
    get = fields.get
    history = tuple(
        _attempt_decoder.decode(line) for line in (get(b"history") or b"").splitlines() if line
    )
    error = get(b"error")
    reason = get(b"reason")
    timeout_ms = int(get(b"timeout_ms") or 0)
    options = get(b"options")
    return Job(
        id=fields[b"id"].decode(),
        queue=queue,
        name=fields[b"name"].decode(),
        state=JobState(fields[b"state"].decode()),
        raw_payload=fields[b"payload"],
        priority=int(get(b"priority") or 0),
        attempt=int(get(b"attempt") or 0),
        max_attempts=int(get(b"max_attempts") or 1),
        timeout=timeout_ms / 1000.0 if timeout_ms else None,
        created_at=_ms(get(b"created_ms")) or 0.0,
        due_at=_ms(get(b"due_ms")),
        started_at=_ms(get(b"started_ms")),
        finished_at=_ms(get(b"finished_ms")),
        raw_result=get(b"result"),
        error=_error_decoder.decode(error) if error else None,
        dead_reason=DeadReason(reason.decode()) if reason else None,
        stalls=int(get(b"stalls") or 0),
        first_failed_at=_ms(get(b"first_failed_ms")),
        last_failed_at=_ms(get(b"failed_ms")),
        replays=int(get(b"replays") or 0),
        raw_progress=get(b"progress"),
        logs=tuple((get(b"logs") or b"").decode(errors="replace").splitlines()),
        history=history,
        options=codec.decode(options) if options else {},
        group=group.decode() if (group := get(b"group")) else None,
    )
