"""The dead-letter export format: one JSON line per dead job, and the checks an import makes.

A line is ``{"queue": ..., "fields": {...}}`` where ``fields`` is the job's stored hash,
every value a string. An import trusts nothing in it: each record is decoded with a typed
struct and checked against the limits of :mod:`defaults` (ids, sizes, times, priorities,
attempts) before anything is written, so no imported job can stop a worker or a reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from conveyor import codec, defaults, validate
from conveyor.errors import ConveyorError, DeadImportError
from conveyor.job import Attempt, DeadReason, ErrorInfo
from conveyor.ops import JobSpec, QueueOptions, priority_band
from conveyor.retry import Backoff

_MAX_MS = round(defaults.MAX_SECONDS * 1000)
#: Times that record the past (created, started, failed, died), in ms: at most this far
#: ahead of our clock (another machine's clock may run ahead).
_SKEW_MS = round(defaults.MAX_CLOCK_SKEW * 1000)


class DeadFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A dead job's stored hash, as an export writes it (numbers are decimal strings)."""

    id: str
    name: str
    payload: str
    band: int
    priority: int
    max_attempts: int
    created_ms: int
    state: str = "dead"
    reason: DeadReason | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    attempt: int | None = None
    stalls: int | None = None
    replays: int | None = None
    timeout_ms: int | None = None
    keep_ms: int | None = None
    options: str | None = None
    group: str | None = None
    history: str | None = None
    error: str | None = None
    first_failed_ms: int | None = None
    failed_ms: int | None = None
    started_ms: int | None = None
    worker: str | None = None
    token: str | None = None
    progress: str | None = None
    result: str | None = None
    logs: str | None = None
    cancel_requested: str | None = None
    #: When a worker first passed over the job for want of a handler (see fetch.lua).
    unknown_since_ms: int | None = None


class DeadRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One line of an export."""

    queue: str
    fields: DeadFields


_record = msgspec.json.Decoder(DeadRecord, strict=False)  # strict=False: "3" is the int 3
_attempt = msgspec.json.Decoder(Attempt)
_error = msgspec.json.Decoder(ErrorInfo)


def record_line(queue: str, fields: dict[str, str]) -> bytes:
    """The export line of one dead job's stored hash."""
    return codec.encode({"queue": queue, "fields": fields})


@dataclass(frozen=True)
class CheckedJob:
    """A record that passed every check: what the import script writes."""

    id: str
    died_ms: int
    fields: list[str]  # field, value, field, value, ...
    partition_key: str | None = None  # where it goes in a partitioned queue (else by id)


def check_line(line: bytes, options: QueueOptions, now: float | None = None) -> CheckedJob:
    """Decode and check one export line; ``ValueError`` (or ``PayloadError``) says what is wrong."""
    try:
        fields = _record.decode(line).fields
    except msgspec.ValidationError as exc:  # a wrong type, a missing or unknown field
        raise ValueError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    now_ms = round((time.time() if now is None else now) * 1000)
    _check(fields, options, now_ms)
    flat: list[str] = []
    for name in fields.__struct_fields__:
        value = getattr(fields, name)
        if value is not None and name != "token":  # a dead job holds no lock
            flat += (name, value.value if isinstance(value, DeadReason) else str(value))
    key = _meta(fields).get("partition_key")
    return CheckedJob(fields.id, fields.finished_ms or now_ms, flat, key)


def stored_spec(stored: dict[bytes, bytes], options: QueueOptions) -> JobSpec:
    """A stored dead job as a job to enqueue elsewhere (a move), checked like an import;
    ``ValueError`` says which field a worker could not run. Unknown fields are ignored."""
    known = {key.decode(): value.decode(errors="replace") for key, value in stored.items()
             if key.decode(errors="replace") in DeadFields.__struct_fields__}  # fmt: skip
    try:
        f = msgspec.convert(known, DeadFields, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    _check(f, options, round(time.time() * 1000))
    meta = _meta(f)
    return JobSpec(
        f.name, codec.decode(f.payload), id=f.id, priority=f.priority, attempts=f.max_attempts,
        timeout=f.timeout_ms / 1000 if f.timeout_ms else None,
        retention=f.keep_ms / 1000 if f.keep_ms is not None else None,
        group=f.group, meta=meta, partition_key=meta.get("partition_key"),
    )  # fmt: skip


def read_file(path: str | Path, options: QueueOptions) -> list[CheckedJob]:
    """Every record of an export file, checked; :class:`DeadImportError` names each bad line
    (blank lines are skipped)."""
    jobs: list[CheckedJob] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    now = time.time()
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                job = check_line(line, options, now)
            except ValueError as exc:
                problems.append((number, " ".join(str(exc).split())))
                continue
            if job.id in seen:
                problems.append((number, f"id {job.id!r} repeats line {seen[job.id]}"))
                continue
            seen[job.id] = number
            jobs.append(job)
    if problems:
        raise DeadImportError(str(path), problems)
    return jobs


def _check(f: DeadFields, options: QueueOptions, now_ms: int) -> None:
    validate.text(f.id, "id", defaults.MAX_ID_CHARS)
    validate.text(f.name, "name", defaults.MAX_NAME_CHARS)
    _json(f.payload, "payload", options.max_payload_bytes)
    validate.integer(f.priority, "priority", defaults.PRIORITY_MIN, defaults.PRIORITY_MAX)
    if f.band != priority_band(f.priority):
        raise ValueError(f"band must be {priority_band(f.priority)} for priority "
                         f"{f.priority}, not {f.band}")  # fmt: skip
    validate.integer(f.max_attempts, "max_attempts", 1, defaults.ATTEMPTS_MAX)
    for counter in ("attempt", "stalls", "replays"):
        _maybe(validate.integer, getattr(f, counter), counter, 0, defaults.ATTEMPTS_MAX)
    for past in ("created_ms", "started_ms", "first_failed_ms", "failed_ms", "finished_ms"):
        _maybe(validate.integer, getattr(f, past), past, 0, now_ms + _SKEW_MS)
    _maybe(validate.integer, f.due_ms, "due_ms", 0, now_ms + _MAX_MS)
    _maybe(validate.integer, f.timeout_ms, "timeout_ms", 1, _MAX_MS)
    _maybe(validate.integer, f.keep_ms, "keep_ms", 0, _MAX_MS)
    if f.state != "dead":
        raise ValueError(f"state must be 'dead', not {f.state!r}")
    for key in ("group", "worker", "token"):
        _maybe(validate.text, getattr(f, key), key, defaults.MAX_KEY_CHARS)
    if f.options is not None:
        _options(f.options)
    for line in (f.history or "").splitlines():
        _struct(_attempt, line, "history")
    if f.error is not None:
        _struct(_error, f.error, "error")
    _maybe(_json, f.progress, "progress", defaults.MAX_PROGRESS_BYTES)
    _maybe(_json, f.result, "result", options.max_result_bytes)
    if f.logs is not None and len(f.logs.encode()) > defaults.MAX_LOG_BYTES:
        raise ValueError(f"logs must be at most {defaults.MAX_LOG_BYTES} bytes")
    if f.cancel_requested not in (None, "1"):
        raise ValueError(f"cancel_requested must be '1', not {f.cancel_requested!r}")


def _meta(f: DeadFields) -> dict[str, Any]:
    """The job's stored options (checked by :func:`_check`: a JSON object)."""
    meta: dict[str, Any] = codec.decode(f.options) if f.options else {}
    return meta


def _maybe(check: Any, value: Any, *args: Any) -> None:
    if value is not None:
        check(value, *args)


def _json(text: str, what: str, limit: int) -> Any:
    data = text.encode()
    if len(data) > limit:
        raise ValueError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    try:
        return codec.decode(data)
    except ConveyorError as exc:
        raise ValueError(f"{what} is {exc}") from None


def _struct(decoder: msgspec.json.Decoder[Any], text: str, what: str) -> None:
    try:
        decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{what} is not valid: {exc}") from None


def _options(text: str) -> None:
    options = _json(text, "options", defaults.MAX_PAYLOAD_BYTES)
    if not isinstance(options, dict):
        raise ValueError("options must be a JSON object")
    if "backoff" in options:
        try:
            msgspec.convert(options["backoff"], Backoff)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"options.backoff is not valid: {exc}") from None
    key = options.get("partition_key")
    _maybe(validate.text, key, "options.partition_key", defaults.MAX_KEY_CHARS)
