"""Poison input: garbage payloads, wrong shapes, unknown names, oversized payloads, handlers
that raise, hang or return what JSON cannot hold. One worker process outlives them all, good
jobs beside them are not held up, and each bad job ends dead with the right reason.
"""

from __future__ import annotations

import pytest

import conveyor
from tests.faults.harness import Workers
from tests.faults.worker_scenarios import poison

pytestmark = pytest.mark.faults


@pytest.mark.timeout(120)
async def test_poison_input_ends_dead_with_its_reason_and_the_worker_carries_on(
    queue: conveyor.Queue, workers: Workers
) -> None:
    report = await poison(queue, workers)
    print(report.line())
    assert report.violations == []
    assert (report.lost, report.duplicated) == (0, 0)
