"""Retry decisions: the retry-or-dead rule as a pure function, over the backoff policies.

The worker asks :func:`decide` what to do with a failed attempt; the ``fail`` script only
applies the answer. Nothing here talks to Redis, so every rule is testable on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from conveyor import defaults
from conveyor.backoff import (
    DEFAULT_BACKOFF,
    Backoff,
    BackoffFunction,
    Exponential,
    Fixed,
    Immediate,
    backoff_from_json,
)
from conveyor.errors import PermanentError, RetryLater
from conveyor.job import AttemptCause, DeadReason

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "BackoffFunction",
    "Decision",
    "Exponential",
    "Failure",
    "Fixed",
    "Immediate",
    "backoff_from_json",
    "decide",
]


@dataclass(frozen=True)
class Decision:
    """What to do with a failed attempt: retry after ``delay`` seconds, or bury it."""

    retry: bool
    delay: float = 0.0
    reason: DeadReason | None = None
    #: Retry at the front of the job's priority, ahead of the jobs waiting (not behind them).
    front: bool = False


@dataclass(frozen=True)
class Failure:
    """The facts of one failed attempt that the decision depends on."""

    attempt: int
    max_attempts: int
    cause: AttemptCause
    error: BaseException | None = None
    stalls: int = 0
    max_stalls: int = defaults.MAX_STALLS


def decide(
    failure: Failure,
    backoff: Backoff | BackoffFunction | None = None,
    *,
    permanent: tuple[type[BaseException], ...] = (),
    job: Any = None,
) -> Decision:
    """Decide whether a failed attempt is retried (and after how long) or goes dead.

    A job's first stall is retried at once at the front of its priority; later stalls back
    off like errors. Every stall still costs its attempt.
    """
    if failure.cause is AttemptCause.INVALID_JOB:
        return Decision(False, reason=DeadReason.INVALID_JOB)
    if failure.cause is AttemptCause.INVALID_PAYLOAD:
        return Decision(False, reason=DeadReason.INVALID_PAYLOAD)
    if failure.cause is AttemptCause.UNKNOWN_JOB:
        return Decision(False, reason=DeadReason.UNKNOWN_JOB)
    error = failure.error
    if isinstance(error, PermanentError) or (permanent and isinstance(error, permanent)):
        return Decision(False, reason=DeadReason.PERMANENT_ERROR)
    if failure.cause is AttemptCause.STALLED and failure.stalls > failure.max_stalls:
        return Decision(False, reason=DeadReason.TOO_MANY_STALLS)
    if failure.attempt >= failure.max_attempts:
        return Decision(False, reason=DeadReason.ATTEMPTS_EXHAUSTED)
    if failure.cause is AttemptCause.STALLED and failure.stalls <= 1:
        # Interrupted work resumes first: its worker died or hung, not the job (as far as we
        # know). A job stalling again backs off below, so one that kills its worker cannot
        # crash-loop a fleet.
        return Decision(True, front=True)
    if isinstance(error, RetryLater):
        return Decision(True, delay=_settled(error.delay))
    policy = backoff if backoff is not None else DEFAULT_BACKOFF
    if callable(policy) and not isinstance(policy, (Immediate, Fixed, Exponential)):
        delay = policy(failure.attempt, error, job)
        if delay is None:
            return Decision(False, reason=DeadReason.PERMANENT_ERROR)
        return Decision(True, delay=_settled(delay))
    return Decision(True, delay=_settled(policy.delay(failure.attempt)))


def _settled(delay: Any) -> float:
    """A delay the ``fail`` script can store: a number of seconds in 0..MAX_SECONDS.

    A handler's ``RetryLater`` or backoff function may hand back anything; NaN counts as 0.
    """
    try:
        seconds = float(delay)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if math.isnan(seconds):
        return 0.0
    return min(max(0.0, seconds), defaults.MAX_SECONDS)
