"""Settles finished attempts: completions are acknowledged in batches, failures one by one.

Completions that finish while an acknowledgement is in flight are sent together in the
next call, so under load one script call acknowledges many jobs. A completion that cannot
be sent (server away) is kept and retried; if the lock expires meanwhile the job simply
runs again elsewhere (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from conveyor.errors import PayloadError, ServerUnavailable
from conveyor.job import Attempt, AttemptCause
from conveyor.keys import QueueKeys
from conveyor.metrics import duration_bucket
from conveyor.ops import QueueOptions
from conveyor.retry import Decision, Failure, backoff_from_json, decide
from conveyor.transport import AsyncTransport
from conveyor.worker import calls
from conveyor.worker.calls import Claim
from conveyor.worker.handlers import Handler
from conveyor.worker.outcome import Outcome

log = logging.getLogger("conveyor.worker")

#: The start of the message for a job whose record vanished under its lock (``%s``: the id).
MISSING = (
    "job %s no longer exists on the server (its data was lost, e.g. by a restart without "
    "persistence, or the queue was obliterated)"
)

#: held[queue][job id] = lock token, for every job this worker holds a lock on.
Held = dict[str, dict[str, str]]


class Settler:
    """Acknowledges and fails jobs for one worker."""

    def __init__(
        self,
        transport: AsyncTransport,
        queues: dict[str, tuple[QueueKeys, QueueOptions]],
        held: Held,
        handlers: dict[str, Handler],
        worker_id: str,
        max_stalls: int,
        retry_pause: Callable[[], float],
        on_dead: Callable[[Claim], Awaitable[None]],
        fetches_passed: Callable[[], Awaitable[None]],
    ) -> None:
        self.transport = transport
        self.queues = queues
        self.held = held
        self.handlers = handlers
        self.worker_id = worker_id
        self.max_stalls = max_stalls
        self.retry_pause = retry_pause
        self.on_dead = on_dead
        self.fetches_passed = fetches_passed
        self.completed = 0
        self.failed = 0
        self._pending: dict[str, list[tuple[str, str, bytes, int]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def complete(self, claim: Claim, result: bytes, duration: float) -> None:
        """Queue an acknowledgement; it is sent with any others that finish meanwhile."""
        done = (claim.id, claim.token, result, duration_bucket(duration))
        self._pending.setdefault(claim.queue, []).append(done)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())

    async def flush(self) -> None:
        """Wait until every queued acknowledgement has been sent."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_pending(self) -> None:
        while self._pending:
            await self.fetches_passed()  # see fetcher.InFlight
            batch, self._pending = self._pending, {}
            for queue, done in batch.items():
                await self._acknowledge(queue, done)

    async def _acknowledge(self, queue: str, done: list[tuple[str, str, bytes, int]]) -> None:
        keys, options = self.queues[queue]
        held = self.held[queue]
        for job_id, token, _, _ in done:
            # Settled jobs leave the renewal set first; the lock still has its TTL to run.
            if held.get(job_id) == token:
                del held[job_id]
        while True:
            try:
                ((refused, missing),) = await self.transport.execute(
                    [calls.complete(keys, options, done)]
                )
                break
            except ServerUnavailable as exc:
                log.warning("could not acknowledge %d jobs, retrying: %s", len(done), exc)
                await asyncio.sleep(self.retry_pause())
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
        held = self.held.get(claim.queue, {})
        if held.get(claim.id) == claim.token:
            del held[claim.id]
        keys, options = self.queues[claim.queue]
        call = calls.rate_limited(keys, options, claim, seconds)
        while True:
            try:
                await self.transport.execute([call])
                break
            except ServerUnavailable as exc:
                log.warning("could not hand back job %s, retrying: %s", claim.id, exc)
                await asyncio.sleep(self.retry_pause())
        log.warning("queue %s is rate limited for %.1fs (asked by job %s)", claim.queue,
                    seconds, claim.id)  # fmt: skip

    async def cancelled(self, claim: Claim) -> None:
        """Record that a job was stopped because someone cancelled it."""
        held = self.held.get(claim.queue, {})
        if held.get(claim.id) == claim.token:
            del held[claim.id]
        keys, options = self.queues[claim.queue]
        call = calls.finish_cancelled(keys, options, claim)
        while True:
            try:
                (recorded,) = await self.transport.execute([call])
                break
            except ServerUnavailable as exc:
                log.warning("could not record the cancellation of job %s, retrying: %s",
                            claim.id, exc)  # fmt: skip
                await asyncio.sleep(self.retry_pause())
        if recorded == -1:
            log.warning(MISSING + "; its cancellation was not recorded", claim.id)
        elif not recorded:
            log.warning("job %s was cancelled after its lock was lost; not recorded", claim.id)

    def decision(self, claim: Claim, outcome: Outcome) -> Decision:
        """Retry or bury: the pure rules of :mod:`conveyor.retry`, with this job's settings."""
        handler = self.handlers.get(claim.name)
        backoff = backoff_from_json(claim.options.get("backoff")) or (
            handler.backoff if handler else None
        )
        permanent = (handler.permanent if handler else ()) + (PayloadError,)
        failure = Failure(
            attempt=claim.attempt, max_attempts=claim.max_attempts,
            cause=outcome.cause or AttemptCause.ERROR, error=outcome.error,
            stalls=claim.stalls, max_stalls=self.max_stalls,
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
            worker=claim.previous_worker if stalled else self.worker_id,
            started_at=(claim.previous_started_ms if stalled else claim.started_ms) / 1000,
            # On the server's clock, like started_at: this worker's own clock may be off.
            ended_at=claim.started_ms / 1000 + (0.0 if stalled else outcome.duration),
        )
        keys, options = self.queues[claim.queue]
        held = self.held.get(claim.queue, {})
        if held.get(claim.id) == claim.token:
            del held[claim.id]
        reason = decision.reason.value if decision.reason else ""
        call = calls.fail(
            keys, options, claim, retry=decision.retry, delay=decision.delay, reason=reason,
            front=decision.front, attempt_record=msgspec.json.encode(record),
            error=msgspec.json.encode(record.error),
        )  # fmt: skip
        while True:
            try:
                (state,) = await self.transport.execute([call])
                break
            except ServerUnavailable as exc:
                log.warning("could not record the failure of job %s, retrying: %s", claim.id, exc)
                await asyncio.sleep(self.retry_pause())
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
            await self.on_dead(claim)
        elif decision.front:
            log.info("job %s (%s) failed attempt %d (%s), retrying now, ahead of the queue",
                     claim.id, claim.name, claim.attempt, record.cause.value)  # fmt: skip
        else:
            log.info("job %s (%s) failed attempt %d (%s: %s: %s), retrying in %.1fs", claim.id,
                     claim.name, claim.attempt, record.cause.value, error.type, error.message,
                     decision.delay, extra=extra)  # fmt: skip
