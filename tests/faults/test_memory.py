"""A slow consumer under retention settings: 20k jobs flow, and the server's memory, the
finished sets and the events stream stay bounded.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import PrivateServer, Workers
from tests.faults.server_scenarios import bounded_memory

pytestmark = pytest.mark.faults


@pytest.mark.timeout(150)
async def test_memory_stays_bounded_while_20k_jobs_flow(
    private_server: PrivateServer, private_workers: Workers
) -> None:
    report = await bounded_memory(private_server, private_workers, jobs=20_000)
    print(report.line())
    assert report.violations == []
    assert (report.lost, report.duplicated) == (0, 0)
