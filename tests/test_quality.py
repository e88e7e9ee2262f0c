"""The code stays typed and linted: mypy --strict and ruff run as part of the suite; and the
suite cannot pass in CI by skipping what it could not run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


@pytest.mark.timeout(300)
def test_mypy_strict_is_clean() -> None:
    done = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_ruff_is_clean() -> None:
    names = ("src", "tests", "tools", "bench", "examples", "scripts")
    folders = [name for name in names if (ROOT / name).is_dir()]
    done = subprocess.run(
        [_tool("ruff"), "check", *folders],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_browser_tests_fail_in_ci_when_chromium_is_missing(ci: str, outcome: str) -> None:
    env = {**os.environ, "CI": ci, "CONVEYOR_TEST_CHROMIUM": "/nonexistent/chromium"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/dashboard/test_browser.py::test_pause_and_resume"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert outcome in done.stdout, done.stdout + done.stderr
    assert "the browser tests need Debian's chromium" in done.stdout
