"""Takes jobs from one queue when the worker has free slots, and blocks when there are none.

One script call fetches a batch (and promotes due delayed jobs). When nothing is ready the
fetcher blocks on the queue's marker list on the server, until work is enqueued, a delayed
job falls due, or the idle timeout passes: no sleep-polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any, Protocol

from conveyor import defaults
from conveyor.errors import ServerUnavailable
from conveyor.keys import QueueKeys
from conveyor.ops import Command
from conveyor.worker import calls
from conveyor.worker.calls import Claim, Fetched
from conveyor.worker.shared import Shared
from conveyor.worker.slots import Slots

log = logging.getLogger("conveyor.worker")


class InFlight:
    """The fetches refilling a full worker on their way, for acknowledgements to wait behind.

    The server answers the commands it read in one go only once it has run them all, so an
    acknowledgement sent beside such a fetch would hold back the jobs that fill the idle
    slots; sent just after, it runs on the server while the worker starts them. Fetches
    of a worker that is not full are not waited for: holding acknowledgements back then
    only leaves the server idle while the worker reads the fetched jobs.
    """

    def __init__(self) -> None:
        self._calls: set[asyncio.Future[Any]] = set()

    def add(self, call: asyncio.Future[Any]) -> None:
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def passed(self) -> None:
        """Wait until the fetches in flight have been answered (not later ones), or for a
        second at most: the order is an optimisation, never a reason to hold an ack."""
        await asyncio.sleep(0)  # first, a fetcher woken by the same completions sends its own
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=1.0)


class Dispatch(Protocol):
    """Where a fetcher hands the jobs it claimed (the session's :class:`~.jobs.Jobs`)."""

    def start(self, claim: Claim) -> None:
        """Start running the claimed job; its lock is held from now on."""


class Fetcher:
    """The fetch loop of one queue."""

    def __init__(
        self, shared: Shared, keys: QueueKeys, slots: Slots, in_flight: InFlight, jobs: Dispatch
    ) -> None:
        self.shared = shared
        self.keys = keys
        self.options = shared.options
        self.slots = slots
        self.in_flight = in_flight
        self.jobs = jobs
        #: The job names this worker has handlers for: it takes no job of another name
        #: while a live worker knows that name (see calls.fetch).
        self.names = sorted(shared.handlers)
        self._calls = itertools.count()
        self._failing = False
        self._pass_pause = defaults.UNKNOWN_JOB_PAUSE

    async def run(self) -> None:
        """Fetch and dispatch until the worker stops."""
        most = min(self.options.fetch_batch, self.options.concurrency)
        least = max(1, most // 4)
        batch = least
        stopping = self.shared.stopping
        while not stopping.is_set():
            # Once the worker was full, the next fetch is small: its jobs start sooner (the
            # server's work per fetch grows with the batch), and each following fetch, sent
            # while the previous jobs start, doubles up to the most.
            refill = self.slots.free < least
            if refill:
                batch = least
            count = await self.slots.take(batch, least)
            batch = min(most, 2 * batch)
            try:
                fetched = await self._fetch(count, refill)
            except ServerUnavailable as exc:
                self.slots.give(count)
                self._report_outage(exc)
                await asyncio.sleep(self.shared.outage.pause())
                continue
            except BaseException:
                self.slots.give(count)
                raise
            self.slots.give(count - len(fetched.claims))
            for claim in fetched.claims:
                self.jobs.start(claim)
            if not fetched.passed_over:
                self._pass_pause = defaults.UNKNOWN_JOB_PAUSE
            if not fetched.claims:
                await self._wait_for_work(fetched)

    async def _fetch(self, count: int, refill: bool = False) -> Fetched:
        worker_id = self.shared.worker_id
        token_base = f"{worker_id}.{next(self._calls)}"
        call = calls.fetch(
            self.keys, self.shared.queue_options, count, worker_id, token_base,
            round(self.options.lock_ttl * 1000), names=self.names,
            unknown_job_grace=self.options.unknown_job_grace,
        )  # fmt: skip
        answered = asyncio.get_running_loop().create_future()
        if refill:
            self.in_flight.add(answered)
        try:
            (reply,) = await self.shared.transport.execute([call])
        finally:
            answered.set_result(None)
        if self._failing:
            log.warning("queue %s: the server is reachable again", self.keys.queue)
            self._failing = False
            self.shared.outage.recovered()
        return calls.parse_fetch(self.keys.queue, reply)

    async def _wait_for_work(self, fetched: Fetched) -> None:
        timeout = self.options.idle_block
        if fetched.wait_ms >= 0:
            timeout = min(timeout, fetched.wait_ms / 1000)
        if fetched.passed_over:
            # Only jobs for other workers are waiting, and the fetch woke those workers
            # through the marker: a pause, not a blocking read that would take that wake-up
            # itself and fetch the same jobs again at once. It doubles while nothing else
            # turns up (up to the idle timeout), so passing over costs the server little.
            pause = min(timeout, self._pass_pause)
            self._pass_pause = min(self.options.idle_block, 2 * self._pass_pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.shared.stopping.wait(), pause)
            return
        if timeout <= 0.001:
            return
        # Race the blocking read against the stop signal: a cancellation alone can be lost
        # inside the client's own retry of an interrupted read.
        marker = Command(("BLPOP", self.keys.key("marker"), f"{timeout:.3f}"))
        blocked = asyncio.ensure_future(self.shared.transport.execute([marker]))
        stop = asyncio.ensure_future(self.shared.stopping.wait())
        try:
            await asyncio.wait({blocked, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not blocked.done():
                blocked.cancel()
                # Let the interrupted read release its connection (bounded: the read may
                # be retried by the client, and ends by its own timeout at the latest).
                await asyncio.wait({blocked}, timeout=timeout + 1)
        if blocked.cancelled():
            return
        try:
            blocked.result()
        except ServerUnavailable as exc:
            self._report_outage(exc)
            await asyncio.sleep(self.shared.outage.pause())

    def _report_outage(self, exc: ServerUnavailable) -> None:
        if not self._failing:
            log.warning("queue %s: %s; retrying with backoff", self.keys.queue, exc)
        self._failing = True
