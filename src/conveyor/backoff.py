"""Backoff policies: how long to wait before the next attempt, storable with a job as JSON.

Apart from :mod:`conveyor.retry` (which decides *whether* to retry) so that reading a stored
job's options (:mod:`conveyor.stored`) needs no job types, and no import loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgspec

from conveyor import defaults, validate


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
