"""Churn: 2,000 jobs through 4 workers while a chaos loop SIGKILLs a random worker every
1-2 s and starts another: every job completes, and only jobs interrupted by a kill run twice.
"""

from __future__ import annotations

import pytest

import conveyor
from tests.faults.harness import LOCK_TTL, STALL_CHECK_INTERVAL, Workers
from tests.faults.worker_scenarios import churn

pytestmark = pytest.mark.faults

#: Room for a loaded machine (the churn jobs retry without backoff).
SLACK = 5.0


@pytest.mark.timeout(180)
async def test_churn_completes_every_job_and_reruns_only_interrupted_ones(
    queue: conveyor.Queue, workers: Workers
) -> None:
    report = await churn(queue, workers, jobs=2_000, chaos_seconds=10.0)
    print(report.line())
    assert report.violations == []
    assert report.lost == 0
    assert report.recovery is not None
    assert report.recovery <= LOCK_TTL + STALL_CHECK_INTERVAL + SLACK
