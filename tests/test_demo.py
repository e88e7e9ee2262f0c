"""The demo: its workload, and a full run on the test server (jobs flow, retry, die)."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from click.testing import CliRunner
from rich.console import Console

from conveyor import SyncQueue, ops
from conveyor.cli import demo_app, main
from conveyor.connection import sync_client
from conveyor.transport import SyncTransport

pytestmark = pytest.mark.timeout(30)

DEAD_REASONS = {"attempts_exhausted", "permanent_error", "unknown_job"}


@pytest.mark.parametrize("jobs", [6, 40, 101])
def test_workload_has_every_kind_of_job(jobs: int) -> None:
    specs = demo_app.workload(jobs)
    names = Counter(spec.name for spec in specs)
    assert len(specs) == jobs
    assert names["import_contacts"] == names["charge_card"] == names["send_sms"] == 1
    assert min(names["send_welcome_email"], names["make_thumbnail"], names["deliver_webhook"]) >= 1


async def test_demo_run_completes_retries_and_buries(server_url: str) -> None:
    out = io.StringIO()
    summary = await demo_app.run_demo(12, 2, url=server_url, console=Console(file=out, width=100))

    assert summary.finished
    assert summary.total == 12
    assert summary.completed == 12 - demo_app.DEAD_BY_DESIGN
    assert summary.recovered >= 1  # the webhooks that failed once
    assert summary.retried == summary.recovered + 1  # and the poison job
    assert len(summary.dead) == demo_app.DEAD_BY_DESIGN
    assert {job.reason for job in summary.dead} == DEAD_REASONS
    assert summary.seconds < 15
    assert "finished" in out.getvalue()

    transport = SyncTransport(sync_client(server_url), server_url)
    try:
        assert summary.queue not in transport.run(ops.known_queues())
    finally:
        transport.close()
    with SyncQueue(summary.queue, url=server_url) as queue:
        counts = queue.counts()
        assert counts.completed == counts.dead == counts.waiting == 0
        queue.obliterate(force=True)  # counts() registered the name again


def test_demo_command(server_url: str) -> None:
    result = CliRunner().invoke(main, ["demo", "--jobs", "8", "--url", server_url])
    assert result.exit_code == 0, result.output
    assert "5 of 8 jobs" in result.stdout
    for reason in DEAD_REASONS:
        assert reason in result.stdout
