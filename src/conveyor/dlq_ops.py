"""Dead-letter operations, written once and free of I/O (see :mod:`conveyor.ops`).

Bulk operations work in bounded batches: each batch is one atomic script call, so an
interrupted bulk replay or drop loses nothing and can simply be run again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from conveyor import defaults, dlq_records, validate
from conveyor.dlq_records import CheckedJob, record_line
from conveyor.job import DeadReason, Job, JobState, job_from_hash
from conveyor.keys import QueueKeys, job_partition, partition_for
from conveyor.ops import (
    Call,
    Command,
    JobSpec,
    Op,
    Pause,
    QueueOptions,
    call,
    enqueue_many,
    job_args,
    priority_band,
)

log = logging.getLogger("conveyor.dlq")

SCAN = 1000  # dead-set entries one list call looks at, at most
BATCH = 500  # jobs one replay, drop or import call moves, at most
IMPORT_BYTES = 16 * 1024 * 1024  # and at most about this much data per import call


@dataclass(frozen=True)
class DeadFilter:
    """Which dead jobs an operation applies to; every field left empty matches anything."""

    reason: DeadReason | str | None = None
    name: str | None = None
    error_type: str | None = None
    since: float | None = None  # Unix time: died at or after
    until: float | None = None  # Unix time: died at or before


@dataclass(frozen=True)
class DeadPage:
    """One page of dead jobs, newest first; pass ``cursor`` back for the next page."""

    jobs: list[Job]
    cursor: int | None  # None at the end


@dataclass(frozen=True)
class BulkResult:
    """What a bulk replay or drop did (or, with ``dry_run``, would do).

    ``refused`` maps the id of each dead job a replay left dead to why: a field that a
    worker could not run or that could not be placed in the queue.
    """

    matched: int
    moved: int
    ids: list[str]
    dry_run: bool = False
    refused: dict[str, str] = field(default_factory=dict)


#: What one replay or move batch did: the ids moved, and the ids refused with why.
Moved = tuple[list[str], dict[str, str]]


def _scan(keys: QueueKeys, where: DeadFilter, cursor: int, want: int, ids_only: bool) -> Call:
    """One step of the list_dead script: from ``cursor``, up to ``want`` matches."""
    reason = where.reason.value if isinstance(where.reason, DeadReason) else where.reason
    return call(
        "list_dead", keys, cursor=cursor, scan=SCAN, want=want, ids_only=int(ids_only),
        reason=reason or "", name=where.name or "", error_type=where.error_type or "",
        since_ms=round(where.since * 1000) if where.since else 0,
        until_ms=round(where.until * 1000) if where.until else 0,
    )  # fmt: skip


def list_dead(keys: QueueKeys, where: DeadFilter, cursor: int = 0, limit: int = 50) -> Op[DeadPage]:
    """A page of dead jobs matching ``where``, newest first."""
    jobs: list[Job] = []
    position: int | None = cursor
    while position is not None and len(jobs) < limit:
        (reply,) = yield [_scan(keys, where, position, limit - len(jobs), ids_only=False)]
        jobs += [job_from_hash(keys.queue, dict(zip(h[::2], h[1::2], strict=True)),
                               state=JobState.DEAD)
                 for h in reply[1:]]  # fmt: skip
        position = None if int(reply[0]) < 0 else int(reply[0])
    return DeadPage(jobs, position)


def matching_ids(keys: QueueKeys, where: DeadFilter) -> Op[list[str]]:
    """Every dead job id matching ``where`` (ids only, scanned in bounded steps)."""
    ids: list[str] = []
    position = 0
    while True:
        (reply,) = yield [_scan(keys, where, position, SCAN, ids_only=True)]
        ids += [raw.decode() for raw in reply[1:]]
        if int(reply[0]) < 0:
            return ids
        position = int(reply[0])


def replay(
    keys: QueueKeys, options: QueueOptions, ids: Sequence[str], payload: bytes | None = None
) -> Op[Moved]:
    """Replay these dead jobs (one batch); ``payload`` replaces the stored one (one id only).

    The script checks each job's fields before its first write; a job it refuses stays dead.
    """
    if payload is not None and len(ids) != 1:
        raise ValueError("an edited payload replays exactly one job")
    edited = payload if payload is not None else ""
    batch = call(  # the script checks band, priority and max_attempts against these ranges
        "replay_dead", keys, events_maxlen=options.events_maxlen,
        band_min=priority_band(defaults.PRIORITY_MAX),
        band_max=priority_band(defaults.PRIORITY_MIN),
        priority_min=defaults.PRIORITY_MIN, priority_max=defaults.PRIORITY_MAX,
        attempts_max=defaults.ATTEMPTS_MAX, jobs=[(job_id, edited) for job_id in ids],
    )  # fmt: skip
    (reply,) = yield [batch]
    replayed, refused = reply
    pairs = zip(refused[::2], refused[1::2], strict=True)
    return [raw.decode() for raw in replayed], {key.decode(): why.decode() for key, why in pairs}


def move(
    keys: QueueKeys, options: QueueOptions, targets: Sequence[QueueKeys], ids: Sequence[str]
) -> Op[Moved]:
    """Enqueue copies of these dead jobs on the queue made of ``targets`` (its partitions;
    same ids, each on the partition its partition key or id maps to), then drop the originals.

    Each job is checked first; one that could not run stays dead (refused, with why). The
    copy comes first and is idempotent (same id, same partition), so an interruption at any
    point leaves the job in at least one place, and running the move again finishes it.
    """
    if [target.queue for target in targets] == [keys.queue]:
        return (yield from replay(keys, options, ids))
    replies = yield [Command(("HGETALL", keys.job(job_id))) for job_id in ids]
    homes: dict[int, list[tuple[JobSpec, bytes]]] = {}
    refused: dict[str, str] = {}
    for job_id, fields in zip(ids, replies, strict=True):
        if fields.get(b"state") != b"dead":
            continue
        try:
            spec = dlq_records.stored_spec(fields, options)
        except ValueError as exc:
            refused[job_id] = " ".join(str(exc).split())
            continue
        home = job_partition(len(targets), spec.partition_key, spec.id) or 0
        homes.setdefault(home, []).append((spec, fields.get(b"history") or b""))
    moved: list[str] = []
    for home, jobs in sorted(homes.items()):
        target = targets[home]
        yield from enqueue_many(target, [spec for spec, _ in jobs], options)
        yield [Command(("HSET", target.job(spec.id or ""), "history", history))
               for spec, history in jobs]  # fmt: skip
        moved += [spec.id or "" for spec, _ in jobs]
    yield from drop(keys, options, moved)
    return moved, refused


def drop(keys: QueueKeys, options: QueueOptions, ids: Sequence[str]) -> Op[int]:
    """Delete these dead jobs (one batch)."""
    if not ids:
        return 0
    (dropped,) = yield [call("drop_dead", keys, events_maxlen=options.events_maxlen, ids=ids)]
    return int(dropped)


def kill(keys: QueueKeys, options: QueueOptions, job_id: str) -> Op[bool]:
    """Send a waiting or delayed job to the dead-letter set (reason ``killed``)."""
    keep = round(options.dead_keep_age * 1000)
    (reply,) = yield [
        call("kill", keys, events_maxlen=options.events_maxlen, dead_keep_age_ms=keep, id=job_id)
    ]
    return bool(reply)


def export_lines(keys: QueueKeys, where: DeadFilter) -> Op[list[bytes]]:
    """Every matching dead job as one JSON line (its stored hash), for backup or transfer."""
    lines: list[bytes] = []
    position = 0
    while True:
        (reply,) = yield [_scan(keys, where, position, SCAN, ids_only=False)]
        for flat in reply[1:]:
            fields = {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2], strict=True)}
            lines.append(record_line(keys.queue, fields))
        if int(reply[0]) < 0:
            return lines
        position = int(reply[0])


def import_batch(keys: QueueKeys, options: QueueOptions, jobs: Sequence[CheckedJob]) -> Op[int]:
    """Write checked dead jobs (one batch, one atomic step); returns how many were new."""
    if not jobs:
        return 0
    keep = round(options.dead_keep_age * 1000)
    packed = [msgspec.msgpack.encode([job.id, job.died_ms, *job.fields]) for job in jobs]
    batch = call("import_dead", keys, events_maxlen=options.events_maxlen, dead_keep_age_ms=keep,
                 jobs=packed)  # fmt: skip
    (reply,) = yield [batch]
    return int(reply)


def select(
    keys: QueueKeys,
    ids: Sequence[str] | None,
    where: DeadFilter | None,
    everything: bool,
    older_than: float | None = None,
) -> Op[list[str]]:
    """The ids a bulk operation applies to: given ids, a filter, or everything (say which)."""
    chosen = sum([ids is not None, where is not None, everything, older_than is not None])
    if chosen != 1:
        raise ValueError("choose exactly one of: ids, a filter (where=), all, older_than")
    if ids is not None:
        return list(ids)
    if older_than is not None:
        where = DeadFilter(until=time.time() - older_than)
    return (yield from matching_ids(keys, where or DeadFilter()))


def bulk_replay(
    keys: QueueKeys,
    options: QueueOptions,
    ids: list[str],
    *,
    target: Sequence[QueueKeys] | None = None,
    rate: float | None = None,
    dry_run: bool = False,
) -> Op[BulkResult]:
    """Replay (or move to ``target``, a queue's partitions) these dead jobs in batches, at
    most ``rate`` per second."""
    if dry_run:
        return BulkResult(len(ids), 0, ids, dry_run=True)
    if rate is not None:
        rate = check_rate(rate)
    size = BATCH if rate is None else max(1, min(BATCH, int(rate)))
    moved: list[str] = []
    refused: dict[str, str] = {}
    started = time.monotonic()
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        if target is not None:
            done, left = yield from move(keys, options, target, batch)
        else:
            done, left = yield from replay(keys, options, batch)
        moved += done
        refused.update(left)
        if rate is not None and start + size < len(ids):
            ahead = (start + size) / rate - (time.monotonic() - started)
            if ahead > 0:
                yield Pause(ahead)
    return BulkResult(len(ids), len(moved), moved, refused=refused)


def bulk_drop(
    keys: QueueKeys, options: QueueOptions, ids: list[str], *, dry_run: bool = False
) -> Op[BulkResult]:
    """Delete these dead jobs in batches."""
    if dry_run:
        return BulkResult(len(ids), 0, ids, dry_run=True)
    dropped = 0
    for start in range(0, len(ids), BATCH):
        dropped += yield from drop(keys, options, ids[start : start + BATCH])
    return BulkResult(len(ids), dropped, ids)


def dead_letter_payload(job: Job) -> dict[str, Any]:
    """What a ``dead_letter`` job carries: the original job and its history."""
    try:
        payload: Any = job.payload
    except ValueError:
        payload = job.raw_payload.decode(errors="replace")
    return {
        "queue": job.queue, "id": job.id, "name": job.name, "payload": payload,
        "reason": job.dead_reason.value if job.dead_reason else None,
        "error": msgspec.to_builtins(job.error), "attempt": job.attempt,
        "history": msgspec.to_builtins(job.history), "created_at": job.created_at,
        "died_at": job.finished_at,
    }  # fmt: skip


def check_rate(rate: float) -> float:
    """``rate`` (jobs a second for a bulk move) if it is a positive finite number."""
    return validate.number(rate, "rate (jobs a second)", 0.0, defaults.MAX_LIMIT, low_open=True)


def dead_letter_copy_id(queue: str, job_id: str, replays: int) -> str:
    """The id of a dead job's copy in the dead-letter queue, the same for every try: the
    queue, id and replay count, or a digest of the first two when that is no usable id."""
    plain = f"{queue}.{job_id}.{replays}"
    try:
        return validate.text(plain, "a dead-letter copy's id", defaults.MAX_ID_CHARS)
    except ValueError:
        digest = hashlib.blake2b(f"{queue}\0{job_id}".encode(), digest_size=16).hexdigest()
        return f"{digest}.{replays}"


def route_outbox(
    keys: QueueKeys, options: QueueOptions, targets: Sequence[QueueKeys], limit: int = 100
) -> Op[int]:
    """Copy jobs listed in the dead outbox to the queue's dead-letter queue.

    ``targets`` are the dead-letter queue's partitions (just its keys when it has none).
    Each copy has an id derived from the original (and its replay count), so two workers
    draining at once, or a worker that dies half-way, make exactly one copy.
    """
    if not targets:
        return 0
    outbox = keys.key("dead_outbox")
    (raw_ids,) = yield [Command(("LRANGE", outbox, 0, limit - 1))]
    if not raw_ids:
        return 0
    replies = yield [Command(("HGETALL", keys.job(raw.decode()))) for raw in raw_ids]
    specs: dict[int, list[JobSpec]] = {}
    for raw, fields in zip(raw_ids, replies, strict=True):
        if fields:
            job = job_from_hash(keys.queue, fields, job_id=raw.decode())
            copy_id = dead_letter_copy_id(keys.queue, job.id, job.replays)
            spec = JobSpec("dead_letter", dead_letter_payload(job), id=copy_id)
            try:
                job_args(spec, QueueOptions())  # one bad copy must not block the outbox
            except ValueError as exc:
                log.warning("dead job %r of queue %s gets no dead-letter copy: %s",
                            job.id, keys.queue, exc)  # fmt: skip
                continue
            specs.setdefault(partition_for(copy_id, len(targets)), []).append(spec)
    for index, batch in specs.items():
        yield from enqueue_many(targets[index], batch, QueueOptions())
    yield [Command(("LREM", outbox, 1, raw)) for raw in raw_ids]
    return sum(len(batch) for batch in specs.values())
