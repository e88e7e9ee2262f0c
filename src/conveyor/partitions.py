"""Partitioned queues: one logical queue made of N ordinary queues, each in its own slot.

Partition ``i`` of ``emails`` is the ordinary queue ``emails~i``: its keys carry their own
hash tag, so on a cluster the partitions spread over the shards and every script still
touches one slot. The number of partitions is recorded once in a global hash
(:data:`~conveyor.keys.PARTITIONS`), which producers, workers and tools read to find them.

The operations here combine the per-partition operations of :mod:`conveyor.ops` so that
a partitioned queue reads as one queue: each round trip of the parts is sent together, as
one pipeline (on a cluster, to every shard at once).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec

from conveyor import dlq_ops, ops, validate
from conveyor.dlq_ops import BulkResult, DeadFilter, DeadPage
from conveyor.dlq_records import CheckedJob
from conveyor.errors import ConveyorError
from conveyor.events import Event, read_events, read_streams
from conveyor.job import Job, JobState
from conveyor.keys import (
    PARTITIONS,
    QueueKeys,
    job_partition,
    logical_name,
    partition_name,
)
from conveyor.metrics import MinuteStats, QueueMetrics, queue_metrics
from conveyor.ops import Call, Command, Counts, JobSpec, Op, Pause
from conveyor.states import STATES

T = TypeVar("T")

#: The most partitions a queue may have.
MAX_PARTITIONS = 1024
#: The highest stream id of a millisecond: reading "after" it starts at the next one.
_LAST_SEQ = 2**64 - 1


def keys_of(queue: str, count: int) -> list[QueueKeys]:
    """The keys of each partition (one, the queue's own, when it is not partitioned)."""
    if count == 1:
        return [QueueKeys(queue)]
    return [QueueKeys(partition_name(queue, index)) for index in range(count)]


def resolve(queue: str, declared: int | None) -> Op[int]:
    """How many partitions ``queue`` has; with ``declared``, record it (or check it).

    The count is fixed once recorded: changing it would move jobs of a partition key to
    another partition, so it is refused. A queue that already holds jobs unpartitioned
    cannot become partitioned either.
    """
    if declared is not None:
        validate.integer(declared, "partitions", 1, MAX_PARTITIONS)
    if logical_name(queue) != queue:  # a partition addressed directly is a plain queue
        if declared not in (None, 1):
            raise ValueError(f"{queue!r} is a partition; it cannot be partitioned again")
        return 1
    (stored,) = yield [Command(("HGET", PARTITIONS, queue))]
    if stored is None and declared not in (None, 1):
        plain = QueueKeys(queue)
        held_keys = (plain.key(info.key) for info in STATES if info.outstanding)
        (held,) = yield [Command(("EXISTS", *held_keys))]
        if int(held):
            raise ConveyorError(
                f"queue {queue!r} already holds jobs as an unpartitioned queue; "
                "drain it (or use another name) before declaring partitions"
            )
        yield [Command(("HSETNX", PARTITIONS, queue, declared))]
        (stored,) = yield [Command(("HGET", PARTITIONS, queue))]  # another may have won
    count = int(stored) if stored is not None else 1
    if declared is not None and declared != count:
        raise ConveyorError(
            f"queue {queue!r} has {count} partition(s), not {declared}: the number of "
            "partitions is fixed when the queue is first declared (see docs/scaling.md "
            "for repartitioning)"
        )
    return count


def register(queue: str, declared: int | None = None) -> Op[list[QueueKeys]]:
    """Record ``queue`` among the known queues and find (or declare) its partitions: what a
    queue does when it first connects, and what jobs moved to a queue need."""
    _, count = yield from gather([
        ops.register_queue(logical_name(queue)),  # a partition registers its queue
        resolve(queue, declared),
    ])  # fmt: skip
    return keys_of(queue, count)


def layout(queues: Sequence[str]) -> Op[dict[str, int]]:
    """How many partitions each of these queues has (one round trip; 1: not partitioned)."""
    (counts,) = yield [Command(("HMGET", PARTITIONS, *queues))]
    return {
        queue: int(count) if count is not None and logical_name(queue) == queue else 1
        for queue, count in zip(queues, counts, strict=True)
    }


def parts_of(queue: str) -> Op[list[QueueKeys]]:
    """The keys of each partition of the queue called ``queue``, as the server records."""
    count = yield from resolve(queue, None)
    return keys_of(queue, count)


def forget(queue: str) -> Op[None]:
    """Remove the queue's partition count (after its partitions were deleted)."""
    yield [Command(("HDEL", PARTITIONS, queue))]


def partitioned_queues() -> Op[dict[str, int]]:
    """Every partitioned queue and its number of partitions."""
    (reply,) = yield [Command(("HGETALL", PARTITIONS))]
    return {name.decode(): int(count) for name, count in reply.items()}


class Spreader:
    """Chooses the partition of each new job.

    A ``partition_key`` always maps to the same partition (jobs of one key keep their
    order); so does an explicit job id (a repeated id finds the first job and is not
    enqueued twice). Other jobs go round robin, from a random start per producer.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._turn = itertools.count(random.randrange(count))

    def choose(self, item: JobSpec | tuple[str, Any]) -> int:
        if isinstance(item, JobSpec):
            home = job_partition(self.count, item.partition_key, item.id)
            if home is not None:
                return home
        elif self.count == 1:
            return 0
        return next(self._turn) % self.count


# --- running the parts' operations together ----------------------------------------------


def gather(parts: Sequence[Op[Any]]) -> Op[list[Any]]:
    """Run operations side by side: each round trip sends every pending op's calls at once."""
    results: list[Any] = [None] * len(parts)
    pending: dict[int, list[Call] | Pause] = {}

    def advance(index: int, reply: Any) -> None:
        try:
            pending[index] = parts[index].send(reply)
        except StopIteration as done:
            results[index] = done.value
            pending.pop(index, None)

    for index in range(len(parts)):
        advance(index, None)
    while pending:
        pauses = [(i, step) for i, step in pending.items() if isinstance(step, Pause)]
        if pauses:
            longest = max(step.seconds for _, step in pauses)
            yield Pause(longest)
            for index, _ in pauses:
                advance(index, None)
            continue
        batch: list[Call] = []
        spans: list[tuple[int, int, int]] = []
        for index, step in pending.items():
            assert not isinstance(step, Pause)
            spans.append((index, len(batch), len(step)))
            batch += step
        replies = yield batch
        for index, start, size in spans:
            advance(index, replies[start : start + size])
    return results


def enqueue(
    parts: Sequence[QueueKeys],
    spreader: Spreader,
    jobs: Iterable[JobSpec | tuple[str, Any]],
    options: ops.QueueOptions,
    durable: ops.Durable | None,
) -> Op[list[Job]]:
    """Enqueue jobs on their partitions (one script call per partition, sent together)."""
    if len(parts) == 1:
        return (yield from ops.enqueue_many(parts[0], jobs, options, durable))
    specs = list(jobs)
    chosen: dict[int, list[int]] = {}
    for position, spec in enumerate(specs):
        chosen.setdefault(spreader.choose(spec), []).append(position)
    partial = yield from gather(
        [ops.enqueue_many(parts[p], [specs[i] for i in at], options, durable, len(parts))
         for p, at in chosen.items()]
    )  # fmt: skip
    placed: list[Job | None] = [None] * len(specs)
    for positions, made in zip(chosen.values(), partial, strict=True):
        for position, job in zip(positions, made, strict=True):
            placed[position] = job
    return [job for job in placed if job is not None]


def find_job(parts: Sequence[QueueKeys], job_id: str) -> Op[Job | None]:
    """The job with this id, from whichever partition holds it."""
    found = yield from gather([ops.get_job(keys, job_id) for keys in parts])
    return next((job for job in found if job is not None), None)


def owner(parts: Sequence[QueueKeys], job_id: str) -> Op[QueueKeys | None]:
    """The partition holding the job ``job_id`` (``None``: no partition does)."""
    if len(parts) == 1:
        return parts[0]
    replies = yield [Command(("EXISTS", keys.job(job_id))) for keys in parts]
    return next((keys for keys, held in zip(parts, replies, strict=True) if int(held)), None)


def counts(parts: Sequence[QueueKeys]) -> Op[Counts]:
    """The parts' counts added up (each partition read atomically, not all at once)."""
    each: list[Counts] = yield from gather([ops.counts(keys) for keys in parts])
    return sum_counts(each)


def sum_counts(each: Sequence[Counts]) -> Counts:
    """One queue's counts from its partitions'. Paused if any partition is; workers serve
    every partition, so the live workers are the most any partition has."""
    if len(each) == 1:
        return each[0]
    total = {info.name: sum(getattr(c, info.name) for c in each) for info in STATES}
    return Counts(
        **total,
        paused=any(c.paused for c in each),
        workers=max(c.workers for c in each),
    )


def _merge_key(order: tuple[str, ...]) -> Callable[[Job], Any]:
    """The sort key of a state's listing (see :attr:`conveyor.states.StateInfo.order`); an
    unset attribute sorts as 0."""
    fields = [(name.lstrip("-"), -1 if name.startswith("-") else 1) for name in order]
    return lambda job: tuple(sign * (getattr(job, name) or 0.0) for name, sign in fields)


#: How the jobs of each state are ordered when partitions' pages are merged.
_ORDER: dict[JobState, Callable[[Job], Any]] = {
    info.state: _merge_key(info.order) for info in STATES
}


def list_jobs(
    parts: Sequence[QueueKeys], state: JobState, offset: int, limit: int
) -> Op[list[Job]]:
    """One page of jobs in ``state`` across partitions, in the order of one queue."""
    if len(parts) == 1:
        return (yield from ops.list_jobs(parts[0], state, offset, limit))
    if limit < 1 or offset < 0:
        raise ValueError("offset must be >= 0 and limit >= 1")
    pages = yield from gather([ops.list_jobs(keys, state, 0, offset + limit) for keys in parts])
    merged = heapq.merge(*pages, key=_ORDER[state])
    return list(itertools.islice(merged, offset, offset + limit))


def list_dead(
    parts: Sequence[QueueKeys], where: DeadFilter, cursor: int, limit: int
) -> Op[DeadPage]:
    """A page of dead jobs across partitions, newest first.

    For a partitioned queue the cursor counts the jobs already listed: each partition is
    asked for that many plus a page, and the pages are merged.
    """
    if len(parts) == 1:
        return (yield from dlq_ops.list_dead(parts[0], where, cursor, limit))
    pages: list[DeadPage] = yield from gather(
        [dlq_ops.list_dead(keys, where, 0, cursor + limit + 1) for keys in parts]
    )
    merged = list(heapq.merge(*(p.jobs for p in pages), key=_ORDER[JobState.DEAD]))
    more = len(merged) > cursor + limit or any(p.cursor is not None for p in pages)
    return DeadPage(merged[cursor : cursor + limit], cursor + limit if more else None)


def merge_metrics(queue: str, each: Sequence[QueueMetrics]) -> QueueMetrics:
    """One queue's metrics from its partitions'."""
    if len(each) == 1:
        return msgspec.structs.replace(each[0], queue=queue)
    minutes: dict[int, list[int]] = {}
    for metrics in each:
        for m in metrics.minutes:
            row = minutes.setdefault(m.minute, [0, 0, 0])
            row[0] += m.completed
            row[1] += m.failed
            row[2] += m.dead
    workers = {w.id: w for metrics in each for w in metrics.workers}
    return QueueMetrics(
        queue=queue,
        counts=sum_counts([m.counts for m in each]),
        completed_total=sum(m.completed_total for m in each),
        failed_total=sum(m.failed_total for m in each),
        dead_total=sum(m.dead_total for m in each),
        minutes=[MinuteStats(minute, *row) for minute, row in sorted(minutes.items())],
        duration_buckets=[sum(b) for b in zip(*(m.duration_buckets for m in each), strict=True)],
        oldest_waiting_age=_oldest(m.oldest_waiting_age for m in each),
        oldest_dead_age=_oldest(m.oldest_dead_age for m in each),
        workers=sorted(workers.values(), key=lambda w: w.id),
        partitions=len(each),
    )


def metrics_of(queues: Sequence[str], window: float) -> Op[list[QueueMetrics]]:
    """The metrics of many queues, read side by side (a few round trips for any number)."""
    return (yield from gather([logical_metrics(queue, window) for queue in queues]))


def logical_metrics(queue: str, window: float) -> Op[QueueMetrics]:
    """The metrics of a queue by name, partitioned or not (for tools that list queues)."""
    parts = yield from parts_of(queue)
    return (yield from metrics_of_parts(queue, parts, window))


def metrics_of_parts(queue: str, parts: Sequence[QueueKeys], window: float) -> Op[QueueMetrics]:
    """The metrics of the queue ``queue`` made of these partitions."""
    each = yield from gather([queue_metrics(keys, window) for keys in parts])
    return merge_metrics(queue, each)


def _oldest(ages: Any) -> float | None:
    known = [age for age in ages if age is not None]
    return max(known) if known else None


# --- events ----------------------------------------------------------------------------


def start_positions(parts: Sequence[QueueKeys], last_id: str) -> Op[list[str]]:
    """Where each partition's stream is read from, for ``events(last_id=...)``.

    ``"$"`` starts after the newest event of each partition and ``"0"`` at the oldest kept.
    An event id resumes every partition at that event's millisecond: stream ids are server
    times, so nothing later is missed; events of that same millisecond may come again.
    """
    if last_id == "$":
        replies = yield [Command(("XREVRANGE", k.key("events"), "+", "-", "COUNT", 1))
                         for k in parts]  # fmt: skip
        return [reply[0][0].decode() if reply else "0-0" for reply in replies]
    if len(parts) == 1 or last_id in ("0", "0-0"):
        return [last_id] * len(parts)
    millisecond = int(last_id.split("-", 1)[0])
    return [f"{max(0, millisecond - 1)}-{_LAST_SEQ}"] * len(parts)


def read_events_of(
    parts: Sequence[QueueKeys], positions: list[str], *, block: float, together: bool
) -> Op[list[Event]]:
    """New events of every partition, merged by time; ``positions`` move past them.

    ``together``: the partitions share one server, so one ``XREAD`` blocks on all of
    them. Otherwise (a cluster) each partition is read on its shard, pipelined, with a
    short block, so that a quiet partition cannot hold back a busy one for long.
    """
    batches: list[list[Event]]
    if len(parts) > 1 and together:
        batches = yield from read_streams(parts, positions, block=block)
    else:
        wait = block if len(parts) == 1 else min(block, 0.1)
        batches = yield from gather(
            [
                read_events(k, position, block=wait)
                for k, position in zip(parts, positions, strict=True)
            ]
        )
    for index, events in enumerate(batches):
        if events:
            positions[index] = events[-1].id
    if len(batches) == 1:
        return batches[0]
    merged = [event for events in batches for event in events]
    return sorted(merged, key=lambda event: _stream_order(event.id))


def _stream_order(event_id: str) -> tuple[int, int]:
    millisecond, _, sequence = event_id.partition("-")
    return int(millisecond), int(sequence or 0)


# --- dead letters ------------------------------------------------------------------------


def dead_select(
    parts: Sequence[QueueKeys],
    ids: Sequence[str] | None,
    where: DeadFilter | None,
    everything: bool,
    older_than: float | None = None,
) -> Op[list[tuple[QueueKeys, list[str]]]]:
    """The dead jobs a bulk operation applies to, grouped by partition."""
    if len(parts) == 1 or ids is None:
        chosen = yield from gather(
            [dlq_ops.select(keys, ids, where, everything, older_than) for keys in parts]
        )
        return [(keys, found) for keys, found in zip(parts, chosen, strict=True) if found]
    yield from dlq_ops.select(parts[0], ids, where, everything, older_than)  # checks arguments
    replies = yield [Command(("ZSCORE", k.key("dead"), job_id)) for job_id in ids for k in parts]
    groups: dict[int, list[str]] = {}
    for row, job_id in enumerate(ids):
        scores = replies[row * len(parts) : (row + 1) * len(parts)]
        # An id that is dead nowhere goes to the first partition, which reports it unmatched.
        home = next((p for p, score in enumerate(scores) if score is not None), 0)
        groups.setdefault(home, []).append(job_id)
    return [(parts[p], group) for p, group in sorted(groups.items())]


def sum_bulk(each: Sequence[BulkResult], dry_run: bool) -> BulkResult:
    """One result from the partitions' results of a bulk operation."""
    return BulkResult(
        matched=sum(r.matched for r in each),
        moved=sum(r.moved for r in each),
        ids=[job_id for r in each for job_id in r.ids],
        dry_run=dry_run,
        refused={job_id: why for r in each for job_id, why in r.refused.items()},
    )


def import_batches(
    parts: Sequence[QueueKeys], jobs: Sequence[CheckedJob]
) -> list[tuple[QueueKeys, list[CheckedJob]]]:
    """An import's batches: each job goes to the partition its partition key (else its id)
    maps to, at most :data:`dlq_ops.BATCH` jobs (and about :data:`dlq_ops.IMPORT_BYTES`)
    per batch."""
    batches: list[tuple[QueueKeys, list[CheckedJob]]] = []
    current: dict[int, tuple[list[CheckedJob], int]] = {}  # partition: open batch, its bytes
    for job in jobs:
        home = job_partition(len(parts), job.partition_key, job.id) or 0
        size = sum(len(value) for value in job.fields)
        batch, used = current.get(home, ([], 0))
        if not batch or len(batch) >= dlq_ops.BATCH or used + size > dlq_ops.IMPORT_BYTES:
            batch, used = [], 0
            batches.append((parts[home], batch))
        batch.append(job)
        current[home] = (batch, used + size)
    return batches


def order_of(state: JobState) -> Callable[[Job], Any]:
    """How jobs in ``state`` are ordered across partitions (the key merged pages use)."""
    return _ORDER[state]
