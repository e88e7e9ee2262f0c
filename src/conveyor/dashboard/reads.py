"""The dashboard's bounded reads, free of I/O (see :mod:`conveyor.ops`): pages, not scans.

Every read looks at a bounded number of entries, so a page costs the same on a queue of a
million jobs as on one of ten.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor import ops, partitions
from conveyor.events import Event, parse_event
from conveyor.job import Job, JobState
from conveyor.keys import QUEUE_REGISTRY, QueueKeys, logical_name
from conveyor.ops import Call, Command, Op
from conveyor.states import STATE_INFO

#: Entries a name-filtered page looks at, at most, before handing back a cursor.
NAME_SCAN = 2000
_CHUNK = 500
#: Newest events of a queue read to build one job's timeline.
EVENTS_SCAN = 2000
#: In a partitioned queue's cursor, a partition with nothing more to list.
_DONE = "-"


@dataclass(frozen=True)
class JobsPage:
    """One page of a queue's jobs in one state; ``cursor`` continues it (``None``: the end).

    A cursor is an offset, or for a partitioned queue a position per partition
    (``"12.0.-.7"``, see :func:`parse_positions`). ``start`` is the cursor of this page
    (``0`` for the first page either way).
    """

    jobs: list[Job]
    cursor: int | str | None
    scanned: int
    start: int | str = 0


def queue_known(name: str) -> Op[bool]:
    """Whether ``name`` is in the registry of queues (a partition: whether its queue is)."""
    (member,) = yield [Command(("SISMEMBER", QUEUE_REGISTRY, logical_name(name)))]
    return bool(member)


def parse_offset(text: str) -> int:
    """The cursor of an unpartitioned queue's page: an offset (``ValueError`` if not one)."""
    try:
        value = int(text or "0")
    except ValueError:
        raise ValueError("cursor must be an integer") from None
    if value < 0:
        raise ValueError("cursor must be >= 0")
    return min(value, 10**12)


def parse_positions(text: str, count: int) -> list[int | None]:
    """The cursor of a partitioned queue's page: where each of its ``count`` partitions
    continues (``None``: it has nothing more). ``""`` and ``"0"`` are the first page."""
    if text in ("", "0"):
        return [0] * count
    fields = text.split(".")
    if len(fields) != count or not all(f == _DONE or (f.isdigit() and len(f) <= 12)
                                       for f in fields):  # fmt: skip
        raise ValueError(f"cursor must be {count} positions separated by '.' (or '{_DONE}')")
    return [None if f == _DONE else int(f) for f in fields]


def format_positions(positions: Sequence[int | None]) -> int | str:
    """The cursor of partitions' positions (``0`` when every one is at its start)."""
    if all(p == 0 for p in positions):
        return 0
    return ".".join(_DONE if p is None else str(p) for p in positions)


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
        return JobsPage(jobs[:limit], cursor + limit if more else None, len(jobs), cursor)
    found = yield from _scan_named(keys, state, cursor, limit, name, NAME_SCAN)
    jobs = yield from _fetch(keys, [job_id for _, job_id in found.ids])
    return JobsPage(jobs, found.end, found.scanned, cursor)


@dataclass(frozen=True)
class _Found:
    """What one partition's read found: ``(position, id)`` of each job, where it stopped
    (``None``: at the end of the set), and how many entries it looked at."""

    ids: list[tuple[int, str]]
    end: int | None
    scanned: int


def _scan_named(
    keys: QueueKeys, state: JobState, cursor: int, limit: int, name: str, budget: int
) -> Op[_Found]:
    """Up to ``limit`` ids of jobs named ``name``, looking at no more than ``budget``."""
    wanted = name.encode()
    order = "ZREVRANGE" if STATE_INFO[state].newest_first else "ZRANGE"
    chunk = min(_CHUNK, budget)
    matched: list[tuple[int, str]] = []
    position = cursor
    while len(matched) < limit and position - cursor < budget:
        (ids,) = yield [Command((order, keys.key(state.value), position, position + chunk - 1))]
        lookups: list[Call] = [Command(("HGET", keys.job(raw.decode()), "name")) for raw in ids]
        names = (yield lookups) if lookups else []
        for raw, job_name in zip(ids, names, strict=True):
            position += 1
            if job_name == wanted:
                matched.append((position - 1, raw.decode()))
                if len(matched) == limit:
                    break
        else:
            if len(ids) < chunk:  # the end of the set
                return _Found(matched, None, position - cursor)
    return _Found(matched, position, position - cursor)


def _scan(keys: QueueKeys, state: JobState, cursor: int, limit: int) -> Op[_Found]:
    """The ids of the ``limit`` jobs from position ``cursor`` (one ranged read)."""
    order = "ZREVRANGE" if STATE_INFO[state].newest_first else "ZRANGE"
    (ids,) = yield [Command((order, keys.key(state.value), cursor, cursor + limit - 1))]
    found = [(cursor + i, raw.decode()) for i, raw in enumerate(ids)]
    return _Found(found, cursor + len(ids) if len(ids) == limit else None, len(ids))


def parts_page(
    parts: Sequence[QueueKeys],
    state: JobState,
    positions: Sequence[int | None],
    limit: int,
    name: str = "",
) -> Op[JobsPage]:
    """One page of a partitioned queue: each partition read from its own position, merged.

    Each partition is asked for ``limit + 1`` jobs (with a name, it looks at no more than
    its share of :data:`NAME_SCAN` entries); their pages are merged in the order of one
    queue and the first ``limit`` kept. A partition's next position follows the last of its
    jobs kept, so a deep page costs what the first does, and none is skipped or repeated.
    """
    budget = max(1, NAME_SCAN // len(parts))
    live = [(index, start) for index, start in enumerate(positions) if start is not None]
    scans = yield from partitions.gather([
        _scan_named(parts[index], state, start, limit + 1, name, budget) if name
        else _scan(parts[index], state, start, limit + 1)
        for index, start in live
    ])  # fmt: skip
    found = [_Found([], None, 0)] * len(parts)
    for (index, _), one in zip(live, scans, strict=True):
        found[index] = one
    calls: list[Call] = [ops.read_job(parts[index], job_id)
                         for index, one in enumerate(found) for _, job_id in one.ids]  # fmt: skip
    replies = (yield calls) if calls else []
    lists: list[list[tuple[int, int, Job]]] = []
    for index, one in enumerate(found):
        mine, replies = replies[: len(one.ids)], replies[len(one.ids) :]
        pairs = zip(one.ids, mine, strict=True)
        queue = parts[index].queue
        lists.append([(index, at, job) for (at, _), reply in pairs
                      if (job := ops.job_read(queue, reply)) is not None])  # fmt: skip
    order = partitions.order_of(state)
    kept = list(heapq.merge(*lists, key=lambda row: order(row[2])))[:limit]
    taken = [0] * len(parts)
    for index, _, _ in kept:
        taken[index] += 1
    following = [
        rows[taken[index]][1] if taken[index] < len(rows) else found[index].end
        for index, rows in enumerate(lists)
    ]
    more = any(position is not None for position in following)
    return JobsPage([job for _, _, job in kept], format_positions(following) if more else None,
                    sum(one.scanned for one in found), format_positions(positions))  # fmt: skip


def _fetch(keys: QueueKeys, ids: list[str]) -> Op[list[Job]]:
    if not ids:
        return []
    replies = yield [ops.read_job(keys, job_id) for job_id in ids]
    return [
        job
        for job_id, reply in zip(ids, replies, strict=True)
        if (job := ops.job_read(keys.queue, reply, job_id)) is not None
    ]


def job_events(keys: QueueKeys, job_id: str, scan: int = EVENTS_SCAN) -> Op[list[Event]]:
    """The events of one job among the newest ``scan`` of its queue, oldest first."""
    (reply,) = yield [Command(("XREVRANGE", keys.key("events"), "+", "-", "COUNT", scan))]
    events = [parse_event(raw_id, fields, keys.queue) for raw_id, fields in reply]
    return [event for event in reversed(events) if event.job_id == job_id]
