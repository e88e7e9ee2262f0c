"""The job as a value: what a job is and what happened to it, read from its stored hash."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from conveyor import codec, defaults
from conveyor.states import JobState as JobState
from conveyor.stored import STORED_TIMEOUT_MS_MAX, StoredFields


class DeadReason(str, enum.Enum):
    """Why a job is in the dead-letter set."""

    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    PERMANENT_ERROR = "permanent_error"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_JOB = "unknown_job"
    TOO_MANY_STALLS = "too_many_stalls"
    KILLED = "killed"
    #: A stored field of the job is missing or malformed (see :attr:`Job.problems`).
    INVALID_JOB = "invalid_job"


class AttemptCause(str, enum.Enum):
    """Why one attempt failed."""

    ERROR = "error"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_JOB = "unknown_job"
    INVALID_JOB = "invalid_job"


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
    #: What is wrong with the stored job, one entry per field (``"priority: b'1.5' is not
    #: an integer"``); such a field reads as its default. Empty for a well-formed job.
    problems: tuple[str, ...] = ()

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


def job_from_hash(
    queue: str, fields: dict[bytes, bytes], *, job_id: str | None = None,
    state: JobState | None = None,
) -> Job:  # fmt: skip
    """Build a :class:`Job` from the stored hash of a job; never raises.

    A missing or malformed field reads as its default and is named in ``problems``.
    ``job_id`` and ``state`` are what the caller knows (from the key, from the set it
    listed), used when the hash lacks them.
    """
    f = StoredFields(fields)
    stored_id = f.text("id", required=job_id is None)
    raw_state = f.text("state")
    try:
        found_state = JobState(raw_state)
    except ValueError:
        f.problem("state", f"{raw_state!r} is not a state" if raw_state else "missing")
        found_state = state or JobState.WAITING
    raw_reason = f.text("reason")
    try:
        reason = DeadReason(raw_reason) if raw_reason else None
    except ValueError:
        f.problem("reason", f"{raw_reason!r} is not a dead reason")
        reason = None
    payload = f.raw("payload")
    if payload is None:
        f.problem("payload", "missing")
    timeout_ms = f.integer("timeout_ms", 0, 0, STORED_TIMEOUT_MS_MAX)
    job = Job(
        id=job_id or stored_id,
        queue=queue,
        name=f.text("name", required=True),
        state=found_state,
        raw_payload=payload or b"",
        priority=f.integer("priority", 0, defaults.PRIORITY_MIN, defaults.PRIORITY_MAX),
        attempt=f.integer("attempt", 0, 0),
        max_attempts=f.integer("max_attempts", 1, 1),
        timeout=timeout_ms / 1000.0 if timeout_ms else None,
        created_at=f.millis("created_ms") or 0.0,
        due_at=f.millis("due_ms"),
        started_at=f.millis("started_ms"),
        finished_at=f.millis("finished_ms"),
        raw_result=f.raw("result"),
        error=_decoded(f, "error", _error_decoder),
        dead_reason=reason,
        stalls=f.integer("stalls", 0, 0),
        first_failed_at=f.millis("first_failed_ms"),
        last_failed_at=f.millis("failed_ms"),
        replays=f.integer("replays", 0, 0),
        raw_progress=f.raw("progress"),
        logs=tuple((f.raw("logs") or b"").decode(errors="replace").splitlines()),
        history=_history(f),
        options=f.options(),
        group=f.text("group") or None,
    )
    f.integer("band", 0, required=True)  # not shown; a worker buries a job whose band is bad
    return msgspec.structs.replace(job, problems=tuple(f.problems)) if f.problems else job


def _decoded(f: StoredFields, name: str, decoder: msgspec.json.Decoder[ErrorInfo]) -> Any:
    raw = f.raw(name)
    if not raw:
        return None
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError:
        f.problem(name, "not a JSON error record")
        return None


def _history(f: StoredFields) -> tuple[Attempt, ...]:
    attempts = []
    for line in (f.raw("history") or b"").splitlines():
        if not line:
            continue
        try:
            attempts.append(_attempt_decoder.decode(line))
        except msgspec.DecodeError:
            f.problem("history", "a line is not a JSON attempt record")
    return tuple(attempts)
