"""The seam to redis-py: every use of its internals, each beside a fallback to its public API.

Conveyor's lean path (one script call written and read on a connection of the transport's
own) and its reading of an existing client's whereabouts use a few redis-py internals. They
live here and nowhere else. Each is found by feature detection when this module is imported;
when one is missing (a future redis-py) the public fallback is used instead, and
``CONVEYOR_REDIS_COMPAT=public`` forces every fallback (CI runs the transport tests so).
``docs/architecture.md`` ("The seam to redis-py") says what each internal buys.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel

from conveyor import defaults
from conveyor.errors import ConfigurationError

AsyncConnection = redis.asyncio.connection.AbstractConnection
SyncConnection = redis.connection.ConnectionInterface
AsyncPool = redis.asyncio.ConnectionPool
SyncPool = redis.ConnectionPool


def _mode() -> str:
    value = os.environ.get(defaults.REDIS_COMPAT_ENV, "auto").strip().lower() or "auto"
    if value not in defaults.REDIS_COMPAT_MODES:
        allowed = ", ".join(defaults.REDIS_COMPAT_MODES)
        raise ConfigurationError(
            f"{defaults.REDIS_COMPAT_ENV} must be one of {allowed}, not {value!r}"
        )
    return value


#: "auto": use each internal that this redis-py has; "public": use only the public API.
MODE = _mode()


def _detect_stream_writer() -> bool:
    probe = redis.asyncio.connection.Connection()
    return hasattr(probe, "_writer") and isinstance(
        getattr(probe, "next_health_check", None), float | int
    )


def _detect_url_parsers() -> dict[str, Callable[[str], Any]] | None:
    parsers = getattr(redis.connection, "URL_QUERY_ARGUMENT_PARSERS", None)
    return parsers if isinstance(parsers, dict) else None


def _takes_no_command_name(pool: type[Any]) -> bool:
    """Whether ``pool.get_connection()`` may be called without a command name (redis-py>=5.3)."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    return parameter is None or parameter.default is not inspect.Parameter.empty


#: Which internals are used: each ``True`` only when this redis-py has it and MODE allows it.
LEAN = MODE == "auto"
USE_STREAM_WRITER = LEAN and _detect_stream_writer()
USE_MAKE_CONNECTION = LEAN and all(hasattr(p, "make_connection") for p in (AsyncPool, SyncPool))
_URL_PARSERS = _detect_url_parsers() if LEAN else None
_GET_CONNECTION_ARGS: tuple[str, ...] = () if _takes_no_command_name(AsyncPool) else ("EVALSHA",)


# -- the lean path's own connection --------------------------------------------------------


async def async_open(pool: AsyncPool) -> AsyncConnection:
    """A connection that only the caller uses, until :func:`async_release`.

    Internal: ``pool.make_connection()`` (not connected yet, outside the pool's count).
    Public: ``pool.get_connection()``, checked out of the pool until released.
    """
    if USE_MAKE_CONNECTION:
        return pool.make_connection()  # type: ignore[no-untyped-call,no-any-return]
    conn: AsyncConnection = await pool.get_connection(*_GET_CONNECTION_ARGS)  # type: ignore[no-untyped-call]
    return conn


def sync_open(pool: SyncPool) -> SyncConnection:
    """As :func:`async_open`, for a blocking pool."""
    if USE_MAKE_CONNECTION:
        return pool.make_connection()
    return pool.get_connection(*_GET_CONNECTION_ARGS)


async def async_release(pool: AsyncPool, conn: AsyncConnection) -> None:
    """Close a connection from :func:`async_open` (and give it back, if it was checked out)."""
    await conn.disconnect()
    if not USE_MAKE_CONNECTION:
        await pool.release(conn)


def sync_release(pool: SyncPool, conn: SyncConnection) -> None:
    """As :func:`async_release`, for a blocking pool."""
    conn.disconnect()  # type: ignore[no-untyped-call]
    if not USE_MAKE_CONNECTION:
        pool.release(conn)  # type: ignore[arg-type]


def take_read_timeout(conn: AsyncConnection) -> float | None:
    """Take over the read timeout of a connection from :func:`async_open`.

    Internal: set its ``socket_timeout`` to ``None`` (redis-py then arms no timer per read)
    and return the old timeout, which the caller keeps with a watchdog and :func:`abort`.
    Public: leave the timeout to redis-py and return ``None`` (no watchdog needed); so also
    for a connection checked out of the pool, which goes back to it with its timeout.
    """
    if not (USE_STREAM_WRITER and USE_MAKE_CONNECTION):
        return None
    timeout, conn.socket_timeout = conn.socket_timeout, None
    return timeout


def abort(conn: AsyncConnection) -> None:
    """Cut the socket of a connection whose read has waited too long: the read fails.

    Internal: abort the stream's transport. Public: disconnect it in a task.
    """
    if USE_STREAM_WRITER:
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        if writer is not None:
            writer.transport.abort()
        return
    task = asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()


async def async_send(conn: AsyncConnection, packed: Sequence[bytes]) -> None:
    """Write a packed command on the connection, as redis-py would.

    Internal: redis-py runs every write in a task under ``wait_for`` (its write timeout),
    which costs more than the write: an idle, connected socket with an empty buffer and no
    health check due takes the bytes at once, so they go straight to its stream writer.
    Anything else, and the public path: ``send_packed_command``.
    """
    if USE_STREAM_WRITER:
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        due = conn.health_check_interval and (
            asyncio.get_running_loop().time() > conn.next_health_check
        )
        idle = not (writer is None or due or writer.is_closing())
        if idle and writer is not None and not writer.transport.get_write_buffer_size():
            writer.writelines(packed)
            return
    await conn.send_packed_command(packed)


def sync_send(conn: SyncConnection, packed: Sequence[bytes]) -> None:
    """Write a packed command on a blocking connection (public API in both modes)."""
    conn.send_packed_command(packed)  # type: ignore[no-untyped-call]


def pack_script(
    conn: AsyncConnection | SyncConnection, sha: str, keys: Sequence[str], args: Sequence[Any]
) -> list[bytes]:
    """``EVALSHA sha numkeys keys... args...`` in the wire format, as one buffer.

    Internal: built by hand (the head once per script and queue), skipping redis-py's
    encoder, for the argument types whose encoding is plain (bytes, str, int). Otherwise, and
    the public path: the connection's ``pack_command``.
    """
    if LEAN:
        packed = _packed(sha, tuple(keys), args)
        if packed is not None:
            return packed
    return conn.pack_command("EVALSHA", sha, len(keys), *keys, *args)


_HEADS: dict[tuple[str, tuple[str, ...]], bytes] = {}


def _packed(sha: str, keys: tuple[str, ...], args: Sequence[Any]) -> list[bytes] | None:
    head = _HEADS.get((sha, keys))
    if head is None:
        if len(_HEADS) >= 1024:
            _HEADS.clear()
        parts = [b"EVALSHA", sha.encode(), b"%d" % len(keys), *(key.encode() for key in keys)]
        head = _HEADS[sha, keys] = b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    out = [b"*%d\r\n" % (3 + len(keys) + len(args)), head]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif type(arg) is int:
            data = b"%d" % arg
        else:
            return None
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return [b"".join(out)]  # one write: a blocking socket would send each piece on its own


# -- URLs ----------------------------------------------------------------------------------


def url_option(name: str, value: str) -> Any:
    """A connection option from a URL's query, typed as redis-py's ``from_url`` types it.

    Internal: redis-py's table of parsers. Public: ``ConnectionPool.from_url`` on a URL
    holding only this option (no I/O). Raises ``ValueError`` for a value it cannot read.
    """
    if _URL_PARSERS is not None:
        parser = _URL_PARSERS.get(name)
        if parser is None:
            return value
        try:
            return parser(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
    from urllib.parse import urlencode

    pool = redis.ConnectionPool.from_url(f"redis://localhost?{urlencode({name: value})}")
    return pool.connection_kwargs.get(name, value)


def is_tls(pool: AsyncPool | SyncPool) -> bool:
    """Whether the pool's connections use TLS (public API: the connection class)."""
    tls = (redis.connection.SSLConnection, redis.asyncio.connection.SSLConnection)
    return issubclass(pool.connection_class, tls)


@dataclass(frozen=True)
class SentinelOrigin:
    """The Sentinels behind a Sentinel-managed pool and the service they watch."""

    nodes: tuple[tuple[str, int], ...]
    service: str
    #: The Sentinels' own clients (closed with the primary's client when Conveyor made it).
    clients: tuple[Any, ...]


_SENTINELS: weakref.WeakKeyDictionary[Any, SentinelOrigin] = weakref.WeakKeyDictionary()
_CLUSTER_SEEDS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, int], ...]] = (
    weakref.WeakKeyDictionary()
)


def remember_sentinel(client: Any, nodes: Sequence[tuple[str, int]], service: str,
                      sentinel: Any) -> None:  # fmt: skip
    """Note where a Sentinel-managed client that Conveyor made comes from (for the public path)."""
    clients = tuple(getattr(sentinel, "sentinels", ()))
    _SENTINELS[client.connection_pool] = SentinelOrigin(tuple(nodes), service, clients)


def remember_cluster(client: Any, seeds: Sequence[tuple[str, int]]) -> None:
    """Note the seed nodes of a cluster client that Conveyor made (for the public path)."""
    _CLUSTER_SEEDS[client] = tuple(seeds)


def sentinel_origin(pool: Any) -> SentinelOrigin | None:
    """Where a Sentinel-managed pool's primary is found; ``None`` for any other pool.

    Internal: the pool's ``sentinel_manager`` and ``service_name``. Public: what Conveyor
    noted when it made the client; a Sentinel-managed client made elsewhere is refused.
    """
    if LEAN:
        manager = getattr(pool, "sentinel_manager", None)
        if manager is not None:
            clients = tuple(manager.sentinels)
            nodes = tuple(
                (
                    s.connection_pool.connection_kwargs["host"],
                    s.connection_pool.connection_kwargs["port"],
                )
                for s in clients
            )
            return SentinelOrigin(nodes, str(getattr(pool, "service_name", "")), clients)
    origin = _SENTINELS.get(pool)
    sentinel_pools = (
        redis.sentinel.SentinelConnectionPool,
        redis.asyncio.sentinel.SentinelConnectionPool,
    )
    if origin is None and isinstance(pool, sentinel_pools):
        raise ConfigurationError(
            f"with {defaults.REDIS_COMPAT_ENV}=public, give Conveyor the Sentinel URL rather "
            "than a Sentinel-managed client made elsewhere"
        )
    return origin


def cluster_origin(client: Any) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """A cluster client's connection options and the nodes it knows (else its seeds).

    Internal: its ``nodes_manager``. Public: ``get_connection_kwargs()`` and ``get_nodes()``;
    before a client has connected (an asyncio client made elsewhere) no public call knows its
    nodes, so the seeds are the ones Conveyor noted when it made the client, else the
    ``startup_nodes`` the application gave the constructor, which redis-py keeps under that
    name; a client without either is refused with a clear error.
    """
    nodes = [(node.host, node.port) for node in client.get_nodes()]
    if LEAN and hasattr(client, "nodes_manager"):
        manager = client.nodes_manager
        seeds = [(node.host, node.port) for node in manager.startup_nodes.values()]
        return dict(manager.connection_kwargs), nodes or seeds
    options = dict(client.get_connection_kwargs())
    if nodes:
        return options, nodes
    noted = _CLUSTER_SEEDS.get(client)
    if noted:
        return options, list(noted)
    given = getattr(client, "startup_nodes", None)
    if isinstance(given, list) and given:
        return options, [(node.host, node.port) for node in given]
    raise ConfigurationError(
        f"with {defaults.REDIS_COMPAT_ENV}=public, connect this cluster client first "
        "(await client.initialize()) or give Conveyor its URL"
    )
