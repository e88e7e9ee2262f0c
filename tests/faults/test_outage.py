"""The server is unreachable for 5 s, then 30 s, while producers enqueue and workers run:
producers get ServerUnavailable, workers survive and resume by themselves, nothing is lost.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import PrivateServer, Workers
from tests.faults.server_scenarios import server_outage

pytestmark = pytest.mark.faults


@pytest.mark.timeout(180)
async def test_workers_and_producers_ride_out_a_5s_then_a_30s_outage(
    private_server: PrivateServer, private_workers: Workers
) -> None:
    report = await server_outage(private_server, private_workers, downtimes=(5.0, 30.0))
    print(report.line())
    assert report.violations == []
    assert report.lost == 0
    # Workers back off at most RECONNECT_BACKOFF_MAX (5 s) between attempts.
    assert report.recovery is not None and report.recovery < 15.0
