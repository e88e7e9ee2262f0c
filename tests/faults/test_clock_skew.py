"""Clock skew: workers whose clocks are 30 s ahead or behind steal no live lock and start
no delayed job early, since every deadline is measured on the server's clock.
"""

from __future__ import annotations

import pytest

import conveyor
from tests.faults.harness import Workers
from tests.faults.worker_scenarios import clock_skew

pytestmark = pytest.mark.faults


@pytest.mark.timeout(120)
async def test_skewed_worker_clocks_steal_no_lock_and_run_no_delayed_job_early(
    queue: conveyor.Queue, workers: Workers
) -> None:
    report = await clock_skew(queue, workers, offsets=(30.0, -30.0))
    print(report.line())
    assert report.violations == []
    assert (report.lost, report.duplicated) == (0, 0)
