"""``conveyor dashboard``: refuses unsafe binds, and serves the app with uvicorn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from conveyor.cli.dashboard import dashboard


def test_refuses_a_public_address_without_auth() -> None:
    result = CliRunner().invoke(dashboard, ["--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without authentication" in result.output
    bad = CliRunner().invoke(dashboard, ["--basic-auth", "nopassword"])
    assert bad.exit_code == 2 and "USER:PASSWORD" in bad.output
    queue = CliRunner().invoke(dashboard, ["-q", "bad name!"])
    assert queue.exit_code == 2 and "invalid queue name" in queue.output


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(60)
def test_serves_the_dashboard(server_url: str) -> None:
    code = "from conveyor.cli.dashboard import dashboard; dashboard()"
    env = {**os.environ, "CONVEYOR_DASHBOARD_TOKEN": "t0ken"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--url", server_url, "--port", "0", "--read-only"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        assert "token or basic auth required, read-only" in line
        assert _get(f"{base}/api/queues") == 401
        assert _get(f"{base}/api/queues", token="t0ken") == 200
        assert _get(f"{base}/static/dashboard.css") == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr is not None:
            process.stderr.close()
