"""Settles finished attempts: completions are acknowledged in batches, failures one by one.

Completions that finish while an acknowledgement is in flight are sent together in the
next call, so under load one script call acknowledges many jobs. A settlement that cannot
be sent (server away) is kept and retried; if the lock expires meanwhile the job simply
runs again elsewhere (at-least-once).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from conveyor import ops
from conveyor.errors import PayloadError, RateLimited
from conveyor.job import Attempt, AttemptCause, Job
from conveyor.metrics import duration_bucket
from conveyor.retry import Decision, Failure, backoff_from_json, decide
from conveyor.worker import calls
from conveyor.worker.calls import Claim
from conveyor.worker.fetcher import InFlight
from conveyor.worker.held import MISSING
from conveyor.worker.outage import until_reachable
from conveyor.worker.outcome import Outcome
from conveyor.worker.reporter import Reporter
from conveyor.worker.shared import Shared

log = logging.getLogger("conveyor.worker")


@dataclass(slots=True)
class Done:
    """A completed job waiting for its acknowledgement."""

    id: str
    token: str
    result: bytes
    #: Its duration's bucket in the queue's metrics.
    bucket: int


class Settler:
    """Acknowledges and fails jobs for one worker session.

    ``on_dead(job)`` is the worker's hook (sync or async), run when a job dies."""

    def __init__(
        self,
        shared: Shared,
        reporter: Reporter,
        in_flight: InFlight,
        on_dead: Callable[[Job], Any] | None = None,
    ) -> None:
        self.shared = shared
        self.reporter = reporter
        self.in_flight = in_flight
        self.on_dead = on_dead
        self.completed = 0
        self.failed = 0
        self._pending: dict[str, list[Done]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def settle(self, claim: Claim, outcome: Outcome) -> None:
        """Record how the attempt ended: completed, failed, cancelled or rate limited."""
        try:
            if self.reporter.unsettled(claim.queue, claim.id):
                await self.reporter.flush()  # reports land before the ack
            if outcome.cancelled:
                await self.cancelled(claim)
            elif isinstance(outcome.error, RateLimited):
                await self.rate_limited(claim, outcome.error.seconds)
            elif outcome.ok:
                self.complete(claim, outcome.result, outcome.duration)
            else:
                await self.fail(claim, outcome)
        except Exception:  # a bug here must not kill the worker; the lock will expire
            log.exception("could not settle job %s", claim.id)

    def _let_go(self, claim: Claim) -> None:
        """Settled jobs leave the renewal set first; the lock still has its TTL to run."""
        self.shared.held.let_go(claim.queue, claim.id, claim.token)

    def complete(self, claim: Claim, result: bytes, duration: float) -> None:
        """Queue an acknowledgement; it is sent with any others that finish meanwhile."""
        done = Done(claim.id, claim.token, result, duration_bucket(duration))
        self._pending.setdefault(claim.queue, []).append(done)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())

    async def flush(self) -> None:
        """Wait until every queued acknowledgement has been sent."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_pending(self) -> None:
        while self._pending:
            await self.in_flight.passed()  # see fetcher.InFlight
            batch, self._pending = self._pending, {}
            for queue, done in batch.items():
                await self._acknowledge(queue, done)

    async def _acknowledge(self, queue: str, done: list[Done]) -> None:
        self.shared.held.let_go_all(queue, done)
        try:
            call = calls.complete(
                self.shared.queues[queue], self.shared.queue_options,
                [(job.id, job.token, job.result, job.bucket) for job in done],
            )  # fmt: skip
            ((refused, missing),) = await until_reachable(
                lambda: self.shared.transport.execute([call]), self.shared.outage,
                "acknowledge %d jobs", len(done),
            )  # fmt: skip
        except Exception:  # never a flusher that dies silently with the batches after
            log.exception("could not acknowledge %d jobs (they run again when their "
                          "locks expire)", len(done))  # fmt: skip
            return
        self.completed += len(done) - len(refused)
        for job_id in refused:
            if job_id in missing:
                log.warning(MISSING + "; its completion was not recorded", job_id.decode())
            else:
                log.warning("job %s finished after its lock was lost; it was not acknowledged",
                            job_id.decode())  # fmt: skip

    async def rate_limited(self, claim: Claim, seconds: float) -> None:
        """Throttle the whole queue and hand this job back without spending an attempt."""
        self._let_go(claim)
        keys = self.shared.queues[claim.queue]
        call = calls.rate_limited(keys, self.shared.queue_options, claim, seconds)
        await until_reachable(lambda: self.shared.transport.execute([call]), self.shared.outage,
                              "hand back job %s", claim.id)  # fmt: skip
        log.warning("queue %s is rate limited for %.1fs (asked by job %s)", claim.queue,
                    seconds, claim.id)  # fmt: skip

    async def cancelled(self, claim: Claim) -> None:
        """Record that a job was stopped because someone cancelled it."""
        self._let_go(claim)
        keys = self.shared.queues[claim.queue]
        call = calls.finish_cancelled(keys, self.shared.queue_options, claim)
        (recorded,) = await until_reachable(
            lambda: self.shared.transport.execute([call]), self.shared.outage,
            "record the cancellation of job %s", claim.id,
        )  # fmt: skip
        if recorded == -1:
            log.warning(MISSING + "; its cancellation was not recorded", claim.id)
        elif not recorded:
            log.warning("job %s was cancelled after its lock was lost; not recorded", claim.id)

    def decision(self, claim: Claim, outcome: Outcome) -> Decision:
        """Retry or bury: the pure rules of :mod:`conveyor.retry`, with this job's settings."""
        handler = self.shared.handlers.get(claim.name)
        backoff = backoff_from_json(claim.options.get("backoff")) or (
            handler.backoff if handler else None
        )
        permanent = (handler.permanent if handler else ()) + (PayloadError,)
        failure = Failure(
            attempt=claim.attempt, max_attempts=claim.max_attempts,
            cause=outcome.cause or AttemptCause.ERROR, error=outcome.error,
            stalls=claim.stalls, max_stalls=self.shared.options.max_stalls,
        )  # fmt: skip
        return decide(failure, backoff, permanent=permanent, job=claim)

    async def fail(self, claim: Claim, outcome: Outcome) -> None:
        """Record a failed attempt and retry or bury the job, as :meth:`decision` says."""
        decision = self.decision(claim, outcome)
        stalled = outcome.cause is AttemptCause.STALLED
        record = Attempt(
            attempt=claim.attempt,
            cause=outcome.cause or AttemptCause.ERROR,
            error=outcome.error_info(),
            worker=claim.previous_worker if stalled else self.shared.worker_id,
            started_at=(claim.previous_started_ms if stalled else claim.started_ms) / 1000,
            # On the server's clock, like started_at: this worker's own clock may be off.
            ended_at=claim.started_ms / 1000 + (0.0 if stalled else outcome.duration),
        )
        self._let_go(claim)
        reason = decision.reason.value if decision.reason else ""
        call = calls.fail(
            self.shared.queues[claim.queue], self.shared.queue_options, claim,
            retry=decision.retry, delay=decision.delay, reason=reason,
            front=decision.front, attempt_record=msgspec.json.encode(record),
            error=msgspec.json.encode(record.error),
        )  # fmt: skip
        (state,) = await until_reachable(
            lambda: self.shared.transport.execute([call]), self.shared.outage,
            "record the failure of job %s", claim.id,
        )  # fmt: skip
        self.failed += 1
        error = record.error
        extra = {"error_type": error.type, "error_message": error.message}
        if state == b"missing":
            log.warning(MISSING + "; its failed attempt was not recorded", claim.id)
        elif state is None:
            log.warning("job %s failed after its lock was lost; not recorded", claim.id)
        elif state == b"dead":
            log.error("job %s (%s) is dead (%s) after attempt %d: %s: %s", claim.id, claim.name,
                      reason, claim.attempt, error.type, error.message, extra=extra)  # fmt: skip
            await self._on_dead(claim)
        elif decision.front:
            log.info("job %s (%s) failed attempt %d (%s), retrying now, ahead of the queue",
                     claim.id, claim.name, claim.attempt, record.cause.value)  # fmt: skip
        else:
            log.info("job %s (%s) failed attempt %d (%s: %s: %s), retrying in %.1fs", claim.id,
                     claim.name, claim.attempt, record.cause.value, error.type, error.message,
                     decision.delay, extra=extra)  # fmt: skip

    async def _on_dead(self, claim: Claim) -> None:
        hook = self.on_dead
        if hook is None:
            return
        try:
            keys = self.shared.queues[claim.queue]
            job = await self.shared.transport.run(ops.get_job(keys, claim.id))
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
