"""Runs one claimed job's handler and reports the outcome; never raises for the job's faults.

``async def`` handlers run on the event loop and are cancelled at their timeout; one that
swallows the cancellation and returns later is still reported as timed out (its result
ignored). Plain ``def`` handlers run in threads (:mod:`conveyor.worker.threads`); a thread
cannot be killed, so at the timeout ``ctx.cancelled`` becomes true, the attempt is reported
as timed out and the thread is abandoned (counted, and replaced in the pool). Either way the
job's concurrency slot is given back at the timeout. Handlers marked ``process`` run in a
child process (:mod:`conveyor.worker.processes`), which is terminated at the timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from conveyor import codec, defaults
from conveyor.errors import ConveyorError, PayloadError
from conveyor.job import AttemptCause
from conveyor.stored import describe
from conveyor.worker.calls import Claim
from conveyor.worker.context import JobContext
from conveyor.worker.deadlines import Deadline, Deadlines
from conveyor.worker.handlers import Handler
from conveyor.worker.log_context import current_job
from conveyor.worker.outcome import JobTimeoutError, Outcome, failed
from conveyor.worker.processes import ProcessPool
from conveyor.worker.reporter import Reporter
from conveyor.worker.threads import HandlerThreads

log = logging.getLogger("conveyor.worker")


class UnknownJobError(ConveyorError):
    """No handler is registered for the job's name."""


class InvalidJobError(ConveyorError):
    """A stored field of the job is missing or malformed; the job cannot be run."""


def invalid_job(claim: Claim) -> Outcome | None:
    """The outcome of a claim whose stored job is malformed (it is buried as
    ``invalid_job``, its fields named), or ``None`` for a well-formed one."""
    if not claim.problems:
        return None
    error = InvalidJobError("the stored job is malformed: " + describe(claim.problems))
    return failed(AttemptCause.INVALID_JOB, error, with_traceback=False)


def _uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw one cancellation request; how many others are still pending (3.11+)."""
    return task.uncancel() if hasattr(task, "uncancel") else 0


class _Running:
    """A job in its handler: what a cancellation, or its deadline, must reach."""

    __slots__ = ("cancelled", "context", "slot_freed", "task", "thread", "timeout")

    def __init__(self, context: JobContext, task: asyncio.Task[Any] | None) -> None:
        self.context = context
        #: Cancelling it stops an async handler, or kills a process handler's child.
        self.task = task
        #: A thread handler's future in the pool, once submitted.
        self.thread: concurrent.futures.Future[Any] | None = None
        self.timeout = 0.0
        #: Cancelled by ``queue.cancel`` (``context.cancelled`` is also set by the timeout).
        self.cancelled = False
        self.slot_freed = False


class Runner:
    """Runs handlers for a worker.

    ``free_slot`` gives one concurrency slot back; the runner calls it at a job's timeout
    (the worker gives the slot back itself when an outcome says it was not freed).
    ``on_abandoned(count)`` is told how many abandoned threads run, after each new one.
    """

    def __init__(
        self,
        handlers: dict[str, Handler],
        pool: HandlerThreads,
        worker_id: str,
        default_timeout: float,
        max_result_bytes: int = defaults.MAX_RESULT_BYTES,
        reporter: Reporter | None = None,
        free_slot: Callable[[], None] | None = None,
        on_abandoned: Callable[[int], None] | None = None,
    ) -> None:
        self.handlers = handlers
        self.pool = pool
        self.worker_id = worker_id
        self.default_timeout = default_timeout
        self.max_result_bytes = max_result_bytes
        self.reporter = reporter
        self.free_slot = free_slot
        self.on_abandoned = on_abandoned
        #: Each running job, so a cancellation can reach it.
        self.running: dict[tuple[str, str], _Running] = {}
        #: Runs handlers marked ``process`` (set by the worker when it has any).
        self.processes: ProcessPool | None = None
        self._deadlines: Deadlines | None = None

    def _deadline(self, task: asyncio.Task[Any], job: _Running) -> Deadline:
        """The job's deadline, its timeout from now (see :mod:`.deadlines`)."""
        if self._deadlines is None:
            self._deadlines = Deadlines(task.get_loop())
        return self._deadlines.start(task, job.timeout, functools.partial(self._expired, job))

    def _expired(self, job: _Running) -> None:
        """At the deadline (the task is cancelled already): tell the handler, abandon its
        thread, give its slot back."""
        context = job.context
        context.cancelled = True  # what a def handler sees; it may stop on its own
        if job.thread is not None and not job.thread.cancel() and self.pool.abandon(job.thread):
            count = self.pool.abandoned
            log.warning(
                "job %s (%s) ran past its %gs timeout: its thread keeps running, abandoned "
                "(%d abandoned threads on this worker; hung code belongs in a process "
                "handler, which is killed at its timeout)",
                context.id, context.name, job.timeout, count,
                extra={"job_id": context.id, "job_name": context.name,
                       "attempt": context.attempt, "queue": context.queue},
            )  # fmt: skip
            if self.on_abandoned is not None:
                self.on_abandoned(count)
        if self.free_slot is not None and not job.slot_freed:
            job.slot_freed = True
            self.free_slot()

    def _finish(self, task: asyncio.Task[Any], deadline: Deadline) -> bool:
        """The handler returned or raised: True if it was cancelled for its deadline alone."""
        assert self._deadlines is not None
        self._deadlines.finish(deadline)
        # Like asyncio.timeout(): our cancellation is withdrawn however the handler ended, and
        # counts as a timeout only if nobody else (a shutdown) cancelled the task too.
        return deadline.expired and _uncancel(task) == 0

    async def run(self, claim: Claim, task: asyncio.Task[Any]) -> Outcome:
        """Run the claim's handler in ``task`` (the current one); every failure becomes an
        :class:`Outcome`."""
        started = time.monotonic()
        current_job.set((claim.id, claim.name, claim.attempt, claim.queue))
        try:
            outcome = await self._run(claim, task)
        finally:
            running = self.running.pop((claim.queue, claim.id), None)
        if running is not None:
            if running.cancelled:
                outcome = Outcome(False, cancelled=True)
            outcome.slot_freed = running.slot_freed
        outcome.duration = time.monotonic() - started
        return outcome

    def cancel(self, queue: str, job_id: str) -> bool:
        """Stop a running job: cancel an async handler, kill a process handler's child, flag
        a sync one (``ctx.cancelled``)."""
        running = self.running.get((queue, job_id))
        if running is None:
            return False
        running.cancelled = running.context.cancelled = True
        if running.task is not None:
            running.task.cancel()
        return True

    async def _run(self, claim: Claim, task: asyncio.Task[Any]) -> Outcome:
        invalid = invalid_job(claim)
        if invalid is not None:
            return invalid
        handler = self.handlers.get(claim.name)
        if handler is None:
            error = UnknownJobError(f"no handler is registered for job name {claim.name!r}")
            return failed(AttemptCause.UNKNOWN_JOB, error, with_traceback=False)
        try:
            payload = codec.decode(claim.raw_payload)
        except PayloadError as exc:
            return failed(AttemptCause.INVALID_PAYLOAD, exc, with_traceback=False)
        context = JobContext(
            claim.id, claim.name, claim.queue, claim.attempt, claim.max_attempts, claim.token,
            self.worker_id, self.reporter,
        )  # fmt: skip
        timeout = claim.timeout or handler.timeout or self.default_timeout
        in_process = bool(handler.process and self.processes is not None)
        job = _Running(context, task if handler.is_async or in_process else None)
        job.timeout = timeout
        self.running[(claim.queue, claim.id)] = job
        if in_process:
            assert self.processes is not None
            return await self.processes.run(
                handler, context, claim.raw_payload, timeout, self.max_result_bytes
            )
        if handler.is_async:
            return await self._run_async(handler, job, payload, task)
        return await self._run_in_thread(handler, job, payload, task)

    async def _run_async(
        self, handler: Handler, job: _Running, payload: Any, task: asyncio.Task[Any]
    ) -> Outcome:
        started = time.monotonic()
        deadline = self._deadline(task, job)
        try:
            try:
                result = await handler.function(job.context, payload)
            finally:
                timed_out = self._finish(task, deadline)
        except asyncio.CancelledError:
            if timed_out:
                error = JobTimeoutError(f"{handler.name} did not finish within {job.timeout:g}s")
                return failed(AttemptCause.TIMEOUT, error, with_traceback=False)
            if not job.cancelled:
                raise  # the worker is shutting down: the job is handed back
            _uncancel(task)
            return Outcome(False, cancelled=True)
        except Exception as exc:
            if not timed_out:
                return failed(AttemptCause.ERROR, exc)
        else:
            if not timed_out:
                return self._encoded(result)
        # It swallowed the cancellation of its timeout and ended later: still a timeout.
        error = JobTimeoutError(
            f"{handler.name} did not finish within {job.timeout:g}s (it ignored its "
            f"cancellation and ended {time.monotonic() - started:.1f}s after it started; "
            "its result is ignored)"
        )
        return failed(AttemptCause.TIMEOUT, error, with_traceback=False)

    async def _run_in_thread(
        self, handler: Handler, job: _Running, payload: Any, task: asyncio.Task[Any]
    ) -> Outcome:
        # The thread gets a copy of this task's context, so its log records name the job.
        run_in_context = contextvars.copy_context().run
        job.thread = self.pool.submit(run_in_context, handler.function, job.context, payload)
        future = asyncio.wrap_future(job.thread)
        deadline = self._deadline(task, job)
        try:
            try:
                result = await asyncio.shield(future)
            finally:
                timed_out = self._finish(task, deadline)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            error = JobTimeoutError(
                f"{handler.name} did not finish within {job.timeout:g}s "
                "(its thread keeps running, abandoned)"
            )
            if job.thread.running():  # abandoned (see _expired): say when it comes back
                started = time.monotonic()
                job.thread.add_done_callback(
                    lambda _: log.info(
                        "the abandoned thread of job %s (%s) returned %.1fs after its timeout",
                        job.context.id, handler.name, time.monotonic() - started,
                    )
                )  # fmt: skip
            return failed(AttemptCause.TIMEOUT, error, with_traceback=False)
        except Exception as exc:
            return failed(AttemptCause.ERROR, exc)
        return self._encoded(result)

    def _encoded(self, result: Any) -> Outcome:
        try:
            return Outcome(True, codec.encode(result, limit=self.max_result_bytes, what="result"))
        except PayloadError as exc:
            return failed(AttemptCause.ERROR, exc, with_traceback=False)
