"""One run of a worker on one layout of its queues: builds the collaborators (fetchers,
runner, settler, lock keeper), supervises the background loops, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from conveyor import defaults, dlq_ops, ops, partitions, schedules
from conveyor.errors import ServerUnavailable, WorkerFailedError, WorkerStuckError
from conveyor.job import AttemptCause, Job
from conveyor.keys import QueueKeys
from conveyor.ops import Command, QueueOptions
from conveyor.transport import AsyncTransport
from conveyor.worker import calls
from conveyor.worker.calls import Claim
from conveyor.worker.fetcher import Fetcher, InFlight
from conveyor.worker.handlers import Handler
from conveyor.worker.held import HeldLocks
from conveyor.worker.jobs import Jobs
from conveyor.worker.locks import LockKeeper
from conveyor.worker.options import WorkerOptions
from conveyor.worker.outage import Outage
from conveyor.worker.outcome import Outcome
from conveyor.worker.processes import ProcessPool
from conveyor.worker.reporter import Reporter
from conveyor.worker.runner import Runner, invalid_job
from conveyor.worker.settler import Settler
from conveyor.worker.shared import Shared
from conveyor.worker.slots import Slots
from conveyor.worker.threads import HandlerThreads

log = logging.getLogger("conveyor.worker")

#: The name of every handler thread (followed by a number).
THREAD_NAME = "conveyor-job"


class Served(Protocol):
    """What a session reads of its :class:`~conveyor.worker.Worker` (all public), and the
    one thing it asks of it: to stop."""

    id: str
    options: WorkerOptions
    queue_options: QueueOptions
    handlers: dict[str, Handler]
    on_dead: Callable[[Job], Any] | None
    #: The queues by name, their partitions, and where dead jobs are copied, as last laid out.
    queue_names: list[str]
    layout: dict[str, int]
    queues: list[QueueKeys]
    dead_letter_targets: list[QueueKeys]

    def stop(self, *, now: bool = False) -> None: ...


class Session:
    """One run of a worker: the collaborators and the tasks that tie them together.

    It runs until ``wake`` is set (by the worker's ``stop()``, or by the session itself when
    the partitions changed: then :attr:`relayout` is true); ``now`` set skips the grace
    period. Why it stopped the worker itself, if it did, is in :attr:`failure`.
    """

    def __init__(
        self,
        worker: Served,
        url: str,
        transport: AsyncTransport,
        wake: asyncio.Event,
        now: threading.Event,
    ) -> None:
        self.worker = worker
        self.options = worker.options
        self.wake = wake
        self.now = now
        #: Why the session stopped the worker (a background task kept failing, too many
        #: threads hung).
        self.failure: WorkerFailedError | None = None
        #: A queue served was partitioned (or re-partitioned) since the session started.
        self.relayout = False
        self.loop = asyncio.get_running_loop()
        self.transport = transport
        self.shared = Shared(
            worker_id=worker.id, options=worker.options, queue_options=worker.queue_options,
            queues={keys.queue: keys for keys in worker.queues}, handlers=worker.handlers,
            transport=transport, outage=Outage(),
            held=HeldLocks(keys.queue for keys in worker.queues), stopping=asyncio.Event(),
        )  # fmt: skip
        self.stopping = self.shared.stopping
        self.slots = Slots(self.options.concurrency)
        self.pool = HandlerThreads(self.options.concurrency, THREAD_NAME)
        self.reporter = Reporter(self.loop, self.shared)
        self.runner = Runner(
            worker.handlers, self.pool, worker.id, worker.queue_options.timeout,
            worker.queue_options.max_result_bytes, self.reporter, self.slots.give,
            self._on_abandoned,
        )  # fmt: skip
        self.processes = ProcessPool.for_handlers(self.options, worker.handlers.values())
        self.runner.processes = self.processes
        self.in_flight = InFlight()
        self.settler = Settler(self.shared, self.reporter, self.in_flight, worker.on_dead)
        self.jobs = Jobs(self.shared, self.slots, self.runner, self.settler)
        self.locks = LockKeeper(url, self.shared, self)
        self.started_at = time.time()
        self._recoveries = 0

    # --- stopping the worker ----------------------------------------------------------

    def fail(self, failure: WorkerFailedError) -> None:
        """Stop the worker gracefully (thread-safe); its ``serve`` then raises ``failure``."""
        if self.failure is None:
            self.failure = failure
            log.error("%s", failure)
        self.worker.stop()

    def failed(self, why: str) -> None:
        """:meth:`fail` because a background task kept failing."""
        self.fail(WorkerFailedError(f"worker {self.worker.id} stopped: {why}"))

    def _on_abandoned(self, count: int) -> None:
        limit = self.options.max_abandoned_threads
        if count > limit:
            self.fail(WorkerStuckError(
                f"{count} handler threads are stuck past their timeout (limit {limit}, "
                "max_abandoned_threads): stopping so that a supervisor restarts the worker; "
                "run hung code in process handlers, which are killed at their timeout"
            ))  # fmt: skip

    # --- what the lock keeper asks and tells, from its thread (locks.LockEvents) ----------

    def describe(self) -> bytes:
        """The worker's self-description, refreshed with every heartbeat."""
        return msgspec.json.encode({
            "id": self.worker.id, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": [k.queue for k in self.worker.queues],
            "concurrency": self.options.concurrency, "started_at": self.started_at,
            "last_heartbeat": time.time(),
            "jobs_done": self.settler.completed + self.settler.failed,
            "abandoned_threads": self.pool.abandoned,
            "handlers": sorted(self.worker.handlers),  # job names: see extend_locks.lua
        })  # fmt: skip

    def cancel_requested(self, queue: str, job_ids: list[str]) -> None:
        self.loop.call_soon_threadsafe(self.jobs.cancel, queue, job_ids)

    def keeper_failed(self, why: str) -> None:
        self.failed(why)

    # --- background loops -------------------------------------------------------------

    async def _maintain(self) -> None:
        """Every check interval: recover stalled jobs and route dead ones, for each queue;
        and start over if a queue served was partitioned since the session started."""
        interval = self.options.stall_check_interval
        pause = random.uniform(0, interval)  # spread the checks of many workers
        while not await self._stopped_within(pause):
            if await self._layout_changed():
                return
            for keys in self.worker.queues:
                try:
                    await self._recover_stalled(keys)
                    if self.worker.dead_letter_targets:
                        await self.transport.run(
                            dlq_ops.route_outbox(
                                keys, self.worker.queue_options, self.worker.dead_letter_targets
                            )
                        )
                except ServerUnavailable:
                    pass  # the fetchers report outages
            pause = interval

    async def _fire_schedules(self) -> None:
        """Every schedule check interval: make the jobs of the schedule ticks that are due.

        A queue whose schedules cannot be fired (a malformed stored schedule) is logged,
        with the traceback, at most once a minute, and tried again: it never stops the
        worker's jobs, nor the schedules of its other queues."""
        reported: dict[str, float] = {}
        while not await self._stopped_within(self.options.schedule_check_interval):
            for keys in self.worker.queues:
                try:
                    made = await self.transport.run(
                        schedules.fire_due(keys, self.worker.queue_options)
                    )
                except ServerUnavailable:
                    continue  # the fetchers report outages
                except Exception:
                    if time.monotonic() - reported.get(keys.queue, -60.0) >= 60.0:
                        reported[keys.queue] = time.monotonic()
                        log.exception("queue %s: could not fire its schedules (tried again "
                                      "every check; logged once a minute)", keys.queue)  # fmt: skip
                    continue
                if made:
                    log.info("queue %s: %d scheduled jobs enqueued", keys.queue, made)

    async def _layout_changed(self) -> bool:
        worker = self.worker
        try:
            now = await self.transport.run(partitions.layout(worker.queue_names))
        except ServerUnavailable:
            return False
        if now == worker.layout:
            return False
        changed = {name: (worker.layout.get(name), count) for name, count in now.items()
                   if worker.layout.get(name) != count}  # fmt: skip
        log.warning(
            "partitions changed (%s): finishing active jobs, then serving the new partitions",
            ", ".join(f"{n}: {a} -> {b}" for n, (a, b) in changed.items()),
        )
        self.relayout = True
        self.wake.set()
        return True

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop until the worker stops. If it fails, log it with its
        traceback and restart it after a backoff; after ``task_restarts`` failures in a row
        (a loop that ran :data:`~conveyor.defaults.TASK_HEALTHY_AFTER` seconds starts the
        count over), stop the worker: it must never heartbeat without working."""
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                await loop()
                return
            except Exception as exc:
                if time.monotonic() - started >= defaults.TASK_HEALTHY_AFTER:
                    failures = 0
                failures += 1
                if failures > self.options.task_restarts:
                    log.critical("the %s failed %d times in a row; stopping the worker",
                                 name, failures, exc_info=True)  # fmt: skip
                    self.failed(f"its {name} kept failing: {type(exc).__name__}: {exc}")
                    return
                pause = min(defaults.TASK_RESTART_PAUSE_MAX,
                            defaults.TASK_RESTART_PAUSE * 2 ** (failures - 1))  # fmt: skip
                log.error("the %s failed; restarting it in %.0fs", name, pause, exc_info=True)
            if await self._stopped_within(pause):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the worker is stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _recover_stalled(self, keys: QueueKeys) -> None:
        self._recoveries += 1
        call = calls.recover_stalled(
            keys, self.worker.queue_options, 100, self.worker.id,
            f"{self.worker.id}.r{self._recoveries}", round(self.options.lock_ttl * 1000),
        )  # fmt: skip
        (reply,) = await self.transport.execute([call])
        for claim in calls.parse_recovered(keys.queue, reply):
            log.warning("job %s stalled on worker %s", claim.id, claim.previous_worker)
            stalled = invalid_job(claim) or Outcome(
                False, cause=AttemptCause.STALLED, error=_StalledError(claim)
            )
            try:
                await self.settler.fail(claim, stalled)
            except ServerUnavailable:
                raise
            except Exception:  # one job that cannot be settled must not stop the others
                log.exception("could not settle stalled job %s", claim.id)

    # --- start and stop ---------------------------------------------------------------

    async def _register(self) -> None:
        await asyncio.to_thread(self.locks.renew_once)

    async def _unregister(self) -> None:
        commands: list[ops.Call] = []
        for keys in self.worker.queues:
            commands.append(Command(("HDEL", keys.key("worker_info"), self.worker.id)))
            commands.append(Command(("ZREM", keys.key("workers"), self.worker.id)))
        await self.transport.execute(commands)

    async def run(self) -> None:
        """Serve until ``wake`` is set, then shut down."""
        await self._register()
        self.locks.start()
        if self.processes is not None:
            self.processes.start()
        fetchers = [
            Fetcher(self.shared, keys, self.slots, self.in_flight, self.jobs)
            for keys in self.worker.queues
        ]
        loops = [(f"fetcher of {f.keys.queue}", f.run) for f in fetchers]
        loops += [("stall recovery", self._maintain), ("schedule firer", self._fire_schedules)]
        background = [asyncio.create_task(self._supervised(*loop)) for loop in loops]
        log.info(
            "worker %s serving %s (concurrency %d)",
            self.worker.id,
            ", ".join(k.queue for k in self.worker.queues),
            self.options.concurrency,
        )
        try:
            await self.wake.wait()
        finally:
            self.stopping.set()
            for task in background:
                task.cancel()
            # The loops also watch `stopping`, so they end even if a cancellation is lost.
            await asyncio.wait(background, timeout=self.options.idle_block + 5)
            await self._shutdown()

    async def _shutdown(self) -> None:
        wake = self.wake
        if self.jobs.tasks and not self.now.is_set():
            pending: set[asyncio.Future[Any]] = set(self.jobs.tasks)
            deadline = time.monotonic() + self.options.shutdown_grace
            while pending and not self.now.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                _done, pending = await asyncio.wait(
                    pending | {waiter}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                pending.discard(waiter)
        await self.jobs.cancel_all()
        if self.processes is not None:  # before the hand-back: no child still runs a job
            await self.processes.close()
        await self.reporter.flush()
        await self.settler.flush()
        await self.jobs.hand_back()
        await asyncio.to_thread(self.locks.stop)  # joins the thread: not on the event loop
        try:
            await self._unregister()
        except ServerUnavailable as exc:
            log.warning("could not unregister the worker: %s", exc)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker %s stopped (%d completed, %d failed)", self.worker.id,
                 self.settler.completed, self.settler.failed)  # fmt: skip


def handler_threads_left(wait: float = 0.5) -> int:
    """Handler threads still running, after idle ones had ``wait`` seconds to end."""
    deadline = time.monotonic() + wait
    left = 0
    for thread in threading.enumerate():
        if thread.name.startswith(THREAD_NAME):
            thread.join(max(0.0, deadline - time.monotonic()))
            left += thread.is_alive()
    return left


class _StalledError(Exception):
    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"the lock of attempt {claim.attempt} expired on worker {claim.previous_worker} "
            "(it died, hung or lost its connection)"
        )
