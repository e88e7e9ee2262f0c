"""Backoff policies and the retry-or-dead rule (pure, no server)."""

from __future__ import annotations

import pytest

from conveyor import Exponential, Fixed, Immediate, PermanentError, RetryLater
from conveyor.job import AttemptCause, DeadReason
from conveyor.retry import Decision, Failure, backoff_from_json, decide


def test_exponential_schedule_without_jitter_doubles_up_to_the_cap() -> None:
    policy = Exponential(base=1.0, factor=2.0, cap=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_exponential_jitter_stays_within_its_band() -> None:
    policy = Exponential(base=4.0, factor=1.0, cap=100.0, jitter=0.5)
    delays = [policy.delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_fixed_and_immediate() -> None:
    assert Fixed(3.0).delay(5) == 3.0
    assert all(2.0 <= Fixed(3.0, jitter=1.0).delay(1) <= 4.0 for _ in range(50))
    assert Immediate().delay(9) == 0.0


def test_backoff_round_trips_through_json() -> None:
    import msgspec

    for policy in (Immediate(), Fixed(2.5), Exponential(base=0.5, cap=30.0, jitter=0.0)):
        assert backoff_from_json(msgspec.to_builtins(policy)) == policy
    assert backoff_from_json(None) is None


def _failure(attempt: int, cause: AttemptCause = AttemptCause.ERROR, **kw: object) -> Failure:
    return Failure(attempt=attempt, max_attempts=3, cause=cause, **kw)  # type: ignore[arg-type]


def test_retries_until_the_budget_is_used_then_dead() -> None:
    policy = Fixed(1.5)
    assert decide(_failure(1, error=ValueError()), policy).retry
    assert decide(_failure(2, error=ValueError()), policy).delay == 1.5
    last = decide(_failure(3, error=ValueError()), policy)
    assert not last.retry and last.reason is DeadReason.ATTEMPTS_EXHAUSTED


def test_timeouts_and_stalls_spend_the_same_budget() -> None:
    for cause in (AttemptCause.TIMEOUT, AttemptCause.STALLED):
        assert decide(_failure(2, cause), Immediate()).retry
        assert decide(_failure(3, cause), Immediate()).reason is DeadReason.ATTEMPTS_EXHAUSTED


def test_a_first_stall_resumes_at_once_ahead_of_the_queue_and_later_ones_back_off() -> None:
    policy = Fixed(7.0)
    first = decide(_failure(1, AttemptCause.STALLED, stalls=1), policy)
    assert first == Decision(True, delay=0.0, front=True)
    again = decide(_failure(2, AttemptCause.STALLED, stalls=2), policy)
    assert again == Decision(True, delay=7.0)  # behind the queue, after the backoff
    # A first stall still costs its attempt: with none left the job is dead.
    last = decide(_failure(3, AttemptCause.STALLED, stalls=1), policy)
    assert not last.retry and last.reason is DeadReason.ATTEMPTS_EXHAUSTED
    # Errors and timeouts never jump the queue.
    assert not decide(_failure(1, AttemptCause.TIMEOUT, stalls=1), policy).front


def test_too_many_stalls_is_its_own_reason() -> None:
    decision = decide(_failure(1, AttemptCause.STALLED, stalls=4, max_stalls=3))
    assert decision.reason is DeadReason.TOO_MANY_STALLS


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (AttemptCause.INVALID_PAYLOAD, DeadReason.INVALID_PAYLOAD),
        (AttemptCause.UNKNOWN_JOB, DeadReason.UNKNOWN_JOB),
    ],
)
def test_bad_input_is_never_retried(cause: AttemptCause, reason: DeadReason) -> None:
    decision = decide(_failure(1, cause))
    assert not decision.retry and decision.reason is reason


def test_permanent_errors_skip_the_remaining_attempts() -> None:
    assert decide(_failure(1, error=PermanentError("bad"))).reason is DeadReason.PERMANENT_ERROR
    decision = decide(_failure(1, error=KeyError("x")), permanent=(KeyError,))
    assert decision.reason is DeadReason.PERMANENT_ERROR


def test_retry_later_sets_the_delay_within_the_budget() -> None:
    assert decide(_failure(1, error=RetryLater(42.0))).delay == 42.0
    assert not decide(_failure(3, error=RetryLater(1.0))).retry


def test_a_backoff_function_can_give_up() -> None:
    def policy(attempt: int, error: BaseException | None, job: object) -> float | None:
        return None if isinstance(error, KeyError) else attempt * 10.0

    assert decide(_failure(2, error=ValueError()), policy).delay == 20.0
    assert decide(_failure(1, error=KeyError()), policy).reason is DeadReason.PERMANENT_ERROR
