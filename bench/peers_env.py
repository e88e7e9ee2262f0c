"""The peers' virtual environments, created on first use under ``bench/.venv-peers/``.

The peer libraries are never Conveyor dependencies. Each gets its own environment
(``bench/.venv-peers/<lib>``) with its latest release, because their pins on redis-py
conflict (arq wants redis < 6, taskiq-redis wants redis >= 8): in one shared environment
pip would quietly pick old versions of some of them.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR / ".venv-peers"

#: pip requirements of each peer adapter (by adapter module name).
REQUIREMENTS: dict[str, list[str]] = {
    "rq": ["rq"],
    "arq": ["arq"],
    "saq": ["saq", "typing_extensions"],  # saq imports it without declaring it
    "celery": ["celery[redis]"],
    "dramatiq": ["dramatiq[redis]"],
    "huey": ["huey"],
    "taskiq": ["taskiq", "taskiq-redis"],
    "bullmq": ["bullmq"],
    "docket": ["pydocket"],
}
COMMON = ["redis", "hiredis", "psutil"]
INSTALL_TIMEOUT = 900


def venv(module: str) -> Path:
    return ROOT / module


def python(module: str) -> Path:
    return venv(module) / "bin" / "python"


def _marker(module: str) -> Path:
    return venv(module) / ".bench-installed.json"


def _digest(module: str) -> str:
    return hashlib.sha256(json.dumps([COMMON, REQUIREMENTS[module]]).encode()).hexdigest()[:16]


def _installed(module: str) -> bool:
    marker = _marker(module)
    return marker.exists() and json.loads(marker.read_text()) == _digest(module)


def _install(module: str) -> str | None:
    """Create and fill one environment; returns an error message, or None."""
    if _installed(module):
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv(module))],
                       check=True, capture_output=True, timeout=INSTALL_TIMEOUT)  # fmt: skip
        done = subprocess.run(
            [str(python(module)), "-m", "pip", "--disable-pip-version-check", "-q", "install",
             *COMMON, *REQUIREMENTS[module]],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create the environment: {exc}"
    if done.returncode != 0:
        lines = [x for x in done.stderr.splitlines() if not x.startswith("WARNING: Location")]
        return "pip install failed: " + " ".join(lines)[-300:]
    _marker(module).write_text(json.dumps(_digest(module)))
    return None


def ensure(modules: list[str], log: Callable[[str], None] = print) -> dict[str, str]:
    """Make sure every peer's environment exists; returns {module: error} for failures."""
    todo = [m for m in modules if not _installed(m)]
    if todo:
        log(f"installing peers into {ROOT}/<lib> (first run only): {', '.join(todo)} ...")
    failed: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for module, error in zip(todo, pool.map(_install, todo), strict=True):
            if error:
                failed[module] = error
                log(f"  {module}: {error}")
    return failed
