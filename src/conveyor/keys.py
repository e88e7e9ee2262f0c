"""The Redis key layout of a queue: the one place that spells a key name.

Every key of a queue carries the queue's hash tag (``conveyor:{emails}:...``), so each
script touches one cluster slot. Lua scripts receive these keys from the caller, bound to
names that are checked against :data:`QUEUE_KEYS`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from conveyor.defaults import KEY_PREFIX

#: The per-queue keys, by the name scripts use for them.
QUEUE_KEYS: dict[str, str] = {
    "meta": "meta",  # hash: paused flag, sequence counters, "registered" mark
    "waiting": "waiting",  # zset: job id -> priority band + FIFO sequence
    "delayed": "delayed",  # zset: job id -> due time (ms)
    "active": "active",  # zset: job id -> lock deadline (ms)
    "completed": "completed",  # zset: job id -> expiry time (ms)
    "dead": "dead",  # zset: job id -> expiry time (ms)
    "events": "events",  # capped stream of state changes
    "marker": "marker",  # list: wakes blocked workers when work may be ready
    "dead_outbox": "dead-outbox",  # list: dead job ids to copy to a dead-letter queue
    "workers": "workers",  # zset: worker id -> heartbeat expiry (ms)
    "worker_info": "worker-info",  # hash: worker id -> JSON description
    "handlers": "handlers",  # hash: job name -> heartbeat expiry (ms) of a worker handling it
    "dedup": "dedup:",  # prefix of one string per deduplication key: dedup:<key> -> job id
    "schedules": "schedules",  # hash: schedule id -> JSON definition
    "schedule_due": "schedule-due",  # zset: schedule id -> next fire time (ms)
    "cancelled": "cancelled",  # zset: job id -> expiry time (ms)
    "rate": "rate",  # zset: start times (ms) of recent jobs, for the queue's rate limit
    "groups": "groups",  # zset: group key -> place in the fair-fetch ring (groups with work)
    "group_waiting": "group-waiting:",  # prefix of one zset per group: its waiting jobs
    "group_active": "group-active",  # hash: group key -> jobs of the group now active
    "group_rate": "group-rate:",  # prefix of one zset per group: its recent start times
    "metrics": "metrics:",  # prefix of one hash per minute: metrics:<unix minute> (expires)
    "job": "job:",  # prefix of one hash per job: job:<id>
}

#: Global set of known queue names (outside any hash tag; never touched by a script).
QUEUE_REGISTRY = f"{KEY_PREFIX}:queues"
#: Global hash: partitioned queue name -> its number of partitions (outside any hash tag).
PARTITIONS = f"{KEY_PREFIX}:partitions"
#: Separates a partitioned queue's name from a partition's number: ``emails~3``.
PARTITION_SEPARATOR = "~"

# A name, optionally followed by a partition number (which user names cannot contain).
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}(~[0-9]{1,4})?")


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it is a usable queue name, else raise ``ValueError``."""
    if type(name) is not str or not _QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-200 letters, digits, '_', '.', ':' or '-'"
        )
    return name


def partition_name(queue: str, index: int) -> str:
    """The name of partition ``index`` of the partitioned queue ``queue``."""
    return f"{queue}{PARTITION_SEPARATOR}{index}"


def partition_for(value: str, count: int) -> int:
    """The partition (of ``count``) that a partition key or job id maps to, in any process."""
    return zlib.crc32(value.encode()) % count


def job_partition(count: int, partition_key: str | None, job_id: str | None) -> int | None:
    """The partition (of ``count``) a job belongs to: its partition key's, else its explicit
    id's (so a repeated id finds the first job); ``None`` if it has neither."""
    if count == 1:
        return 0
    if partition_key is not None:
        return partition_for(partition_key, count)
    if job_id is not None:
        return partition_for(job_id, count)
    return None


def logical_name(queue: str) -> str:
    """The queue a partition belongs to (a name without a partition number is its own)."""
    return queue.partition(PARTITION_SEPARATOR)[0]


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue."""

    queue: str

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}:{{{self.queue}}}:"

    def key(self, name: str) -> str:
        """The full key for one of :data:`QUEUE_KEYS`."""
        return self.prefix + QUEUE_KEYS[name]

    def job(self, job_id: str) -> str:
        """The hash holding one job."""
        return self.key("job") + job_id
