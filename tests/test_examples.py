"""The programs in examples/ run as written (the README's own code blocks: test_readme.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_quickstart_runs(server_url: str) -> None:
    env = {**os.environ, "CONVEYOR_URL": server_url}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env, capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sent welcome mail to ada@example.com (attempt 1)" in done.stdout
