"""Every queue operation, written once, free of I/O.

An operation is a generator: it yields the list of calls for one round trip (sent as one
pipeline) and receives their replies, then returns its result. The async and sync faces
run the same generators through a transport, so they differ only by ``await``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from redis.exceptions import ResponseError

from conveyor import codec, defaults, validate
from conveyor.errors import (
    ConveyorError,
    JobStateError,
    NotDurableError,
    PayloadError,
    QueueBusyError,
)
from conveyor.job import Durability, Job, JobState, job_from_hash
from conveyor.keys import PARTITIONS, QUEUE_REGISTRY, QueueKeys, logical_name, validate_queue_name
from conveyor.lua import Script, script
from conveyor.retry import Backoff, Exponential, Fixed, Immediate, backoff_from_json
from conveyor.states import STATES

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Run a Lua script (by SHA, loading it on NOSCRIPT)."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Command:
    """Run one plain Redis command; with ``error_ok`` an error reply is handed to the op."""

    args: tuple[Any, ...]
    error_ok: bool = False


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long before the next round trip (pacing of bulk operations)."""

    seconds: float


Call = ScriptCall | Command
#: A queue operation: yields the calls of each round trip (or a pause), returns its result.
Op = Generator[list[Call] | Pause, Any, T]


@functools.lru_cache(maxsize=4096)
def _bound(name: str, keys: QueueKeys) -> tuple[Script, tuple[str, ...]]:
    lua = script(name)
    return lua, tuple(lua.keys_for(keys))


def call(name: str, keys: QueueKeys, /, **argv: Any) -> ScriptCall:
    """A call of the script ``name`` on the keys of one queue, its ARGV given by the names
    its header declares (``TypeError`` if one is missing or unknown: see
    :meth:`conveyor.lua.Script.arguments`)."""
    lua, bound = _bound(name, keys)
    return ScriptCall(lua, bound, lua.arguments(argv))


def translate_error(exc: ResponseError) -> Exception:
    """Turn a script's coded error reply into Conveyor's exception for it."""
    message = str(exc)
    code, _, detail = message.partition(" ")
    if code in ("CONVEYOR_ACTIVE", "CONVEYOR_STATE"):
        return JobStateError(detail)
    if code == "CONVEYOR_BUSY":
        return QueueBusyError(f"refusing: {detail}; pass force=True to delete them anyway")
    if code.startswith("CONVEYOR_"):
        return ConveyorError(detail)
    return exc


# --- options --------------------------------------------------------------------------


class QueueOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one queue, shared by its producers and workers."""

    max_attempts: int = defaults.MAX_ATTEMPTS
    timeout: float = defaults.JOB_TIMEOUT
    backoff: Backoff | None = None
    max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES
    completed_keep_count: int = defaults.COMPLETED_KEEP_COUNT
    completed_keep_age: float = defaults.COMPLETED_KEEP_AGE
    dead_keep_count: int = defaults.DEAD_KEEP_COUNT
    dead_keep_age: float = defaults.DEAD_KEEP_AGE
    events_maxlen: int = defaults.EVENTS_MAXLEN
    max_result_bytes: int = defaults.MAX_RESULT_BYTES
    metrics_window: float = defaults.METRICS_WINDOW
    #: Also enqueue every job that dies as a ``dead_letter`` job on this queue.
    dead_letter_queue: str | None = None

    def __post_init__(self) -> None:
        validate.integer(self.max_attempts, "max_attempts", 1, defaults.ATTEMPTS_MAX)
        _timeout(self.timeout, "timeout")
        _backoff(self.backoff)
        for size in ("max_payload_bytes", "max_result_bytes"):
            validate.integer(getattr(self, size), size, 1, _MAX_VALUE_BYTES)
        for count in ("completed_keep_count", "dead_keep_count", "events_maxlen"):
            validate.integer(getattr(self, count), count, 0, 2**53)
        for age in ("completed_keep_age", "dead_keep_age"):
            validate.seconds(getattr(self, age), age)
        validate.seconds(self.metrics_window, "metrics_window", positive=True)
        if self.dead_letter_queue is not None:
            try:
                validate_queue_name(self.dead_letter_queue)
            except ValueError as exc:
                raise ValueError(f"dead_letter_queue: {exc}") from None


#: The largest payload or result limit: a batch of jobs is one server argument (512 MB).
_MAX_VALUE_BYTES = 64 * 1024 * 1024


def _timeout(value: Any, what: str) -> float:
    # At least a millisecond (the stored unit), so a timeout is never stored as 0 (default).
    return validate.number(value, what, defaults.MIN_TIMEOUT, defaults.MAX_SECONDS, unit=" seconds")


def _backoff(value: Any) -> None:
    if value is not None and not isinstance(value, (Immediate, Fixed, Exponential)):
        raise ValueError(f"backoff must be Immediate(), Fixed(...) or Exponential(...), "
                         f"not {value!r}")  # fmt: skip


@dataclass(frozen=True)
class Durable:
    """Ask an enqueue to return only once the write is fsynced and/or replicated.

    ``aof_local`` waits for the local append-only file (``WAITAOF``); ``replicas`` waits for
    that many replicas (``WAIT``). If the server does not confirm within ``timeout`` seconds
    the job is still enqueued, and :class:`~conveyor.NotDurableError` says what was confirmed.
    """

    aof_local: bool = True
    replicas: int = 0
    timeout: float = defaults.DURABLE_TIMEOUT

    def __post_init__(self) -> None:
        validate.flag(self.aof_local, "Durable.aof_local")
        validate.integer(self.replicas, "Durable.replicas", 0, defaults.MAX_REPLICAS)
        _timeout(self.timeout, "Durable.timeout")


@dataclass(frozen=True)
class Dedup:
    """Deduplicate jobs by ``key`` for ``window`` seconds.

    By default (throttle) a job enqueued while another job with the same key is still
    around within the window is dropped and the existing job is returned. With
    ``debounce=True`` a later job replaces the waiting one's payload and pushes its start
    back to ``delay`` (or ``window``) seconds from now. The key lives on its own, so it
    holds for the whole window even if the job is cleaned up early.
    """

    key: str
    window: float
    debounce: bool = False

    def __post_init__(self) -> None:
        validate.text(self.key, "dedup key", defaults.MAX_KEY_CHARS)
        _timeout(self.window, "dedup window")
        validate.flag(self.debounce, "Dedup.debounce")


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue: its handler name, JSON payload and options."""

    name: str
    payload: Any = None
    id: str | None = None
    delay: float | None = None
    run_at: float | None = None  # a Unix timestamp
    priority: int = defaults.PRIORITY
    attempts: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    retention: float | None = None  # seconds to keep the job once completed; 0 drops it
    dedup: Dedup | None = None
    #: A group key (a tenant, an API account): fair fetch across groups, per-group limits.
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: On a partitioned queue: jobs with the same key go to the same partition, in order.
    partition_key: str | None = None

    def __post_init__(self) -> None:
        """Check every option once, here: a bad value raises ``ValueError`` naming it."""
        validate.text(self.name, "job name", defaults.MAX_NAME_CHARS)
        if self.id is not None:
            validate.text(self.id, "id", defaults.MAX_ID_CHARS)
        validate.integer(self.priority, "priority", defaults.PRIORITY_MIN, defaults.PRIORITY_MAX)
        if self.attempts is not None:
            validate.integer(self.attempts, "attempts", 1, defaults.ATTEMPTS_MAX)
        _check_times(self)
        _backoff(self.backoff)
        if self.dedup is not None and not isinstance(self.dedup, Dedup):
            raise ValueError(f"dedup must be a Dedup(key, window), not {self.dedup!r}")
        for key in ("group", "partition_key"):
            if (value := getattr(self, key)) is not None:
                validate.text(value, key, defaults.MAX_KEY_CHARS)
        _check_meta(self.meta)


def _check_times(spec: JobSpec) -> None:
    if spec.delay is not None:
        validate.seconds(spec.delay, "delay")
    if spec.run_at is not None:
        _check_run_at(spec.run_at)
    if spec.timeout is not None:
        _timeout(spec.timeout, "timeout")
    if spec.retention is not None:
        validate.seconds(spec.retention, "retention")


def _check_run_at(run_at: Any) -> None:
    if type(run_at) not in (int, float) or not 0 <= run_at <= defaults.MAX_TIMESTAMP:
        raise ValueError(
            "run_at must be a timezone-aware datetime or a Unix time from 0 to "
            f"{defaults.MAX_TIMESTAMP:.0f} (the year 3000), not {run_at!r}"
        )


def _check_meta(meta: Any) -> None:
    if type(meta) is not dict or not all(type(key) is str for key in meta):
        raise ValueError(f"meta must be a dict with str keys, not {meta!r}")
    if "backoff" in meta:  # a replayed job's stored backoff: it must settle
        backoff_from_json(meta["backoff"])


def priority_band(priority: int) -> int:
    """The waiting-set score base of a priority: higher priorities sort first, FIFO inside.

    Each band spans 2**41 scores; sequence numbers start at 2**40 so handed-back jobs can
    take numbers below it and run first within their band.
    """
    validate.integer(priority, "priority", defaults.PRIORITY_MIN, defaults.PRIORITY_MAX)
    return (defaults.PRIORITY_MAX - priority) * 2**41 + 2**40


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(0, round(seconds * 1000))


def _due(now: float, run_at: float | None, delay: float | None) -> float:
    # The script takes the server's clock; this is the caller's estimate of the same.
    return run_at if run_at is not None else now + (delay or 0.0)


class _JobIds:
    """New job ids: 32 lowercase hex digits, like ``uuid4().hex``, without a system call each.

    A random 80-bit prefix is drawn once per process (again after a fork) and a counter
    numbers the ids made with it, so ids are unique across processes and machines.
    """

    def __init__(self) -> None:
        self._state: tuple[int, str, Iterator[int]] = (-1, "", itertools.count())

    def take(self, n: int) -> list[str]:
        pid, prefix, counter = self._state  # one tuple: threads never mix two draws
        if pid != os.getpid():
            pid, prefix, counter = os.getpid(), secrets.token_hex(10), itertools.count()
            self._state = (pid, prefix, counter)
        return [f"{prefix}{next(counter):012x}" for _ in range(n)]


new_job_ids = _JobIds().take


#: What the caller knows of a job it enqueues: (id, name, payload, priority, max_attempts,
#: timeout, due_at, options, group); the server's reply adds the state.
_Draft = tuple[str, str, bytes, int, int, float | None, float, dict[str, Any], str | None]


def job_args(
    spec: JobSpec, options: QueueOptions, job_id: str | None = None, now: float | None = None
) -> tuple[list[Any], _Draft]:
    """The enqueue script's 15 values for one job (see enqueue.lua), and its draft.

    ``spec`` checked its options when it was made; this encodes its payload.
    """
    payload = codec.encode(spec.payload, limit=options.max_payload_bytes)
    now = time.time() if now is None else now
    job_id = spec.id if spec.id is not None else job_id or new_job_ids(1)[0]
    max_attempts = spec.attempts if spec.attempts is not None else options.max_attempts
    stored: dict[str, Any] = dict(spec.meta)
    backoff = spec.backoff or options.backoff
    if backoff is not None:
        stored["backoff"] = msgspec.to_builtins(backoff)
    if spec.partition_key is not None:  # kept, so a move to another queue keeps it too
        stored["partition_key"] = spec.partition_key
    run_at_ms = _ms(spec.run_at) if spec.run_at is not None else 0
    keep = "" if spec.retention is None else str(_ms(spec.retention))
    delay = spec.delay
    dedup: list[Any] = ["", 0, ""]
    if spec.dedup is not None:
        mode = "debounce" if spec.dedup.debounce else "throttle"
        dedup = [spec.dedup.key, max(1, _ms(spec.dedup.window)), mode]
        if spec.dedup.debounce and delay is None and spec.run_at is None:
            delay = spec.dedup.window
    args = [
        job_id, spec.name, payload.decode(), priority_band(spec.priority), spec.priority,
        _ms(delay), run_at_ms, max_attempts, _ms(spec.timeout), keep,
        codec.encode(stored).decode() if stored else "", *dedup, spec.group or "",
    ]  # fmt: skip
    draft: _Draft = (
        job_id, spec.name, payload, spec.priority, max_attempts, spec.timeout,
        _due(now, spec.run_at, delay), stored, spec.group,
    )  # fmt: skip
    return args, draft


#: Bytes of payload per MessagePack batch of one enqueue call (a batch is one argument,
#: and the server caps an argument at 512 MB).
_BATCH_BYTES = 64 * 1024 * 1024
_CREATED = {ord("w"): JobState.WAITING, ord("d"): JobState.DELAYED}


def _encode_jobs(
    jobs: Iterable[JobSpec | tuple[str, Any]], options: QueueOptions, now: float
) -> tuple[list[bytes], list[_Draft]]:
    """The enqueue script's batches for these jobs, and their drafts; raises on bad input."""
    items = list(jobs)
    limit, max_attempts = options.max_payload_bytes, options.max_attempts
    band = priority_band(defaults.PRIORITY)
    plain = options.backoff is None  # else every job stores the queue's backoff
    batches: list[list[list[Any]]] = [[]]
    drafts: list[_Draft] = []
    size = 0
    for job_id, item in zip(new_job_ids(len(items)), items, strict=True):
        if type(item) is tuple and len(item) == 2 and type(item[0]) is str and plain:
            name = _job_name(item[0])  # the common case, without a JobSpec
            payload = codec.encode(item[1], limit=limit)
            values = [job_id, name, payload.decode(), band, 0, 0, 0, max_attempts]
            draft: _Draft = (job_id, name, payload, 0, max_attempts, None, now, {}, None)
        else:
            values, draft = job_args(_spec(item), options, job_id, now)
        size += len(draft[2])
        if size > _BATCH_BYTES and batches[-1]:
            batches.append([])
            size = len(draft[2])
        batches[-1].append(values)
        drafts.append(draft)
    return [msgspec.msgpack.encode(batch) for batch in batches if batch], drafts


@functools.lru_cache(maxsize=1024)
def _job_name(name: str) -> str:
    """A checked job name (a producer uses few names: each is checked once)."""
    return validate.text(name, "job name", defaults.MAX_NAME_CHARS)


def _spec(item: object) -> JobSpec:
    if isinstance(item, JobSpec):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return JobSpec(item[0], item[1])
    raise PayloadError(f"expected a JobSpec or a (name, payload) pair, got {item!r}")


# --- producer operations --------------------------------------------------------------


def enqueue_many(
    keys: QueueKeys,
    jobs: Iterable[JobSpec | tuple[str, Any]],
    options: QueueOptions,
    durable: Durable | None = None,
    partitions: int = 1,
) -> Op[list[Job]]:
    """Enqueue jobs in one round trip; an id that exists already returns the stored job.

    ``jobs`` are :class:`JobSpec` objects or ``(name, payload)`` pairs. Every job is
    checked and encoded before anything is sent, so bad input writes nothing. When these
    are the queue's first jobs (ever, or since it was obliterated), a second round trip
    registers the queue again, with its ``partitions`` when ``keys`` is one of several.
    """
    if durable is not None and not isinstance(durable, Durable):
        raise ValueError(f"durable must be a Durable(...), not {durable!r}")
    now = time.time()
    batches, drafts = _encode_jobs(jobs, options, now)
    if not drafts:
        return []
    calls: list[Call] = [
        call("enqueue", keys, events_maxlen=options.events_maxlen, batches=batches)
    ]
    if durable is not None:
        timeout_ms = _ms(durable.timeout)
        if durable.aof_local:
            calls.append(Command(("WAITAOF", 1, durable.replicas, timeout_ms), error_ok=True))
        else:
            calls.append(Command(("WAIT", durable.replicas, timeout_ms), error_ok=True))
    replies = yield calls
    durability = _durability(replies[1], durable) if durable is not None else None
    codes, fresh, *others = replies[0]
    if fresh:
        yield from register_again(keys.queue, partitions)
    found = iter(others)
    jobs_out: list[Job] = []
    existing: list[str] = []
    queue = keys.queue
    for (job_id, name, payload, priority, attempts, timeout, due, stored, group), code in zip(
        drafts, codes, strict=True
    ):
        state = _CREATED.get(code)
        if state is None:
            state, job_id = JobState(next(found).decode()), next(found).decode()
            existing.append(job_id)
        jobs_out.append(
            Job(
                id=job_id, queue=queue, name=name, state=state, raw_payload=payload,
                priority=priority, max_attempts=attempts, timeout=timeout, created_at=now,
                due_at=due, options=stored, group=group, durability=durability,
            )
        )  # fmt: skip
    if existing:
        stored_jobs = yield [Command(("HGETALL", keys.job(job_id))) for job_id in existing]
        by_id = {job_id: fields for job_id, fields in zip(existing, stored_jobs, strict=True)}
        jobs_out = [
            job_from_hash(queue, fields, job_id=job.id) if (fields := by_id.get(job.id)) else job
            for job in jobs_out
        ]
    return jobs_out


def _durability(reply: Any, durable: Durable) -> Durability:
    if isinstance(reply, Exception):
        raise NotDurableError(
            f"the job was enqueued, but the server refused to confirm durability: {reply}",
            aof_local=0,
            replicas=0,
        )
    if durable.aof_local:
        local, replicas = int(reply[0]), int(reply[1])
    else:
        local, replicas = 0, int(reply)
    got = Durability(aof_local=local, replicas=replicas)
    if (durable.aof_local and local < 1) or replicas < durable.replicas:
        raise NotDurableError(
            f"the job was enqueued, but within {durable.timeout:g}s the server confirmed "
            f"aof_local={local} and replicas={replicas} (asked aof_local="
            f"{int(durable.aof_local)}, replicas={durable.replicas})",
            aof_local=local,
            replicas=replicas,
        )
    return got


def read_job(keys: QueueKeys, job_id: str) -> ScriptCall:
    """The call that reads one job for a reader: nothing once it is past its retention."""
    return call("get_job", keys, id=job_id)


def job_read(queue: str, reply: Sequence[bytes], job_id: str | None = None) -> Job | None:
    """The job a :func:`read_job` call replied with (``job_id``: the id asked), or ``None``."""
    return job_from_hash(queue, _pairs(reply), job_id=job_id) if reply else None


def get_job(keys: QueueKeys, job_id: str) -> Op[Job | None]:
    """Read one job, or ``None`` if it does not exist (or is past its retention)."""
    (reply,) = yield [read_job(keys, job_id)]
    return job_read(keys.queue, reply, job_id)


class Counts(msgspec.Struct, frozen=True):
    """How many jobs a queue holds in each state (one field per :data:`conveyor.states.STATES`
    row, checked by ``tests/test_states.py``)."""

    waiting: int
    delayed: int
    active: int
    completed: int
    dead: int
    paused: bool
    workers: int
    cancelled: int = 0

    def per_state(self) -> dict[JobState, int]:
        """The number of jobs in each state, for every :class:`JobState` in lifecycle order."""
        return {info.state: getattr(self, info.name) for info in STATES}


def parse_counts(reply: Sequence[Any]) -> Counts:
    """The reply of the counts script: name/value pairs."""
    values = {name.decode() if isinstance(name, bytes) else name: int(value)
              for name, value in zip(reply[::2], reply[1::2], strict=True)}  # fmt: skip
    return Counts(
        **{info.name: values[info.name] for info in STATES},
        paused=bool(values["paused"]),
        workers=values["workers"],
    )


def counts(keys: QueueKeys) -> Op[Counts]:
    """Jobs per state, the paused flag and live workers, read atomically."""
    (reply,) = yield [call("counts", keys)]
    return parse_counts(reply)


def list_jobs(keys: QueueKeys, state: JobState, offset: int = 0, limit: int = 50) -> Op[list[Job]]:
    """One page of jobs in ``state`` (finished states newest first)."""
    if limit < 1 or offset < 0:
        raise ValueError("offset must be >= 0 and limit >= 1")
    (reply,) = yield [
        call("list_jobs", keys, state=JobState(state).value, offset=offset, limit=limit)
    ]
    return [job_from_hash(keys.queue, _pairs(flat), state=JobState(state)) for flat in reply]


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=False))


def remove(keys: QueueKeys, job_id: str, options: QueueOptions) -> Op[bool]:
    """Delete a job that is not active; ``False`` if there was no such job."""
    (reply,) = yield [call("remove", keys, events_maxlen=options.events_maxlen, id=job_id)]
    return bool(reply)


def cancel(keys: QueueKeys, options: QueueOptions, job_id: str) -> Op[str | None]:
    """Cancel a job: 'cancelled', 'requested' (it is running), a finished state, or None."""
    keep = round(options.completed_keep_age * 1000)
    (reply,) = yield [
        call("cancel", keys, events_maxlen=options.events_maxlen, keep_ms=keep, id=job_id)
    ]
    return reply.decode() if reply else None


def set_priority(keys: QueueKeys, options: QueueOptions, job_id: str, priority: int) -> Op[bool]:
    """Change the priority of a waiting or delayed job; ``False`` if there is no such job."""
    band = priority_band(priority)  # checks it: an integer in PRIORITY_MIN..PRIORITY_MAX
    (reply,) = yield [
        call(
            "reprioritize",
            keys,
            events_maxlen=options.events_maxlen,
            id=job_id,
            band=band,
            priority=priority,
        )
    ]
    return bool(reply)


def reschedule(keys: QueueKeys, options: QueueOptions, job_id: str, delay: float) -> Op[bool]:
    """Make a waiting or delayed job due ``delay`` seconds from now (0: run it now)."""
    validate.seconds(delay, "delay")
    (reply,) = yield [
        call(
            "reschedule", keys, events_maxlen=options.events_maxlen, id=job_id, delay_ms=_ms(delay)
        )
    ]
    return bool(reply)


@dataclass(frozen=True)
class Limits:
    """Queue-wide flow control, enforced by the server when workers fetch.

    ``concurrency``: at most this many jobs active at once, across all workers.
    ``rate``: at most ``rate[0]`` jobs started per ``rate[1]`` seconds, across all workers.
    ``group_concurrency`` and ``group_rate``: the same, for each group key separately
    (jobs enqueued with ``group=``); groups are served in turn, so none starves another.
    """

    concurrency: int | None = None
    rate: tuple[int, float] | None = None
    group_concurrency: int | None = None
    group_rate: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        for what in ("concurrency", "group_concurrency"):
            if (value := getattr(self, what)) is not None:
                validate.integer(value, what, 1, defaults.MAX_LIMIT)
        for what in ("rate", "group_rate"):
            if (rate := getattr(self, what)) is None:
                continue
            if type(rate) not in (tuple, list) or len(rate) != 2:
                raise ValueError(f"{what} must be a pair (jobs, seconds), not {rate!r}")
            validate.integer(rate[0], f"{what} jobs", 1, defaults.MAX_LIMIT)
            _timeout(rate[1], f"{what} seconds")


def _limit_calls(meta: str, field: str, value: int | None) -> list[Call]:
    if value is None:
        return [Command(("HDEL", meta, field))]
    return [Command(("HSET", meta, field, value))]


def _rate_calls(meta: str, prefix: str, rate: tuple[int, float] | None) -> list[Call]:
    if rate is None:
        return [Command(("HDEL", meta, f"{prefix}_max", f"{prefix}_period_ms"))]
    jobs, seconds = rate
    return [Command(("HSET", meta, f"{prefix}_max", jobs, f"{prefix}_period_ms", _ms(seconds)))]


def set_limits(keys: QueueKeys, limits: Limits) -> Op[None]:
    """Store the queue's limits (``None`` fields remove a limit) and wake the workers."""
    if not isinstance(limits, Limits):
        raise ValueError(f"expected Limits(...), not {limits!r}")
    meta = keys.key("meta")
    yield [
        *_limit_calls(meta, "concurrency_max", limits.concurrency),
        *_rate_calls(meta, "rate", limits.rate),
        *_limit_calls(meta, "group_concurrency", limits.group_concurrency),
        *_rate_calls(meta, "group_rate", limits.group_rate),
        Command(("LPUSH", keys.key("marker"), 1)),
        Command(("LTRIM", keys.key("marker"), 0, 0)),
    ]


def get_limits(keys: QueueKeys) -> Op[Limits]:
    """The queue's limits."""
    fields = ("concurrency_max", "rate_max", "rate_period_ms", "group_concurrency",
              "group_rate_max", "group_rate_period_ms")  # fmt: skip
    (reply,) = yield [Command(("HMGET", keys.key("meta"), *fields))]
    c, r, rp, gc, gr, grp = reply
    return Limits(
        int(c) if c else None,
        (int(r), int(rp) / 1000) if r else None,
        int(gc) if gc else None,
        (int(gr), int(grp) / 1000) if gr else None,
    )


def pause(keys: QueueKeys, options: QueueOptions) -> Op[None]:
    """Stop workers from starting jobs of this queue."""
    yield [call("pause", keys, events_maxlen=options.events_maxlen)]


def resume(keys: QueueKeys, options: QueueOptions) -> Op[None]:
    """Let workers start jobs of this queue again."""
    yield [call("resume", keys, events_maxlen=options.events_maxlen)]


def drain(keys: QueueKeys, options: QueueOptions, batch: int = 1000) -> Op[int]:
    """Remove every waiting and delayed job, in bounded batches; returns how many."""
    total = 0
    while True:
        (removed,) = yield [call("drain", keys, events_maxlen=options.events_maxlen, batch=batch)]
        total += int(removed)
        if not removed:
            return total


def obliterate(keys: QueueKeys, force: bool = False, batch: int = 1000) -> Op[None]:
    """Delete the whole queue; refuse while jobs are active unless ``force``."""
    while True:
        (more,) = yield [call("obliterate", keys, force=int(force), batch=batch)]
        if not more:
            return (yield from forget_queue(keys.queue))


def forget_queue(name: str) -> Op[None]:
    """Take the queue's name out of the registry of known queues."""
    yield [Command(("SREM", QUEUE_REGISTRY, name))]


def register_queue(name: str) -> Op[None]:
    """Record the queue's name so ``conveyor status`` can list every queue."""
    yield [Command(("SADD", QUEUE_REGISTRY, name))]


def register_again(queue: str, partitions: int) -> Op[None]:
    """Record a queue (and, when ``partitions > 1``, its partition count) that a script found
    unmarked: new, or obliterated while a producer still held it; then mark it registered.
    A count recorded since by someone else is kept (the count is fixed once recorded)."""
    name = logical_name(queue)
    if partitions == 1 or name == queue:
        yield [Command(("SADD", QUEUE_REGISTRY, name))]
    else:
        yield from _record_partitions(name, partitions)
    yield [Command(("HSET", QueueKeys(queue).key("meta"), "registered", 1))]


def _record_partitions(name: str, partitions: int) -> Op[None]:
    _, count = yield [Command(("SADD", QUEUE_REGISTRY, name)), Command(("HGET", PARTITIONS, name))]
    if count is None:  # written only when missing: an ACL producer may only read the count
        # (The HGET also makes this a pipeline, where an error reply comes back as a value.)
        written, count = yield [
            Command(("HSETNX", PARTITIONS, name, partitions), error_ok=True),
            Command(("HGET", PARTITIONS, name)),
        ]
        if isinstance(written, Exception):
            raise ConveyorError(
                f"the jobs were enqueued, but queue {name!r} had lost its partition count "
                f"(it was obliterated) and this user may not record it again ({written}); "
                f"declare the queue again with partitions={partitions} as a user who may "
                f"write {PARTITIONS}"
            )
    if count is not None and int(count) != partitions:
        log.warning(
            "queue %r was declared again with %s partitions while this producer uses %d: "
            "open the queue again (a new Queue object) to use the new partitions",
            name, int(count), partitions,
        )  # fmt: skip


def known_queues() -> Op[list[str]]:
    """Every queue name that was ever used (and not obliterated)."""
    (members,) = yield [Command(("SMEMBERS", QUEUE_REGISTRY))]
    return sorted(m.decode() for m in members)
