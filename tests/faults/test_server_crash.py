"""The server crashes (SIGKILL) or shuts down without saving, and restarts from its AOF:
no acknowledged durable enqueue is lost, no completed job runs again, workers resume.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import PrivateServer, Workers
from tests.faults.server_scenarios import server_crash

pytestmark = pytest.mark.faults


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["SIGKILL", "SHUTDOWN NOSAVE"])
async def test_server_crash_and_restart_loses_no_durable_job(
    private_server: PrivateServer, private_workers: Workers, how: str
) -> None:
    report = await server_crash(private_server, private_workers, how=how)
    print(report.line())
    assert report.violations == []
    assert report.lost == 0
    assert report.recovery is not None and report.recovery < 15.0
