"""The script calls a worker makes, built and parsed here only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import defaults
from conveyor.job import JobState
from conveyor.keys import QueueKeys
from conveyor.ops import QueueOptions, ScriptCall, call
from conveyor.stored import STORED_INT_MAX, STORED_TIMEOUT_MS_MAX, StoredFields, plain

#: The job fields a claim carries, in the order include/claim.lua returns them.
CLAIM_FIELDS = (
    "id", "name", "payload", "attempt", "max_attempts", "timeout_ms", "options",
    "created_ms", "priority", "stalls", "started_ms", "worker", "state", "band", "keep_ms",
)  # fmt: skip
_STRIDE = len(CLAIM_FIELDS) + 1  # + the lock token


@dataclass(slots=True)
class Claim:
    """A job this worker holds the lock of, as the fetch or recovery script handed it over."""

    queue: str
    id: str
    name: str
    raw_payload: bytes
    attempt: int
    max_attempts: int
    timeout: float | None
    raw_options: bytes
    created_ms: int
    priority: int
    stalls: int
    previous_started_ms: int
    previous_worker: str
    token: str
    started_ms: int
    #: The job's options, decoded (``{}`` when it has none or they are malformed).
    options: dict[str, Any] = field(default_factory=dict)
    #: What is wrong with the stored job (see :class:`conveyor.stored.StoredFields`): a
    #: claim with problems is buried as ``invalid_job`` instead of run.
    problems: tuple[str, ...] = ()


def parse_claim(queue: str, now: int, values: Sequence[Any], token: bytes) -> Claim:
    """One claim from its :data:`CLAIM_FIELDS` values; never raises: a missing or malformed
    field reads as its default and is named in ``problems``."""
    (job_id, name, payload, attempt, max_attempts, timeout_ms, options, created_ms, priority,
     stalls, started_ms, worker, state, band, keep_ms) = values  # fmt: skip
    max_attempts, timeout_ms, priority = max_attempts or b"1", timeout_ms or b"0", priority or b"0"
    stalls, started_ms = stalls or b"0", started_ms or b"0"
    # The common case first, quickly (a claim is parsed per job run): anything unusual is
    # read again field by field below, so that every problem is named.
    if (
        name and attempt and created_ms and band and state in _STATES and not options
        and plain(attempt, max_attempts, timeout_ms, created_ms, priority, stalls,
                  started_ms, band, keep_ms)
    ):  # fmt: skip
        tries, most, ms = int(attempt), int(max_attempts), int(timeout_ms)
        created, rank = int(created_ms), int(priority)
        if (
            most >= 1 and ms <= STORED_TIMEOUT_MS_MAX and rank <= _PRIORITY_MAX
            and max(tries, most, created, int(band), int(stalls), int(started_ms)) <= _INT_MAX
            and name.isascii()
        ):  # fmt: skip
            return Claim(
                queue, job_id.decode(errors="replace"), name.decode(), payload, tries, most,
                ms / 1000.0 or None, b"", created, rank, int(stalls), int(started_ms),
                worker.decode(errors="replace"), token.decode(errors="replace"), now,
            )  # fmt: skip
    return _parse_claim_slowly(queue, now, values, token)


def _parse_claim_slowly(queue: str, now: int, values: Sequence[Any], token: bytes) -> Claim:
    f = StoredFields(dict(zip(_FIELD_KEYS, values, strict=True)))
    timeout_ms = f.integer("timeout_ms", 0, 0, STORED_TIMEOUT_MS_MAX)
    claim = Claim(
        queue, _text(values[0]), f.text("name", required=True), f.raw("payload") or b"",
        f.integer("attempt", 1, 0, required=True), f.integer("max_attempts", 1, 1),
        timeout_ms / 1000.0 or None, f.raw("options") or b"",
        f.integer("created_ms", 0, 0, STORED_INT_MAX, required=True),
        f.integer("priority", 0, defaults.PRIORITY_MIN, defaults.PRIORITY_MAX),
        f.integer("stalls", 0, 0), f.integer("started_ms", 0, 0), _text(values[11]),
        _text(token), now, f.options(),
    )  # fmt: skip
    f.integer("band", 0, required=True)
    f.integer("keep_ms", 0)
    state = f.text("state", required=True)
    if state and state.encode() not in _STATES:
        f.problem("state", f"{state!r} is not a state")
    claim.problems = tuple(f.problems)
    return claim


_STATES = frozenset(state.value.encode() for state in JobState)
_FIELD_KEYS = tuple(name.encode() for name in CLAIM_FIELDS)
_PRIORITY_MAX, _INT_MAX = defaults.PRIORITY_MAX, STORED_INT_MAX


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _claims(queue: str, now: int, flat: Sequence[Any]) -> list[Claim]:
    values = iter(flat)
    return [
        parse_claim(queue, now, claim[:-1], claim[-1])
        for claim in zip(*[values] * _STRIDE, strict=True)
    ]


@dataclass(frozen=True)
class Fetched:
    """The answer of one fetch call."""

    claims: list[Claim]
    paused: bool
    #: How long to wait before fetching again: until the next delayed job is due, or until
    #: a limit lets a job start (-1: nothing known; wait for a wake-up or the idle timeout).
    wait_ms: int
    limited: bool = False
    #: Nothing was taken, but jobs of names the worker has no handler for were left for
    #: workers that have one (a rolling deploy): see :func:`fetch`.
    passed_over: bool = False


def fetch(
    keys: QueueKeys, options: QueueOptions, count: int, worker_id: str, token_base: str,
    lock_ttl_ms: int, *, names: Sequence[str], unknown_job_grace: float,
) -> ScriptCall:  # fmt: skip
    """Take up to ``count`` jobs whose name is one of ``names``; a job of another name is
    taken (to be buried as unknown) only once no live worker has known its name for
    ``unknown_job_grace`` seconds."""
    return call(
        "fetch", keys, events_maxlen=options.events_maxlen, count=count, worker_id=worker_id,
        token_base=token_base, lock_ttl_ms=lock_ttl_ms, promote_limit=1000,
        unknown_grace_ms=round(unknown_job_grace * 1000),
        scan_limit=defaults.FETCH_SCAN_LIMIT, names=names,
    )  # fmt: skip


def parse_fetch(queue: str, reply: Sequence[Any]) -> Fetched:
    status, now, wait_ms = reply[0], int(reply[1]), int(reply[2])
    return Fetched(_claims(queue, now, reply[3:]), status == b"paused", wait_ms,
                   status == b"limited", status == b"passed")  # fmt: skip


def complete(
    keys: QueueKeys, options: QueueOptions, done: Iterable[tuple[str, str, bytes, int]]
) -> ScriptCall:
    """Acknowledge (id, token, result, duration bucket) tuples."""
    return call(
        "complete", keys, events_maxlen=options.events_maxlen,
        keep_count=options.completed_keep_count,
        keep_age_ms=round(options.completed_keep_age * 1000),
        metrics_ttl_ms=_metrics_ttl(options), jobs=done,
    )  # fmt: skip


def _metrics_ttl(options: QueueOptions) -> int:
    return round((options.metrics_window + 60) * 1000)


def fail(
    keys: QueueKeys, options: QueueOptions, claim: Claim, *, retry: bool, delay: float,
    reason: str, attempt_record: bytes, error: bytes, front: bool = False,
) -> ScriptCall:  # fmt: skip
    """Record a failed attempt; retry it after ``delay`` (at the front of its priority with
    ``front``, else behind the jobs waiting) or bury it for ``reason``."""
    return call(
        "fail", keys, events_maxlen=options.events_maxlen,
        dead_keep_count=options.dead_keep_count,
        dead_keep_age_ms=round(options.dead_keep_age * 1000), id=claim.id, token=claim.token,
        decision="retry" if retry else "dead", delay_ms=round(delay * 1000),
        front=1 if front else 0, reason=reason, attempt_record=attempt_record,
        last_error=error, route=1 if options.dead_letter_queue else 0,
        metrics_ttl_ms=_metrics_ttl(options),
    )  # fmt: skip


def report(
    keys: QueueKeys, options: QueueOptions, reports: Iterable[tuple[str, str, bytes, bytes]]
) -> ScriptCall:
    """Store (id, token, progress JSON, log lines) reported by running handlers."""
    return call("report", keys, events_maxlen=options.events_maxlen,
                max_log_bytes=defaults.MAX_LOG_BYTES, reports=reports)  # fmt: skip


def finish_cancelled(keys: QueueKeys, options: QueueOptions, claim: Claim) -> ScriptCall:
    """Record a running job as cancelled (its lock token is checked)."""
    return call(
        "finish_cancelled", keys, events_maxlen=options.events_maxlen,
        keep_count=options.completed_keep_count,
        keep_ms=round(options.completed_keep_age * 1000), id=claim.id, token=claim.token,
    )  # fmt: skip


def rate_limited(
    keys: QueueKeys, options: QueueOptions, claim: Claim, seconds: float
) -> ScriptCall:
    """Throttle the queue and hand the job back without spending an attempt."""
    return call(
        "rate_limited", keys, events_maxlen=options.events_maxlen,
        throttle_ms=max(1, round(seconds * 1000)), id=claim.id, token=claim.token,
    )  # fmt: skip


def release(keys: QueueKeys, options: QueueOptions, held: Iterable[tuple[str, str]]) -> ScriptCall:
    """Hand back (id, token) pairs without spending an attempt."""
    return call("release", keys, events_maxlen=options.events_maxlen, jobs=held)


def extend_locks(
    keys: QueueKeys, lock_ttl_ms: int, worker_id: str, heartbeat_ttl_ms: int, info: bytes,
    held: Iterable[tuple[str, str]],
) -> ScriptCall:  # fmt: skip
    """Renew the locks of (id, token) pairs and record the worker's heartbeat and ``info``."""
    return call("extend_locks", keys, lock_ttl_ms=lock_ttl_ms, worker_id=worker_id,
                heartbeat_ttl_ms=heartbeat_ttl_ms, info=info, jobs=held)  # fmt: skip


def recover_stalled(
    keys: QueueKeys, options: QueueOptions, limit: int, worker_id: str, token_base: str,
    lock_ttl_ms: int,
) -> ScriptCall:  # fmt: skip
    """Claim up to ``limit`` jobs whose lock expired."""
    return call("recover_stalled", keys, events_maxlen=options.events_maxlen, limit=limit,
                worker_id=worker_id, token_base=token_base, lock_ttl_ms=lock_ttl_ms)  # fmt: skip


def parse_recovered(queue: str, reply: Sequence[Any]) -> list[Claim]:
    return _claims(queue, int(reply[0]), reply[1:])
