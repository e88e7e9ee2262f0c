"""Runs one claimed job's handler and reports the outcome; never raises for the job's faults.

``async def`` handlers run on the event loop and are cancelled at their timeout. Plain
``def`` handlers run in a thread pool; a thread cannot be killed, so at the timeout the
attempt is reported as timed out while the thread's slot stays busy until it returns.
Handlers marked ``process`` run in a child process (:mod:`conveyor.worker.processes`),
which is terminated at the timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor import codec, defaults
from conveyor.errors import ConveyorError, PayloadError
from conveyor.job import AttemptCause, ErrorInfo
from conveyor.stored import describe
from conveyor.worker.calls import Claim
from conveyor.worker.context import JobContext
from conveyor.worker.deadlines import Deadline, Deadlines
from conveyor.worker.handlers import Handler
from conveyor.worker.log_context import current_job
from conveyor.worker.reporter import Reporter

if TYPE_CHECKING:
    from conveyor.worker.processes import ProcessPool


@dataclass(slots=True)
class Outcome:
    """How one attempt ended."""

    ok: bool
    result: bytes = b""
    cause: AttemptCause | None = None
    error: BaseException | None = None
    traceback: str = ""
    #: A timed-out thread still running; its concurrency slot is busy until it finishes.
    straggler: asyncio.Future[Any] | None = None
    duration: float = 0.0
    #: The job was cancelled while it ran: it ends as cancelled, not completed or retried.
    cancelled: bool = False

    def error_info(self) -> ErrorInfo:
        exc = self.error
        message = str(exc) if exc is not None else ""
        return ErrorInfo(
            type=type(exc).__name__ if exc is not None else "Error",
            message=message[: defaults.MAX_ERROR_MESSAGE_CHARS],
            traceback=self.traceback[-defaults.MAX_TRACEBACK_CHARS :],
        )


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
    return _failed(AttemptCause.INVALID_JOB, error, with_traceback=False)


class JobTimeoutError(ConveyorError, TimeoutError):
    """The handler ran longer than the job's timeout."""


def _failed(cause: AttemptCause, exc: BaseException, with_traceback: bool = True) -> Outcome:
    text = "".join(traceback.format_exception(exc)) if with_traceback else ""
    return Outcome(False, cause=cause, error=exc, traceback=text)


def _uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw one cancellation request; how many others are still pending (3.11+)."""
    return task.uncancel() if hasattr(task, "uncancel") else 0


class Runner:
    """Runs handlers for a worker."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        pool: concurrent.futures.ThreadPoolExecutor,
        worker_id: str,
        default_timeout: float,
        max_result_bytes: int = defaults.MAX_RESULT_BYTES,
        reporter: Reporter | None = None,
    ) -> None:
        self.handlers = handlers
        self.pool = pool
        self.worker_id = worker_id
        self.default_timeout = default_timeout
        self.max_result_bytes = max_result_bytes
        self.reporter = reporter
        #: The context and task of each running job, so a cancellation can reach it.
        self.running: dict[tuple[str, str], tuple[JobContext, asyncio.Task[Any] | None]] = {}
        #: Runs handlers marked ``process`` (set by the worker when it has any).
        self.processes: ProcessPool | None = None
        self._deadlines: Deadlines | None = None

    def _deadline(self, task: asyncio.Task[Any], seconds: float) -> Deadline:
        """The job's deadline ``seconds`` from now (see :mod:`.deadlines`)."""
        if self._deadlines is None:
            self._deadlines = Deadlines(task.get_loop())
        return self._deadlines.start(task, seconds)

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
        if running is not None and running[0].cancelled:
            outcome = Outcome(False, cancelled=True)
        outcome.duration = time.monotonic() - started
        return outcome

    def cancel(self, queue: str, job_id: str) -> bool:
        """Stop a running job: cancel an async handler, kill a process handler's child, flag
        a sync one (``ctx.cancelled``)."""
        running = self.running.get((queue, job_id))
        if running is None:
            return False
        context, task = running
        context.cancelled = True
        if task is not None:
            task.cancel()
        return True

    async def _run(self, claim: Claim, task: asyncio.Task[Any]) -> Outcome:
        invalid = invalid_job(claim)
        if invalid is not None:
            return invalid
        handler = self.handlers.get(claim.name)
        if handler is None:
            error = UnknownJobError(f"no handler is registered for job name {claim.name!r}")
            return _failed(AttemptCause.UNKNOWN_JOB, error, with_traceback=False)
        try:
            payload = codec.decode(claim.raw_payload)
        except PayloadError as exc:
            return _failed(AttemptCause.INVALID_PAYLOAD, exc, with_traceback=False)
        context = JobContext(
            claim.id, claim.name, claim.queue, claim.attempt, claim.max_attempts, claim.token,
            self.worker_id, self.reporter,
        )  # fmt: skip
        timeout = claim.timeout or handler.timeout or self.default_timeout
        in_process = bool(handler.process and self.processes is not None)
        # Cancelling the task stops an async handler, or kills a process handler's child.
        self.running[(claim.queue, claim.id)] = (
            context, task if handler.is_async or in_process else None
        )  # fmt: skip
        if in_process:
            assert self.processes is not None
            return await self.processes.run(
                handler, context, claim.raw_payload, timeout, self.max_result_bytes
            )
        if handler.is_async:
            return await self._run_async(handler, context, payload, timeout, task)
        return await self._run_in_thread(handler, context, payload, timeout, task)

    async def _run_async(
        self, handler: Handler, context: JobContext, payload: Any, timeout: float,
        task: asyncio.Task[Any],
    ) -> Outcome:  # fmt: skip
        deadline = self._deadline(task, timeout)
        try:
            try:
                result = await handler.function(context, payload)
            finally:
                timed_out = self._finish(task, deadline)
        except asyncio.CancelledError:
            if timed_out:
                error = JobTimeoutError(f"{handler.name} did not finish within {timeout:g}s")
                return _failed(AttemptCause.TIMEOUT, error, with_traceback=False)
            if not context.cancelled:
                raise  # the worker is shutting down: the job is handed back
            _uncancel(task)
            return Outcome(False, cancelled=True)
        except Exception as exc:
            return _failed(AttemptCause.ERROR, exc)
        return self._encoded(result)

    async def _run_in_thread(
        self, handler: Handler, context: JobContext, payload: Any, timeout: float,
        task: asyncio.Task[Any],
    ) -> Outcome:  # fmt: skip
        loop = asyncio.get_running_loop()
        # The thread gets a copy of this task's context, so its log records name the job.
        run_in_context = contextvars.copy_context().run
        future = loop.run_in_executor(self.pool, run_in_context, handler.function, context, payload)
        deadline = self._deadline(task, timeout)
        try:
            try:
                result = await asyncio.shield(future)
            finally:
                timed_out = self._finish(task, deadline)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            error = JobTimeoutError(
                f"{handler.name} did not finish within {timeout:g}s (its thread keeps running)"
            )
            outcome = _failed(AttemptCause.TIMEOUT, error, with_traceback=False)
            outcome.straggler = future
            return outcome
        except Exception as exc:
            return _failed(AttemptCause.ERROR, exc)
        return self._encoded(result)

    def _encoded(self, result: Any) -> Outcome:
        try:
            return Outcome(True, codec.encode(result, limit=self.max_result_bytes, what="result"))
        except PayloadError as exc:
            return _failed(AttemptCause.ERROR, exc, with_traceback=False)
