"""The code stays typed and linted: mypy --strict and ruff run as part of the suite."""

from __future__ import annotations

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
