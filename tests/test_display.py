"""The shared ways of showing values, used alike by the CLI and the dashboard."""

from __future__ import annotations

import importlib

from conveyor import display
from conveyor.dashboard import present


def test_a_duration_is_shown_in_its_largest_whole_unit() -> None:
    shown = [display.duration(s) for s in (None, 0, 5.9, 61, 7200, 90000)]
    assert shown == ["", "0s", "5s", "1m", "2h", "1d"]
    assert display.duration(None, missing="—") == "—"


def test_ago_counts_back_from_now_and_never_goes_negative() -> None:
    assert display.ago(None) == ""
    assert display.ago(1000.0, now=1300.0) == "5m ago"
    assert display.ago(2000.0, now=1000.0) == "0s ago"  # a clock a little ahead


def test_the_cli_and_the_dashboard_use_the_one_formatter() -> None:
    status = importlib.import_module("conveyor.cli.status")  # the module, not the command
    assert status.duration is display.duration
    assert present.ago is display.ago
    assert present.job_builtins is display.job_builtins
