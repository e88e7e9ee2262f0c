"""Tests of the embedded Valkey server: start, attach, race, persistence, stop and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from conveyor import connection, embedded
from conveyor.cli.server import server
from conveyor.defaults import DATA_DIR_ENV, URL_ENV
from conveyor.embedded import (
    ServerInfo,
    ensure_server,
    server_status,
    socket_path_for,
    stop_server,
)

pytestmark = pytest.mark.timeout(30)


def _stop_for_good(data_dir: Path) -> None:
    """Stop the server of ``data_dir``; kill it if a graceful stop fails."""
    try:
        stop_server(data_dir, timeout=10)
    finally:
        pid_file = data_dir / "valkey.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    _stop_for_good(folder)


@pytest.fixture
def long_data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / ("d" * 60) / ("e" * 60)
    yield folder
    _stop_for_good(folder)


def _client(info: ServerInfo) -> redis.Redis:
    return redis.Redis.from_url(info.url, decode_responses=True)


def test_ensure_server_starts_a_server(data_dir: Path) -> None:
    info = ensure_server(data_dir)

    assert info.running
    assert info.url == f"unix://{data_dir.resolve() / 'valkey.sock'}"
    with _client(info) as client:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    status = server_status(data_dir)
    assert status.running
    assert status.pid is not None and status.pid == info.pid
    assert status.aof_enabled is True
    assert status.version and status.used_memory_human
    assert (data_dir.stat().st_mode & 0o777) == 0o700


def test_second_ensure_server_attaches(data_dir: Path) -> None:
    first = ensure_server(data_dir)
    second = ensure_server(data_dir)

    assert second.running
    assert second.pid == first.pid


def test_concurrent_starts_make_one_server(data_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from conveyor.embedded import ensure_server; "
        "print(ensure_server(Path(sys.argv[1])).pid)"
    )
    src = str(Path(embedded.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=20) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    pids = {int(out.strip()) for out, _ in outputs}
    assert len(pids) == 1
    (pid,) = pids
    assert int((data_dir / "valkey.pid").read_text()) == pid
    os.kill(pid, 0)  # alive
    assert (data_dir / "valkey.log").read_text().count("Valkey is starting") == 1


def test_data_survives_stop_and_start(data_dir: Path) -> None:
    info = ensure_server(data_dir)
    with _client(info) as client:
        client.set("conveyor-test:key", "kept")

    assert stop_server(data_dir) is True
    assert not server_status(data_dir).running

    again = ensure_server(data_dir)
    assert again.pid != info.pid
    with _client(again) as client:
        assert client.get("conveyor-test:key") == "kept"


def test_stop_without_a_server(data_dir: Path) -> None:
    assert stop_server(data_dir) is False
    status = server_status(data_dir)
    assert not status.running
    assert status.pid is None
    assert status.version is None
    assert not data_dir.exists()  # neither stop nor status creates anything


def test_long_data_dir_uses_a_short_socket(long_data_dir: Path) -> None:
    expected = socket_path_for(long_data_dir.resolve())
    assert expected.parent == Path(f"/tmp/conveyor-{os.getuid()}")
    assert len(os.fsencode(expected)) <= 100

    info = ensure_server(long_data_dir)

    assert info.socket_path == expected
    assert (expected.parent.stat().st_mode & 0o777) == 0o700
    with _client(info) as client:
        assert client.ping()
    assert server_status(long_data_dir).running


def test_cli_start_status_stop(data_dir: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(data_dir)]

    started = runner.invoke(server, ["start", *args])
    assert started.exit_code == 0, started.output
    assert "running" in started.output

    shown = runner.invoke(server, ["status", "--json", *args])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert status["running"] is True
    assert status["aof_enabled"] is True
    assert isinstance(status["pid"], int)
    assert status["data_dir"] == str(data_dir.resolve())

    table = runner.invoke(server, ["status", *args])
    assert table.exit_code == 0, table.output
    assert "running" in table.output

    stopped = runner.invoke(server, ["stop", *args])
    assert stopped.exit_code == 0, stopped.output
    assert "Stopped" in stopped.output

    after = runner.invoke(server, ["status", "--json", *args])
    assert after.exit_code == 1
    assert json.loads(after.output)["running"] is False


# -- a data folder is private to its user ---------------------------------------------------

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a folder to another user (chown, setpriv) needs root"
)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_server_keeps_its_files_private_in_a_folder_made_0755(data_dir: Path) -> None:
    with _umask(0o022):  # the usual default: files 0644, folders 0755
        data_dir.mkdir()
        info = ensure_server(data_dir)
    with _client(info) as client:
        client.set("conveyor-test:secret", "s3cret")
        assert client.bgrewriteaof()

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # tightened
    entries = [data_dir, *data_dir.rglob("*")]
    assert {p.name for p in entries} >= {"valkey.pid", "valkey.log", "valkey.sock", "appendonlydir"}
    shared = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in entries
              if p.lstat().st_mode & 0o077}  # fmt: skip
    assert shared == {}


def test_a_data_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o775)

    with pytest.raises(embedded.EmbeddedServerError, match="group or others can write"):
        ensure_server(folder)
    done = CliRunner().invoke(server, ["start", "--data-dir", str(folder)])

    assert done.exit_code == 1
    assert done.output.count("\n") == 1 and f"chmod go-w {folder}" in done.output
    assert list(folder.iterdir()) == []  # nothing started, nothing written


@needs_root
def test_a_data_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)

    with pytest.raises(embedded.EmbeddedServerError, match=f"belongs to .*uid {NOBODY}"):
        ensure_server(folder)
    for command in ("start", "status", "stop"):
        done = CliRunner().invoke(server, [command, "--data-dir", str(folder)])
        assert done.exit_code == 1 and "not to you" in done.output, (command, done.output)
    assert list(folder.iterdir()) == []


@needs_root
@pytest.mark.parametrize("planted", ["valkey.sock", "valkey.pid"])
def test_a_socket_or_pid_file_of_another_user_is_refused(tmp_path: Path, planted: str) -> None:
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o700)
    path = folder / planted
    if planted.endswith(".sock"):
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
    else:
        path.write_text("1\n")
    os.chown(path, NOBODY, NOBODY)

    with pytest.raises(embedded.EmbeddedServerError, match=f"refusing {path}: it belongs"):
        ensure_server(folder)
    assert not (folder / "valkey.log").exists()  # no server was started


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_a_server_another_user_started_is_not_taken_for_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    top = Path(tempfile.mkdtemp(prefix="conveyor-other-"))
    top.chmod(0o755)  # so that the other user can reach its folder
    folder = top / "data"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    sock = folder / "valkey.sock"
    executable = embedded._executable()
    try:
        subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
             executable, "--daemonize", "yes", "--dir", str(folder), "--port", "0",
             "--unixsocket", str(sock), "--unixsocketperm", "777",
             "--pidfile", str(folder / "valkey.pid"), "--logfile", str(folder / "valkey.log"),
             "--save", "", "--appendonly", "yes"],
            check=True, timeout=20,
        )  # fmt: skip
        assert embedded._poll(lambda: embedded._answers_ping(sock), time.monotonic() + 20)

        done = CliRunner().invoke(server, ["start", "--data-dir", str(folder)])

        assert done.exit_code == 1, done.output
        assert "belongs to" in done.output and "running" not in done.output
        monkeypatch.delenv(URL_ENV, raising=False)  # a producer with no URL: the embedded server
        monkeypatch.setenv(DATA_DIR_ENV, str(folder))
        with pytest.raises(embedded.EmbeddedServerError, match="not to you"):
            connection.resolve_url()
    finally:
        with contextlib.suppress(redis.RedisError, OSError), embedded._client(sock) as client:
            client.shutdown(nosave=True)
        shutil.rmtree(top, ignore_errors=True)
