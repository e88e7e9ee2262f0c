"""The worker: its handlers, reaching the server, signals, and one :mod:`~.session` after
another (a new one when the queues served are re-partitioned)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio

from conveyor import connection, ops, partitions
from conveyor.errors import ServerUnavailable, UnsafeServerError, WorkerFailedError
from conveyor.health import server_safety
from conveyor.job import Job
from conveyor.keys import QueueKeys
from conveyor.ops import QueueOptions
from conveyor.retry import Backoff, BackoffFunction
from conveyor.transport import AsyncTransport
from conveyor.worker.handlers import Handler, HandlerFunction, check_process_handler, make_handler
from conveyor.worker.options import WorkerOptions
from conveyor.worker.outage import Outage
from conveyor.worker.session import Session as _Session  # the name tests patch
from conveyor.worker.session import handler_threads_left

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
        #: hung: see :attr:`Session.failure`), raised by :meth:`serve` once it has stopped.
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
        stuck = handler_threads_left()
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
                session = _Session(self, url, transport, self._wake, self._force)
                await session.run()
                self._failure = session.failure
                if not session.relayout or self._failure is not None:
                    break
                # A queue was partitioned after the session started: serve its partitions.
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
        outage, waited = Outage(), False
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
                seconds = outage.pause()
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
        outage = Outage()
        while not self._stop_requested.is_set():
            try:
                await self._lay_out(transport)
                return True
            except ServerUnavailable as exc:
                log.warning("cannot read the partitions (%s); retrying", exc)
                await asyncio.sleep(outage.pause())
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
