"""Connection quirks in one place: which server to use, how to reach it, how it fails.

With no URL (no argument, no ``CONVEYOR_URL``) Conveyor uses the embedded Valkey server.
Otherwise the URL names one server, a cluster or a Sentinel-watched primary:

- ``redis://[user:password@]host[:port][/db]``, ``unix:///path/to.sock``
- ``rediss://...``: TLS, with ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_cert_reqs`` (``required``/``optional``/``none``) and ``ssl_check_hostname`` in the query
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS):
  the seed nodes of a Redis/Valkey Cluster
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://`` for TLS): the Sentinels watching ``service``; ``sentinel_username``
  and ``sentinel_password`` in the query authenticate to the Sentinels

Every form takes ``wait_for_server=SECONDS`` in the query: a call made while the server is
unreachable waits up to that long for it (default 0: fail after the short retry below).
Reaching a server is retried briefly with backoff; after that a single clear
:class:`~conveyor.ServerUnavailable` names the URL (with any password hidden).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from conveyor import compat, defaults
from conveyor.errors import ConfigurationError, ServerUnavailable

#: Errors that mean the server could not be reached (as opposed to a refused command).
#: ``RedisClusterException`` is what the cluster client raises when no seed node answers.
UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    RedisClusterException,
)

#: Error replies that mean "not now" rather than "no": a primary that just became a replica
#: (``READONLY``), a blocked call cut short by that (``UNBLOCKED``), a server loading its
#: data, a cluster without a majority or in the middle of a slot move.
TRANSIENT_REPLIES = ("READONLY", "UNBLOCKED", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")

log = logging.getLogger("conveyor.connection")

AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_CERT_REQS = ("required", "optional", "none")


@dataclass(frozen=True)
class Target:
    """Where a URL points: one server, a cluster or a Sentinel-watched primary."""

    kind: str  # "server", "cluster" or "sentinel"
    #: For "server": the URL redis-py reads (Conveyor's own options removed).
    server_url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds, or the Sentinels
    service: str = ""  # the Sentinel's name for the primary
    options: dict[str, Any] = field(default_factory=dict)  # connection options
    sentinel_options: dict[str, Any] = field(default_factory=dict)
    wait_for_server: float = 0.0


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``CONVEYOR_URL``, else the embedded server's."""
    if url:
        return url
    from_env = os.environ.get(defaults.URL_ENV)
    if from_env:
        return from_env
    from conveyor.embedded import ensure_server  # started only when it is needed

    return ensure_server().url


def redact(url: str) -> str:
    """``url`` with any password (in the user part or the query) replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        hidden = userinfo.split(":", 1)[0] + ":***"
        url = url.replace(f"//{userinfo}@", f"//{hidden}@", 1)
    if "password" in parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, "***" if "password" in k else v) for k, v in pairs], safe="*")
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}") from None
    if seconds < 0:
        raise ConfigurationError(f"{name} must not be negative")
    return seconds


def _typed(name: str, value: str) -> Any:
    try:
        return compat.url_option(name, value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid value {value!r} for {name} in the URL") from None


def _nodes(hosts: str, url: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigurationError(f"expected host:port items in {redact(url)}, got {item!r}")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def _split_query(query: str) -> tuple[float, list[tuple[str, str]]]:
    """Conveyor's own options (``wait_for_server``) apart from the connection's, checked."""
    pairs = parse_qsl(query, keep_blank_values=True)
    wait = 0.0
    rest = []
    for key, value in pairs:
        if key == "wait_for_server":
            wait = _seconds(key, value)
            continue
        if key == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            raise ConfigurationError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
        rest.append((key, value))
    return wait, rest


def parse_url(url: str) -> Target:
    """Read a Conveyor URL (see the module docstring); raise ConfigurationError if unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    wait, rest = _split_query(parts.query)
    if scheme in ("redis", "rediss", "unix"):
        # Rebuilt by hand: urlunsplit would turn unix:///path into unix:/path.
        server_url = url.partition("?")[0] + (f"?{urlencode(rest)}" if rest else "")
        return Target("server", server_url=server_url, wait_for_server=wait)
    if scheme not in CLUSTER_SCHEMES and scheme not in SENTINEL_SCHEMES:
        raise ConfigurationError(
            f"unsupported URL scheme {parts.scheme!r} in {redact(url)}: use redis://, rediss://, "
            "unix://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
        )
    userinfo, _, hosts = parts.netloc.rpartition("@")
    options: dict[str, Any] = {k: _typed(k, v) for k, v in rest if k not in _SENTINEL_OPTIONS}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    if CLUSTER_SCHEMES.get(scheme) or SENTINEL_SCHEMES.get(scheme):
        options["ssl"] = True
    nodes = _nodes(hosts, url)
    if scheme in CLUSTER_SCHEMES:
        if parts.path.strip("/"):
            raise ConfigurationError(f"a cluster has only database 0: {redact(url)}")
        return Target("cluster", nodes=nodes, options=options, wait_for_server=wait)
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ConfigurationError(f"name the primary's service after the Sentinels: {redact(url)}")
    if db:
        options["db"] = _typed("db", db)
    sentinel_options: dict[str, Any] = {
        k.removeprefix("sentinel_"): v for k, v in rest if k in _SENTINEL_OPTIONS
    }
    for key, value in options.items():
        if key.startswith(("ssl", "socket_")):
            sentinel_options.setdefault(key, value)
    return Target("sentinel", nodes=nodes, service=unquote(service), options=options,
                  sentinel_options=sentinel_options, wait_for_server=wait)  # fmt: skip


def wait_for_server(url: str) -> float:
    """The ``wait_for_server`` seconds a URL asks for (0 when it asks nothing)."""
    try:
        return parse_url(url).wait_for_server
    except ConfigurationError:
        return 0.0


@dataclass
class Outage:
    """Whether an outage of one connection has been logged, so it is logged once."""

    logged: bool = False


class Patience:
    """How long one call still waits for an unreachable server (``wait_for_server``).

    The pauses between tries double up to 2 s. An outage is logged once per ``Outage``
    (one per transport), however many calls wait through it, and so is its end.
    """

    def __init__(self, url: str, outage: Outage | None = None) -> None:
        self.url = url
        self.outage = outage or Outage()
        self.deadline: float | None = None
        self.pause = 0.1

    def next_pause(self, exc: ServerUnavailable) -> float:
        """Seconds to sleep before trying again; re-raises ``exc`` once the wait is over."""
        now = time.monotonic()
        if self.deadline is None:
            seconds = wait_for_server(self.url)  # read here: a call that succeeds never needs it
            if seconds <= 0:
                raise exc
            self.deadline = now + seconds
            if not self.outage.logged:
                self.outage.logged = True
                log.warning("%s; waiting up to %gs for it", exc, seconds)
        left = self.deadline - now
        if left <= 0:
            raise exc
        pause, self.pause = min(self.pause, left), min(self.pause * 2, 2.0)
        return pause

    def recovered(self) -> None:
        """Log the end of the outage, if this call waited through one not yet over."""
        if self.deadline is not None and self.outage.logged:
            self.outage.logged = False
            log.warning("the server at %s is reachable again", redact(self.url))


def _client_kwargs() -> dict[str, Any]:
    return {
        "socket_connect_timeout": defaults.CONNECT_TIMEOUT,
        "socket_timeout": defaults.SOCKET_TIMEOUT,
        "health_check_interval": 30,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def _sentinel_kwargs(target: Target) -> dict[str, Any]:
    return {
        "socket_connect_timeout": defaults.CONNECT_TIMEOUT,
        "socket_timeout": defaults.CONNECT_TIMEOUT,
        **target.sentinel_options,
    }


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.1)


def async_client(url: str) -> AsyncClient:
    """An asyncio client for ``url`` (no I/O happens until the first command)."""
    target = parse_url(url)
    retry = AsyncRetry(_backoff(), defaults.CONNECT_RETRIES)
    if target.kind == "cluster":
        seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
        cluster = redis.asyncio.RedisCluster(
            startup_nodes=seeds, retry=retry, **{**_client_kwargs(), **target.options}
        )
        compat.remember_cluster(cluster, target.nodes)
        return cluster
    if target.kind == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target), **target.options
        )
        client: redis.asyncio.Redis = sentinel.master_for(
            target.service, retry=retry, **_client_kwargs()
        )
        compat.remember_sentinel(client, target.nodes, target.service, sentinel)
        return client
    return redis.asyncio.Redis.from_url(target.server_url, retry=retry, **_client_kwargs())


def sync_client(url: str) -> SyncClient:
    """A blocking client for ``url``.

    No I/O happens until the first command, except for a cluster: a blocking cluster
    client reads the slot map as it is made (so this may raise ServerUnavailable).
    """
    target = parse_url(url)
    retry = Retry(_backoff(), defaults.CONNECT_RETRIES)
    if target.kind == "cluster":
        return _sync_cluster(url, target, retry)
    if target.kind == "sentinel":
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target), **target.options
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.service, retry=retry, **_client_kwargs()
        )
        compat.remember_sentinel(client, target.nodes, target.service, sentinel)
        return client
    return redis.Redis.from_url(target.server_url, retry=retry, **_client_kwargs())


def _sync_cluster(url: str, target: Target, retry: Retry) -> redis.cluster.RedisCluster:
    """A blocking cluster client: it reads the slot map as it is made, so it waits here."""
    seeds = [
        redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in target.nodes
    ]
    patience = Patience(url)
    while True:
        try:
            client = redis.cluster.RedisCluster(
                startup_nodes=seeds, retry=retry, **{**_client_kwargs(), **target.options}
            )
        except UNREACHABLE as exc:
            time.sleep(patience.next_pause(unavailable(url, exc)))
            continue
        patience.recovered()
        compat.remember_cluster(client, target.nodes)
        return client


def _sentinels(client: AsyncClient | SyncClient) -> tuple[Any, ...]:
    """The clients of the Sentinels behind a Sentinel-managed client (none for others)."""
    if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.RedisCluster):
        return ()
    try:
        origin = compat.sentinel_origin(client.connection_pool)
    except ConfigurationError:
        return ()
    return origin.clients if origin is not None else ()


async def aclose(client: AsyncClient) -> None:
    """Close an asyncio client, and the Sentinel clients behind it if it has any."""
    await client.aclose()
    for sentinel in _sentinels(client):
        await sentinel.aclose()


def close(client: SyncClient) -> None:
    """Close a blocking client, and the Sentinel clients behind it if it has any."""
    client.close()
    for sentinel in _sentinels(client):
        sentinel.close()


def _netloc(kwargs: dict[str, Any], hosts: str) -> str:
    user, password = kwargs.get("username"), kwargs.get("password")
    if not user and not password:
        return hosts
    credentials = quote(user or "", safe="")
    if password:
        credentials += ":" + quote(str(password), safe="")
    return f"{credentials}@{hosts}"


def _tls_query(kwargs: dict[str, Any]) -> str:
    names = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
    pairs = [(n, str(kwargs[n])) for n in names if isinstance(kwargs.get(n), str | bool)]
    return urlencode(pairs)


def is_cluster(client: AsyncClient | SyncClient) -> bool:
    """Whether the client talks to a cluster (keys of different slots live apart)."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.RedisCluster)


def client_url(client: AsyncClient | SyncClient) -> str:
    """A URL for where an existing client points: for messages, and to open a second client."""
    if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.RedisCluster):
        kwargs, nodes = compat.cluster_origin(client)
        hosts = ",".join(f"{host}:{port}" for host, port in nodes)
        scheme = "rediss+cluster" if kwargs.get("ssl") else "redis+cluster"
        tls = _tls_query(kwargs) if kwargs.get("ssl") else ""
        return urlunsplit((scheme, _netloc(kwargs, hosts), "", tls, ""))
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    origin = compat.sentinel_origin(pool)
    if origin is not None:
        sentinels = ",".join(f"{host}:{port}" for host, port in origin.nodes)
        scheme = "rediss+sentinel" if compat.is_tls(pool) else "redis+sentinel"
        path = f"/{origin.service}/{kwargs.get('db', 0)}"
        return urlunsplit((scheme, _netloc(kwargs, sentinels), path, "", ""))
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    ssl = compat.is_tls(pool)
    scheme = "rediss" if ssl else "redis"
    hosts = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    path = f"/{kwargs['db']}" if kwargs.get("db") else ""
    query = _tls_query(kwargs) if ssl else ""
    return urlunsplit((scheme, _netloc(kwargs, hosts), path, query, ""))


def is_transient(exc: ResponseError) -> bool:
    """True for an error reply that means the server cannot serve the call right now."""
    if isinstance(exc, ReadOnlyError | TryAgainError | ClusterError):
        return True
    return str(exc).split(" ", 1)[0] in TRANSIENT_REPLIES


def unavailable(url: str, exc: BaseException) -> ServerUnavailable:
    """The error raised when ``url`` cannot be reached."""
    return ServerUnavailable(f"cannot reach the Redis/Valkey server at {redact(url)}: {exc}")
