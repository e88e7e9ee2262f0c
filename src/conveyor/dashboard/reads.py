"""The dashboard's bounded reads, free of I/O (see :mod:`conveyor.ops`): pages, not scans.

Every read looks at a bounded number of entries, so a page costs the same on a queue of a
million jobs as on one of ten.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor import ops
from conveyor.events import Event, parse_event
from conveyor.job import Job, JobState, job_from_hash
from conveyor.keys import QUEUE_REGISTRY, QueueKeys
from conveyor.ops import Call, Command, Op

#: Entries a name-filtered page looks at, at most, before handing back a cursor.
NAME_SCAN = 2000
_CHUNK = 500
#: Newest events of a queue read to build one job's timeline.
EVENTS_SCAN = 2000
#: States listed in the order their jobs will run or expire; finished states list newest first.
PENDING = (JobState.WAITING, JobState.DELAYED, JobState.ACTIVE)


@dataclass(frozen=True)
class JobsPage:
    """One page of a queue's jobs in one state; ``cursor`` continues it (``None``: the end)."""

    jobs: list[Job]
    cursor: int | None
    scanned: int


def queue_known(name: str) -> Op[bool]:
    """Whether ``name`` is in the registry of queues."""
    (member,) = yield [Command(("SISMEMBER", QUEUE_REGISTRY, name))]
    return bool(member)


def jobs_page(
    keys: QueueKeys, state: JobState, cursor: int, limit: int, name: str = ""
) -> Op[JobsPage]:
    """Up to ``limit`` jobs in ``state`` from position ``cursor``, only those named ``name``.

    Without a name this is one ranged read. With one, it looks at no more than
    :data:`NAME_SCAN` entries and returns a cursor to look further.
    """
    if not name:
        jobs = yield from ops.list_jobs(keys, state, cursor, limit + 1)
        more = len(jobs) > limit
        return JobsPage(jobs[:limit], cursor + limit if more else None, len(jobs))
    wanted = name.encode()
    order = "ZRANGE" if state in PENDING else "ZREVRANGE"
    matched: list[str] = []
    position = cursor
    while len(matched) < limit and position - cursor < NAME_SCAN:
        (ids,) = yield [Command((order, keys.key(state.value), position, position + _CHUNK - 1))]
        lookups: list[Call] = [Command(("HGET", keys.job(raw.decode()), "name")) for raw in ids]
        names = (yield lookups) if lookups else []
        for raw, job_name in zip(ids, names, strict=True):
            position += 1
            if job_name == wanted:
                matched.append(raw.decode())
                if len(matched) == limit:
                    break
        else:
            if len(ids) < _CHUNK:  # the end of the set
                return (yield from _fetch(keys, matched, None, position - cursor))
    return (yield from _fetch(keys, matched, position, position - cursor))


def _fetch(keys: QueueKeys, ids: list[str], cursor: int | None, scanned: int) -> Op[JobsPage]:
    if not ids:
        return JobsPage([], cursor, scanned)
    replies = yield [Command(("HGETALL", keys.job(job_id))) for job_id in ids]
    jobs = [job_from_hash(keys.queue, fields) for fields in replies if fields]
    return JobsPage(jobs, cursor, scanned)


def job_events(keys: QueueKeys, job_id: str, scan: int = EVENTS_SCAN) -> Op[list[Event]]:
    """The events of one job among the newest ``scan`` of its queue, oldest first."""
    (reply,) = yield [Command(("XREVRANGE", keys.key("events"), "+", "-", "COUNT", scan))]
    events = [parse_event(raw_id, fields, keys.queue) for raw_id, fields in reply]
    return [event for event in reversed(events) if event.job_id == job_id]
