"""One timer for the timeouts of all running jobs, instead of a timer armed per job.

Jobs with the same timeout reach their deadlines in the order they started, so each
timeout length keeps a FIFO of deadlines; the single timer is armed for the earliest one.
At a deadline the job's task is cancelled and its entry marked expired, which the runner
reports as a timeout (unlike a ``TimeoutError`` the handler raises itself); the entry's
``on_expire`` runs then too, whether or not the handler heeds the cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("conveyor.worker")

#: Rebuild a FIFO once finished entries outnumber running ones by this much.
_SLACK = 64


class Deadline:
    """The deadline of one running job."""

    __slots__ = ("at", "expired", "on_expire", "seconds", "task")

    def __init__(
        self, at: float, seconds: float, task: asyncio.Task[Any],
        on_expire: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self.at = at
        self.seconds = seconds
        #: Called at the deadline, right after the task is cancelled.
        self.on_expire = on_expire
        #: ``None`` once the job has left its handler: nothing is cancelled any more.
        self.task: asyncio.Task[Any] | None = task
        #: Set when the deadline passed and the task was cancelled for it.
        self.expired = False


class Deadlines:
    """Cancels each registered task at its deadline (on the loop's clock), and not before."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fifos: dict[float, deque[Deadline]] = {}
        self._running: dict[float, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(
        self, task: asyncio.Task[Any], seconds: float, on_expire: Callable[[], None] | None = None
    ) -> Deadline:
        """Cancel ``task`` in ``seconds`` (and call ``on_expire``) unless :meth:`finish` is
        called first."""
        entry = Deadline(self._loop.time() + seconds, seconds, task, on_expire)
        fifo = self._fifos.get(seconds)
        if fifo is None:
            fifo = self._fifos[seconds] = deque()
            self._running[seconds] = 0
        fifo.append(entry)
        self._running[seconds] += 1
        if entry.at < self._timer_at:
            self._arm(entry.at)
        return entry

    def finish(self, entry: Deadline) -> None:
        """The job left its handler: its deadline no longer applies."""
        if entry.task is None:
            return
        entry.task = None
        seconds = entry.seconds
        running = self._running[seconds] = self._running[seconds] - 1
        fifo = self._fifos[seconds]
        while fifo and fifo[0].task is None:  # usually the oldest job finishes first
            fifo.popleft()
        if not fifo:  # so jobs with many different timeouts leave nothing behind
            del self._fifos[seconds], self._running[seconds]
        elif len(fifo) > 2 * running + _SLACK:  # one long job holds up the front
            self._fifos[seconds] = deque(e for e in fifo if e.task is not None)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # In a context of its own, not that of the job that happened to arm it: what it
        # logs must not name that job.
        self._timer = self._loop.call_at(at, self._expire, context=contextvars.Context())
        self._timer_at = at

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._loop.time()
        earliest = math.inf
        for seconds, fifo in list(self._fifos.items()):
            while fifo and (fifo[0].task is None or fifo[0].at <= now):
                entry = fifo.popleft()
                if entry.task is not None:
                    entry.expired = True
                    entry.task.cancel()
                    entry.task = None
                    self._running[seconds] -= 1
                    if entry.on_expire is not None:
                        try:
                            entry.on_expire()
                        except Exception:  # the timer must go on for the other jobs
                            log.exception("a job's timeout handling failed")
            if fifo:
                earliest = min(earliest, fifo[0].at)
            else:
                del self._fifos[seconds], self._running[seconds]
        if earliest < math.inf:
            self._arm(earliest)
