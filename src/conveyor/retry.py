"""Retry decisions: backoff policies and the retry-or-dead rule, as pure functions.

The worker asks :func:`decide` what to do with a failed attempt; the ``fail`` script only
applies the answer. Nothing here talks to Redis, so every rule is testable on its own.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from conveyor import defaults, validate
from conveyor.errors import PermanentError, RetryLater
from conveyor.job import AttemptCause, DeadReason


class Immediate(msgspec.Struct, frozen=True, tag="immediate"):
    """Retry at once."""

    def delay(self, attempt: int) -> float:
        return 0.0


class Fixed(msgspec.Struct, frozen=True, tag="fixed"):
    """Retry after the same delay every time (seconds), optionally with +/- jitter.

    Both are durations from 0 to :data:`~conveyor.defaults.MAX_SECONDS` (checked here, so
    a stored backoff always gives a delay).
    """

    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        validate.seconds(self.seconds, "Fixed.seconds")
        validate.seconds(self.jitter, "Fixed.jitter")

    def delay(self, attempt: int) -> float:
        return _jittered(self.seconds, self.jitter)


class Exponential(msgspec.Struct, frozen=True, tag="exponential"):
    """Retry after ``base * factor ** (attempt - 1)`` seconds, at most ``cap``.

    ``jitter`` is the fraction of the delay that is randomised (0.0 to 1.0): with the
    default 0.5 the delay is uniformly drawn from [50%, 100%] of the computed value, which
    spreads retries of jobs that failed together. ``base`` and ``cap`` are durations (0 to
    :data:`~conveyor.defaults.MAX_SECONDS`), ``factor`` is 1 to
    :data:`~conveyor.defaults.MAX_BACKOFF_FACTOR`.
    """

    base: float = defaults.BACKOFF_BASE
    factor: float = defaults.BACKOFF_FACTOR
    cap: float = defaults.BACKOFF_CAP
    jitter: float = 0.5

    def __post_init__(self) -> None:
        validate.seconds(self.base, "Exponential.base")
        validate.number(self.factor, "Exponential.factor", 1.0, defaults.MAX_BACKOFF_FACTOR)
        validate.seconds(self.cap, "Exponential.cap")
        validate.number(self.jitter, "Exponential.jitter", 0.0, 1.0)

    def delay(self, attempt: int) -> float:
        try:
            raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:  # factor ** attempt is past any float: far beyond the cap
            raw = self.cap
        if not self.jitter:
            return raw
        return raw * (1.0 - self.jitter * random.random())


def _jittered(seconds: float, jitter: float) -> float:
    if not jitter:
        return seconds
    return max(0.0, seconds + random.uniform(-jitter, jitter))


#: A backoff that can be stored with a job (JSON), set at enqueue or as a handler default.
Backoff = Immediate | Fixed | Exponential
#: A handler-level backoff may also be a callable ``(attempt, error, job) -> seconds | None``;
#: ``None`` means give up (the job goes to the dead-letter set).
BackoffFunction = Callable[[int, BaseException | None, Any], "float | None"]

DEFAULT_BACKOFF: Backoff = Exponential()


def backoff_from_json(data: Any) -> Backoff | None:
    """Read a stored backoff spec (a dict), or ``None`` when there is none."""
    if not data:
        return None
    policy: Backoff = msgspec.convert(data, Backoff)
    return policy


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
