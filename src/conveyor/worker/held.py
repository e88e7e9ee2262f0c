"""The locks a worker holds, by queue and job: taken at fetch, let go at settle or loss.

The event loop takes and lets go; the lock keeper's thread snapshots them to renew them,
and lets go of those the server says are lost. Every access holds one lock, so the
thread never sees a dict half-changed, whatever the interpreter's locking.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

#: The start of the message for a job whose record vanished under its lock (``%s``: the id).
MISSING = (
    "job %s no longer exists on the server (its data was lost, e.g. by a restart without "
    "persistence, or the queue was obliterated)"
)


class Held(Protocol):
    """One attempt's lock: a :class:`~.calls.Claim`, or a completion waiting to be sent."""

    @property
    def id(self) -> str: ...

    @property
    def token(self) -> str: ...


class HeldLocks:
    """queue → job id → lock token, for every job this worker holds a lock on."""

    __slots__ = ("_held", "_lock")

    def __init__(self, queues: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, str]] = {queue: {} for queue in queues}

    def take(self, queue: str, job_id: str, token: str) -> None:
        """Hold the lock of this attempt (fetched with ``token``)."""
        with self._lock:
            self._held[queue][job_id] = token

    def let_go(self, queue: str, job_id: str, token: str) -> bool:
        """Stop holding (and renewing) the job's lock, if this worker still holds that very
        attempt: the job may have been settled, and even fetched again, since ``token`` was
        read. True if it was held."""
        with self._lock:
            held = self._held.get(queue)
            if held is None or held.get(job_id) != token:
                return False
            del held[job_id]
            return True

    def let_go_all(self, queue: str, attempts: Iterable[Held]) -> None:
        """:meth:`let_go` of each attempt (settled together), under one acquisition."""
        with self._lock:
            held = self._held.get(queue)
            if held is None:
                return
            for attempt in attempts:
                if held.get(attempt.id) == attempt.token:
                    del held[attempt.id]

    def snapshot(self) -> dict[str, dict[str, str]]:
        """A copy of every queue's locks (job id → token), for one renewal or hand-back."""
        with self._lock:
            return {queue: held.copy() for queue, held in self._held.items()}
