"""The worker process: fetch, run, settle, keep locks, recover stalled jobs, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio

from conveyor import connection, defaults, dlq_ops, ops, partitions, schedules
from conveyor.errors import (
    RateLimited,
    ServerUnavailable,
    UnsafeServerError,
    WorkerFailedError,
    WorkerStuckError,
)
from conveyor.health import server_safety
from conveyor.job import AttemptCause, Job
from conveyor.keys import QueueKeys
from conveyor.ops import Command, QueueOptions
from conveyor.retry import Backoff, BackoffFunction
from conveyor.transport import AsyncTransport
from conveyor.worker import calls, settler
from conveyor.worker.calls import Claim
from conveyor.worker.fetcher import Fetcher, InFlight
from conveyor.worker.handlers import Handler, HandlerFunction, check_process_handler, make_handler
from conveyor.worker.locks import LockKeeper
from conveyor.worker.options import WorkerOptions
from conveyor.worker.outcome import Outcome
from conveyor.worker.processes import ProcessPool
from conveyor.worker.reporter import Reporter
from conveyor.worker.runner import Runner, invalid_job
from conveyor.worker.settler import Settler
from conveyor.worker.slots import Slots
from conveyor.worker.threads import HandlerThreads

log = logging.getLogger("conveyor.worker")


class Worker:
    """Runs the jobs of one or more queues.

    Register handlers with :meth:`handler` (a decorator) or pass ``handlers``: a mapping of
    job name to function, or an iterable of functions (named after themselves). Start it
    with :meth:`run` (blocking, handles SIGTERM/SIGINT) or ``await worker.serve()``.
    ``on_dead(job)`` (sync or async) runs when a job dies, e.g. to alert; if it fails, the
    error is logged and the job stays in the dead-letter set.
    """

    def __init__(
        self,
        queues: str | Sequence[str],
        *,
        handlers: Mapping[str, HandlerFunction] | Iterable[HandlerFunction | Handler] = (),
        url: str | None = None,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None,
        options: WorkerOptions | None = None,
        queue_options: QueueOptions | None = None,
        on_dead: Callable[[Job], Any] | None = None,
    ) -> None:
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names:
            raise ValueError("a worker needs at least one queue")
        self.queue_names = [QueueKeys(name).queue for name in names]
        #: The queues it serves: a partitioned queue's partitions, found at start.
        self.queues = [QueueKeys(name) for name in names]
        #: Where dead jobs are copied (``queue_options.dead_letter_queue``'s partitions).
        self.dead_letter_targets: list[QueueKeys] = []
        #: Partitions per queue name, as found at start (see :meth:`_lay_out`).
        self.layout: dict[str, int] = {}
        self._relayout = False
        self.url = url
        self.client = client
        self.options = options or WorkerOptions()
        self.queue_options = queue_options or QueueOptions()
        self.on_dead = on_dead
        self.handlers: dict[str, Handler] = {}
        self._registered: dict[str, Handler] = {}  # as given: process= not yet decided
        items = handlers.items() if isinstance(handlers, Mapping) else [(None, h) for h in handlers]
        for name, function in items:
            if not isinstance(function, Handler):
                function = make_handler(function, name)
            self.add_handler(function)
        self.id = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        #: Why the worker stopped itself (a background task kept failing, too many threads
        #: hung), raised by :meth:`serve` once it has stopped.
        self._failure: WorkerFailedError | None = None
        self._signals_handled = False

    # --- registration -----------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Register a handler; a second handler for the same name is an error."""
        if handler.name in self.handlers:
            raise ValueError(f"a handler for {handler.name!r} is already registered")
        self._registered[handler.name] = handler
        if handler.process is None:  # the worker's choice: plain defs, if process_handlers
            process = self.options.process_handlers and not handler.is_async
            if process:
                check_process_handler(handler.function)
            handler = dataclasses.replace(handler, process=process)
        self.handlers[handler.name] = handler

    def registered_handlers(self) -> list[Handler]:
        """The handlers as they were registered, before the worker's options chose which
        run in processes: to build another worker from them with other options."""
        return list(self._registered.values())

    def handler(
        self,
        function: HandlerFunction | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        backoff: Backoff | BackoffFunction | None = None,
        permanent: tuple[type[BaseException], ...] = (),
        process: bool | None = None,
    ) -> Any:
        """Decorator registering ``function(ctx, payload)`` as the handler of job ``name``.

        ``timeout``, ``backoff`` and ``permanent`` (exception types that are never retried)
        are the handler's defaults; a job's own settings at enqueue take precedence.
        ``process=True`` runs a plain ``def`` in a child process, killed at its timeout
        (``None``: as ``WorkerOptions.process_handlers`` says); see docs/processes.md.
        """

        def register(fn: HandlerFunction) -> HandlerFunction:
            self.add_handler(make_handler(fn, name, timeout=timeout, backoff=backoff,
                                          permanent=permanent, process=process))  # fmt: skip
            return fn

        return register(function) if function is not None else register

    # --- running ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (a second signal stops at once).

        Sync handlers still running in threads after the shutdown (their jobs were handed
        back, or they were abandoned at their timeout) cannot be killed; the process exits
        without waiting for them, with status 1 if the worker stopped on an error (such as
        :class:`WorkerFailedError` or :class:`WorkerStuckError`, raised when none is left).
        """
        failure: BaseException | None = None
        try:
            asyncio.run(self.serve(handle_signals=True))
        except BaseException as exc:
            failure = exc
        stuck = _handler_threads_left()
        if stuck:
            log.warning("exiting with %d handler threads still running%s", stuck,
                        f" (exit status 1: {failure})" if failure else "")  # fmt: skip
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1 if failure else 0)
        if failure is not None:
            raise failure

    def stop(self, *, now: bool = False) -> None:
        """Ask the worker to stop (thread-safe). ``now`` skips the grace period."""
        self._stop_requested.set()
        if now:
            self._force.set()
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _failed(self, why: str) -> None:
        """Stop the worker (thread-safe) because a background task kept failing:
        :meth:`serve` then raises :class:`WorkerFailedError`."""
        self._fail(WorkerFailedError(f"worker {self.id} stopped: {why}"))

    def _fail(self, failure: WorkerFailedError) -> None:
        """Stop gracefully (thread-safe), then make :meth:`serve` raise ``failure``."""
        if self._failure is None:
            self._failure = failure
            log.error("%s", failure)
        self.stop()

    def _on_signal(self) -> None:
        if self._stop_requested.is_set():
            log.warning("second signal: stopping now, handing back active jobs")
            self.stop(now=True)
        else:
            log.info("stopping: finishing active jobs (grace %.0fs)", self.options.shutdown_grace)
            self.stop()

    def _handle_signals(self, on: bool) -> None:
        """Handle SIGTERM/SIGINT (``on``), or stop handling them if this worker did."""
        assert self._loop is not None
        if on == self._signals_handled:
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            if on:
                self._loop.add_signal_handler(sig, self._on_signal)
            else:
                self._loop.remove_signal_handler(sig)
        self._signals_handled = on

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Run until :meth:`stop` is called."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stop_requested.is_set():
            self._wake.set()
        # Before connecting: a signal also ends the wait for an unreachable server.
        self._handle_signals(handle_signals)
        connected = None
        try:
            connected = await self._connect()
        finally:
            if connected is None:
                self._handle_signals(False)
        if connected is None:
            log.info("worker %s stopped before the server was reachable", self.id)
            return
        url, transport = connected
        try:
            while True:
                await _Session(self, url, transport).run(self._wake)
                if not self._relayout or self._failure is not None:
                    break
                # A queue was partitioned after the session started: serve its partitions.
                self._relayout = False
                self._wake.clear()
                if self._stop_requested.is_set() or not await self._lay_out_again(transport):
                    break
        finally:
            self._handle_signals(False)
            if self.client is None:
                await transport.close()
        if self._failure is not None:
            raise self._failure

    async def _connect(self) -> tuple[str, AsyncTransport] | None:
        """Reach the server and check it; ``None`` if the worker was stopped meanwhile."""
        if self.client is not None:
            url = connection.client_url(self.client)
            transport = AsyncTransport(self.client, url)
        else:
            url = await asyncio.to_thread(connection.resolve_url, self.url)
            transport = AsyncTransport(connection.async_client(url), url)
        reached = False
        try:
            reached = await self._wait_for_server(url, transport)
        finally:
            if not reached and self.client is None:
                await transport.close()
        return (url, transport) if reached else None

    async def _wait_for_server(self, url: str, transport: AsyncTransport) -> bool:
        """:meth:`_check_server`, retried with backoff while the server is unreachable:
        for ever, or ``startup_timeout`` seconds. False if the worker is stopped first."""
        limit = self.options.startup_timeout
        deadline = None if limit is None else time.monotonic() + limit
        pause, waited = 0.1, False
        while not self._stop_requested.is_set():
            try:
                await self._check_server(url, transport)
            except ServerUnavailable as exc:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ServerUnavailable(
                        f"{exc}; gave up after waiting {limit:g}s (startup_timeout)"
                    ) from None
                if not waited:
                    waited = True
                    until = "until it answers" if limit is None else f"up to {limit:g}s"
                    log.warning("%s; waiting %s before starting", exc, until)
                pause = min(defaults.RECONNECT_BACKOFF_MAX, pause * 2)
                seconds = pause * (0.5 + random.random() / 2)
                assert self._wake is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), seconds if left is None else min(seconds, left)
                    )
                continue
            if waited:
                log.warning("the server at %s is reachable: starting", connection.redact(url))
            return True
        return False

    async def _check_server(self, url: str, transport: AsyncTransport) -> None:
        safety = await transport.run(server_safety())
        for problem in safety.problems():
            log.warning("server at %s: %s", connection.redact(url), problem)
        if safety.may_evict and not self.options.allow_unsafe_server:
            raise UnsafeServerError(
                f"refusing to start: {safety.problems()[0]} "
                "(or pass allow_unsafe_server=True / --allow-unsafe-server)"
            )
        for name in self.queue_names:
            await transport.run(ops.register_queue(name))
        await self._lay_out(transport)

    async def _lay_out_again(self, transport: AsyncTransport) -> bool:
        """:meth:`_lay_out`, retried through an outage; False if the worker stops first."""
        while not self._stop_requested.is_set():
            try:
                await self._lay_out(transport)
                return True
            except ServerUnavailable as exc:
                log.warning("cannot read the partitions (%s); retrying", exc)
                await asyncio.sleep(1.0)
        return False

    async def _lay_out(self, transport: AsyncTransport) -> None:
        """Find the partitions of the queues served (and of the dead-letter queue)."""
        self.layout = await transport.run(partitions.layout(self.queue_names))
        self.queues = [
            keys
            for name in self.queue_names
            for keys in partitions.keys_of(name, self.layout[name])
        ]
        target = self.queue_options.dead_letter_queue
        if target:
            await transport.run(ops.register_queue(target))
            self.dead_letter_targets = await transport.run(partitions.parts_of(target))


class _Session:
    """One run of a worker: the collaborators and the tasks that tie them together."""

    def __init__(self, worker: Worker, url: str, transport: AsyncTransport) -> None:
        self.worker = worker
        self.options = worker.options
        self.transport = transport
        self.held: dict[str, dict[str, str]] = {keys.queue: {} for keys in worker.queues}
        self.slots = Slots(self.options.concurrency)
        self.pool = HandlerThreads(self.options.concurrency, _THREAD_NAME)
        queue_settings = {keys.queue: (keys, worker.queue_options) for keys in worker.queues}
        assert worker._loop is not None
        self.loop = worker._loop
        self.reporter = Reporter(worker._loop, transport, queue_settings)
        self.runner = Runner(
            worker.handlers, self.pool, worker.id, worker.queue_options.timeout,
            worker.queue_options.max_result_bytes, self.reporter, self.slots.give,
            self._on_abandoned,
        )  # fmt: skip
        self.processes = ProcessPool.for_handlers(self.options, worker.handlers.values())
        self.runner.processes = self.processes
        self.in_flight = InFlight()
        self.settler = Settler(
            transport, queue_settings, self.held, worker.handlers, worker.id,
            self.options.max_stalls, self._retry_pause, self._on_dead, self.in_flight.passed,
        )  # fmt: skip
        self.locks = LockKeeper(url, worker.queues, self.held, worker.id, self.options,
                                self._on_lost_threadsafe, self._describe,
                                self._on_cancel_threadsafe, worker._failed)  # fmt: skip
        self.started_at = time.time()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self._outage_pause = 0.1
        self._recoveries = 0

    def _retry_pause(self) -> float:
        self._outage_pause = min(defaults.RECONNECT_BACKOFF_MAX, self._outage_pause * 2)
        return self._outage_pause * (0.5 + random.random() / 2)

    def _recovered(self) -> None:
        """The server answers again: the next outage starts its backoff from the bottom."""
        self._outage_pause = 0.1

    def _on_lost_threadsafe(self, queue: str, lost: list[tuple[str, str, bool]]) -> None:
        loop = self.worker._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._on_lost, queue, lost)

    def _on_cancel_threadsafe(self, queue: str, job_ids: list[str]) -> None:
        loop = self.worker._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._on_cancel, queue, job_ids)

    def _on_cancel(self, queue: str, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if self.runner.cancel(queue, job_id):
                log.info("job %s was cancelled; stopping it", job_id)

    def _on_lost(self, queue: str, lost: list[tuple[str, str, bool]]) -> None:
        held = self.held[queue]
        for job_id, token, missing in lost:
            # Only if this worker still holds that very attempt: the job may have been
            # settled (and even fetched again) since the renewal was sent.
            if held.get(job_id) == token:
                del held[job_id]
                if missing:
                    log.warning(settler.MISSING, job_id)
                else:
                    log.warning("lost the lock of job %s; another worker may run it", job_id)

    async def _on_dead(self, claim: Claim) -> None:
        hook = self.worker.on_dead
        if hook is None:
            return
        try:
            keys = QueueKeys(claim.queue)
            job = await self.transport.run(ops.get_job(keys, claim.id))
            if job is None:
                return
            result = (
                hook(job)
                if inspect.iscoroutinefunction(hook)
                else await asyncio.to_thread(hook, job)
            )
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the on_dead hook failed for job %s (the job is safe in the DLQ)",
                          claim.id)  # fmt: skip

    def dispatch(self, claim: Claim) -> None:
        self.held[claim.queue][claim.id] = claim.token
        self.tasks.add(self.loop.create_task(self._process(claim)))

    async def _process(self, claim: Claim) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            try:
                outcome = await self.runner.run(claim, task)
            except Exception:  # a bug, not the job's fault: never a silently lost slot
                log.exception("could not run job %s; it runs again when its lock expires",
                              claim.id)  # fmt: skip
                self.slots.give()
                if self.held[claim.queue].get(claim.id) == claim.token:
                    del self.held[claim.queue][claim.id]
                return
            if not outcome.slot_freed:  # else given back at its timeout
                self.slots.give()
            await self._settle(claim, outcome)
        finally:
            # Here rather than in a done callback: one callback less on the loop per job.
            self.tasks.discard(task)

    def _on_abandoned(self, count: int) -> None:
        limit = self.options.max_abandoned_threads
        if count > limit:
            self.worker._fail(WorkerStuckError(
                f"{count} handler threads are stuck past their timeout (limit {limit}, "
                "max_abandoned_threads): stopping so that a supervisor restarts the worker; "
                "run hung code in process handlers, which are killed at their timeout"
            ))  # fmt: skip

    async def _settle(self, claim: Claim, outcome: Outcome) -> None:
        try:
            if self.reporter.unsettled(claim.queue, claim.id):
                await self.reporter.flush()  # reports land before the ack
            if outcome.cancelled:
                await self.settler.cancelled(claim)
            elif isinstance(outcome.error, RateLimited):
                await self.settler.rate_limited(claim, outcome.error.seconds)
            elif outcome.ok:
                self.settler.complete(claim, outcome.result, outcome.duration)
            else:
                await self.settler.fail(claim, outcome)
        except Exception:  # a bug here must not kill the worker; the lock will expire
            log.exception("could not settle job %s", claim.id)

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
        worker._relayout = True
        if worker._wake is not None:
            worker._wake.set()
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
                    self.worker._failed(f"its {name} kept failing: {type(exc).__name__}: {exc}")
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

    def _describe(self) -> bytes:
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

    async def _register(self) -> None:
        await asyncio.to_thread(self.locks.renew_once)

    async def _unregister(self) -> None:
        commands: list[ops.Call] = []
        for keys in self.worker.queues:
            commands.append(Command(("HDEL", keys.key("worker_info"), self.worker.id)))
            commands.append(Command(("ZREM", keys.key("workers"), self.worker.id)))
        await self.transport.execute(commands)

    async def run(self, wake: asyncio.Event) -> None:
        await self._register()
        self.locks.start()
        if self.processes is not None:
            self.processes.start()
        fetchers = [
            Fetcher(self.transport, keys, self.worker.queue_options, self.options,
                    self.worker.id, self.slots, self.dispatch, self._retry_pause, self.stopping,
                    self._recovered, self.in_flight, list(self.worker.handlers))
            for keys in self.worker.queues
        ]  # fmt: skip
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
            await wake.wait()
        finally:
            self.stopping.set()
            for task in background:
                task.cancel()
            # The loops also watch `stopping`, so they end even if a cancellation is lost.
            await asyncio.wait(background, timeout=self.options.idle_block + 5)
            await self._shutdown(wake)

    async def _shutdown(self, wake: asyncio.Event) -> None:
        if self.tasks and not self.worker._force.is_set():
            pending: set[asyncio.Future[Any]] = set(self.tasks)
            deadline = time.monotonic() + self.options.shutdown_grace
            while pending and not self.worker._force.is_set():
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
        await self._cancel_jobs()
        if self.processes is not None:  # before the hand-back: no child still runs a job
            await self.processes.close()
        await self.reporter.flush()
        await self.settler.flush()
        await self._hand_back()
        await asyncio.to_thread(self.locks.stop)  # joins the thread: not on the event loop
        try:
            await self._unregister()
        except ServerUnavailable as exc:
            log.warning("could not unregister the worker: %s", exc)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker %s stopped (%d completed, %d failed)", self.worker.id,
                 self.settler.completed, self.settler.failed)  # fmt: skip

    async def _cancel_jobs(self) -> None:
        """Cancel the jobs still running; hand back (below) those whose handler ignores it."""
        if not self.tasks:
            return
        for task in self.tasks:
            task.cancel()
        _done, stuck = await asyncio.wait(set(self.tasks), timeout=defaults.SHUTDOWN_CANCEL_WAIT)
        if stuck:
            log.warning(
                "%d handlers did not stop within %.0fs of their cancellation; handing their "
                "jobs back anyway (the process may not exit until they return)",
                len(stuck), defaults.SHUTDOWN_CANCEL_WAIT,
            )  # fmt: skip

    async def _hand_back(self) -> None:
        calls_ = [
            calls.release(keys, self.worker.queue_options, self.held[keys.queue].items())
            for keys in self.worker.queues
            if self.held[keys.queue]
        ]
        if not calls_:
            return
        try:
            replies = await self.transport.execute(calls_)
            log.info("handed back %d active jobs", sum(int(r) for r in replies))
        except ServerUnavailable as exc:
            log.warning("could not hand back active jobs (they return when their locks "
                        "expire): %s", exc)  # fmt: skip


_THREAD_NAME = "conveyor-job"


def _handler_threads_left(wait: float = 0.5) -> int:
    """Handler threads still running, after idle ones had ``wait`` seconds to end."""
    deadline = time.monotonic() + wait
    left = 0
    for thread in threading.enumerate():
        if thread.name.startswith(_THREAD_NAME):
            thread.join(max(0.0, deadline - time.monotonic()))
            left += thread.is_alive()
    return left


class _StalledError(Exception):
    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"the lock of attempt {claim.attempt} expired on worker {claim.previous_worker} "
            "(it died, hung or lost its connection)"
        )
