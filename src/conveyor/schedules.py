"""Schedules: jobs made from a cron expression (with a time zone) or a fixed interval.

The workers of the queue fire them, with no extra process. A tick's job id is derived from
the schedule and the tick, and the fire script advances a schedule only from the tick it
expects, so however many workers race, each tick makes exactly one job. Ticks missed while
no worker ran make one catch-up job (or none, with ``catch_up=False``), never a burst.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter

from conveyor import codec, defaults, validate
from conveyor.keys import QueueKeys
from conveyor.ops import Command, JobSpec, Op, QueueOptions, call, job_args


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """What to enqueue, and when: ``cron`` (with ``timezone``) or ``every`` seconds."""

    id: str
    name: str
    payload: Any = None
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    priority: int = defaults.PRIORITY
    attempts: int | None = None
    timeout: float | None = None
    #: After ticks were missed (no worker ran), make one job for the latest of them.
    catch_up: bool = True

    def __post_init__(self) -> None:
        """Check the definition once, here (see :func:`check_cron` for ``cron``)."""
        validate.text(self.id, "schedule id", defaults.MAX_SCHEDULE_ID_CHARS)
        validate.text(self.name, "job name", defaults.MAX_NAME_CHARS)
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of cron= or every=")
        if self.every is not None:
            validate.number(self.every, "every", defaults.MIN_EVERY, defaults.MAX_SECONDS,
                            unit=" seconds")  # fmt: skip
        if self.cron is not None:
            check_cron(self.cron)
        if type(self.timezone) is not str:
            raise ValueError(f"timezone must be a time zone name, not {self.timezone!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        validate.flag(self.catch_up, "catch_up")
        codec.encode(self.payload, limit=defaults.MAX_PAYLOAD_BYTES)
        # Its jobs' options, checked as every tick's job will be.
        JobSpec(self.name, id=self.job_id(0), priority=self.priority, attempts=self.attempts,
                timeout=self.timeout)  # fmt: skip

    def next_after(self, moment: float) -> float:
        """The first tick strictly after ``moment`` (Unix time)."""
        if self.every is not None:
            return (moment // self.every + 1) * self.every
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.fromtimestamp(moment, zone)
        return float(croniter(self.cron, start).get_next(float))

    def next_runs(self, count: int = 5, after: float | None = None) -> list[float]:
        """The next ``count`` ticks (Unix times)."""
        moment = time.time() if after is None else after
        out = []
        for _ in range(count):
            moment = self.next_after(moment)
            out.append(moment)
        return out

    def job_id(self, tick: float) -> str:
        """The id of the job made for ``tick``: the same for every worker."""
        return f"schedule:{self.id}:{round(tick * 1000)}"


def check_cron(cron: object) -> str:
    """``cron`` if it is a standard five-field expression (minute hour day month weekday)
    or an ``@daily``-style alias; croniter would also take a sixth (seconds) and a seventh
    (year) field, and a schedule meant per minute would then fire every second."""
    if type(cron) is not str:
        raise ValueError(f"cron must be a string, not {cron!r}")
    fields = cron.split()
    alias = len(fields) == 1 and fields[0].startswith("@")
    if not (alias or len(fields) == 5) or not croniter.is_valid(cron):
        raise ValueError(
            f"invalid cron expression {cron!r}: use five fields (minute hour day month "
            "weekday), e.g. '*/5 * * * *', or an alias such as '@daily'"
        )
    return cron


class ScheduleEntry(msgspec.Struct, frozen=True):
    """A stored schedule and its next tick."""

    schedule: Schedule
    next_run: float | None


_decoder = msgspec.json.Decoder(Schedule)
log = logging.getLogger("conveyor.schedules")


def _stored(schedule_id: bytes, blob: bytes) -> Schedule | None:
    """A stored schedule, or ``None`` (logged) if it no longer passes the checks."""
    try:
        return _decoder.decode(blob)
    except msgspec.ValidationError as exc:  # written by an older version, or by hand
        log.warning("ignoring invalid schedule %r: %s", schedule_id.decode(errors="replace"), exc)
        return None


def upsert(keys: QueueKeys, schedule: Schedule, options: QueueOptions | None = None) -> Op[float]:
    """Create or replace a schedule; returns its next tick.

    Its job is built now as each tick will build it, so a payload over the queue's limit is
    refused here rather than at every tick.
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"expected a Schedule(...), not {schedule!r}")
    job_args(JobSpec(schedule.name, schedule.payload), options or QueueOptions())
    (server_time,) = yield [Command(("TIME",))]
    now = int(server_time[0]) + int(server_time[1]) / 1e6
    tick = schedule.next_after(now)
    yield [
        Command(("HSET", keys.key("schedules"), schedule.id, msgspec.json.encode(schedule))),
        Command(("ZADD", keys.key("schedule_due"), round(tick * 1000), schedule.id)),
    ]
    return tick


def remove(keys: QueueKeys, schedule_id: str) -> Op[bool]:
    """Delete a schedule; ``False`` if there was none."""
    removed, _ = yield [
        Command(("HDEL", keys.key("schedules"), schedule_id)),
        Command(("ZREM", keys.key("schedule_due"), schedule_id)),
    ]
    return bool(removed)


def entries(keys: QueueKeys) -> Op[list[ScheduleEntry]]:
    """Every schedule of the queue with its next tick."""
    stored, due = yield [
        Command(("HGETALL", keys.key("schedules"))),
        Command(("ZRANGE", keys.key("schedule_due"), 0, -1, "WITHSCORES")),
    ]
    next_runs = {member.decode(): float(score) / 1000 for member, score in due}
    found = ((sid, _stored(sid, blob)) for sid, blob in stored.items())
    return sorted(
        (ScheduleEntry(schedule, next_runs.get(sid.decode()))
         for sid, schedule in found if schedule is not None),
        key=lambda entry: entry.schedule.id,
    )  # fmt: skip


def fire_due(keys: QueueKeys, options: QueueOptions, limit: int = 100) -> Op[int]:
    """Fire every schedule whose tick has come; returns how many jobs this call made."""
    (server_time,) = yield [Command(("TIME",))]
    now_ms = int(server_time[0]) * 1000 + int(server_time[1]) // 1000
    (due,) = yield [
        Command(
            (
                "ZRANGEBYSCORE",
                keys.key("schedule_due"),
                "-inf",
                now_ms,
                "WITHSCORES",
                "LIMIT",
                0,
                limit,
            )
        )
    ]
    if not due:
        return 0
    blobs = yield [Command(("HGET", keys.key("schedules"), member)) for member, _ in due]
    made = 0
    for (member, score), blob in zip(due, blobs, strict=True):
        expected = int(float(score))
        schedule = None if blob is None else _stored(member, blob)
        if schedule is None:  # removed meanwhile, or invalid: it never fires
            yield [Command(("ZREM", keys.key("schedule_due"), member))]
            continue
        made += yield from _fire(keys, options, schedule, expected, now_ms / 1000)
    return made


def _fire(
    keys: QueueKeys, options: QueueOptions, schedule: Schedule, expected_ms: int, now: float
) -> Op[int]:
    tick = expected_ms / 1000
    latest = tick
    if schedule.every is not None:  # the last tick not after now, without counting them
        latest = max(tick, now // schedule.every * schedule.every)
    while (following := schedule.next_after(latest)) <= now:  # ticks missed meanwhile
        latest = following
    missed = latest > tick
    fire = schedule.catch_up or not missed
    spec = JobSpec(
        schedule.name, schedule.payload, id=schedule.job_id(latest), priority=schedule.priority,
        attempts=schedule.attempts, timeout=schedule.timeout,
        meta={"schedule": schedule.id, "tick": latest},
    )  # fmt: skip
    args, _ = job_args(spec, options)
    next_ms = round(schedule.next_after(now) * 1000)
    (reply,) = yield [
        call(
            "fire_schedule",
            keys,
            events_maxlen=options.events_maxlen,
            schedule_id=schedule.id,
            expected_ms=expected_ms,
            next_ms=next_ms,
            fire=int(fire),
            job=args,
        )
    ]
    return 1 if int(reply[0]) and fire and int(reply[1]) else 0


def describe(entry: ScheduleEntry) -> dict[str, Any]:
    """A schedule as JSON-ready values, with its next tick."""
    return {**msgspec.to_builtins(entry.schedule), "next_run": entry.next_run}
