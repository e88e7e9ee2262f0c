"""Runs the operations of :mod:`conveyor.ops` on a redis-py client, async or sync.

Scripts are called by SHA and loaded only when the server answers NOSCRIPT (then all of
them). Errors that mean the server is unreachable (or cannot serve right now: a failover, a
cluster resharding) become :class:`~conveyor.ServerUnavailable`, after waiting for the server as
long as the URL's ``wait_for_server`` allows; coded script errors become Conveyor's
exceptions. The client may be a single server's, a Sentinel-managed primary's or a
cluster's: every script call names only keys of one queue, so the cluster client routes
it by its first key, and a keyless ``WAIT``/``WAITAOF`` follows the write it waits for.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.cluster
from redis.exceptions import NoScriptError, ResponseError

from conveyor import connection
from conveyor.connection import UNREACHABLE, AsyncClient, SyncClient, unavailable
from conveyor.errors import ServerUnavailable
from conveyor.lua import all_script_names, script
from conveyor.ops import Call, Command, Op, Pause, ScriptCall, translate_error

T = TypeVar("T")

#: Commands that wait for the writes made before them on the same connection.
_FOLLOWERS = ("WAIT", "WAITAOF")
#: Commands without keys: a cluster client sends them to its default node.
_KEYLESS = frozenset({"CONFIG", "INFO", "TIME", "PING", "DBSIZE", "MEMORY", "CLIENT", "SCRIPT"})


def _args(item: Call) -> tuple[Any, ...]:
    if isinstance(item, Command):
        return item.args
    return ("EVALSHA", item.script.sha, len(item.keys), *item.keys, *item.args)


@functools.lru_cache(maxsize=1024)
def _script_head(sha: str, keys: tuple[str, ...]) -> bytes:
    """``EVALSHA sha numkeys keys...`` in the wire format, made once per script and queue."""
    parts = [b"EVALSHA", sha.encode(), b"%d" % len(keys), *(key.encode() for key in keys)]
    return b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def _packed_script(item: ScriptCall) -> list[bytes] | None:
    """A script call in the wire format, or ``None`` if an argument needs redis-py's encoder."""
    out = [b"*%d\r\n" % (3 + len(item.keys) + len(item.args)),
           _script_head(item.script.sha, tuple(item.keys))]  # fmt: skip
    for arg in item.args:
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


def _route_keys(calls: Sequence[Call]) -> list[str | None]:
    """Per call, the key whose node must run it on a cluster: ``None`` when the client can
    tell from the call itself, ``""`` for a keyless command (any node will do), and for a
    ``WAIT`` the key of the script call before it, so it waits for that call's writes
    (a round trip may write to several partitions, each followed by its own ``WAIT``)."""
    last_written = ""
    out: list[str | None] = []
    for item in calls:
        if isinstance(item, ScriptCall):
            last_written = item.keys[0] if item.keys else last_written
            out.append(None)
            continue
        name = str(item.args[0]).upper()
        if name in _FOLLOWERS:
            out.append(last_written)
        elif name in _KEYLESS:
            out.append("")
        else:
            out.append(None)
    return out


def _script_key(item: ScriptCall) -> str:
    """The key whose node runs the script (where to load it on a cluster)."""
    return item.keys[0] if item.keys else ""


@functools.cache
def _every_script() -> tuple[str, ...]:
    """The source of every Conveyor script.

    A server that lost one script lost them all (a restart, a failover, ``SCRIPT FLUSH``), so
    the first caller to meet NOSCRIPT loads them all: users that may run the scripts but not
    load them (the read-only dashboard of docs/acl.md) can read again as soon as a worker or
    producer has made one call on that node.
    """
    return tuple(script(name).source for name in all_script_names())


def _missing_scripts(calls: Sequence[Call], replies: list[Any]) -> list[int]:
    return [
        index
        for index, reply in enumerate(replies)
        if isinstance(reply, NoScriptError) and isinstance(calls[index], ScriptCall)
    ]


def _refused(url: str, exc: ResponseError) -> Exception:
    """A server's error reply as the exception to raise."""
    if connection.is_transient(exc):
        return unavailable(url, exc)
    return translate_error(exc)


def _raise_first_error(url: str, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
    for item, reply in zip(calls, replies, strict=False):
        if isinstance(reply, ResponseError):
            if isinstance(item, Command) and item.error_ok:
                continue
            raise _refused(url, reply)
    return replies


def _reraise_cancellation(exc: BaseException) -> None:
    """A task cancelled mid-command must stay cancelled, not look like an outage.

    redis-py drops the connection of a command interrupted by a cancellation and may then
    raise a connection error; turning that into ServerUnavailable would swallow the
    cancellation and leave loops that retry outages (the fetchers) running for ever.
    """
    task = asyncio.current_task()
    if task is not None and getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError from exc


async def _send(conn: redis.asyncio.connection.AbstractConnection, packed: list[bytes]) -> None:
    """Write a packed command on a connection that is ready for it, as redis-py would.

    redis-py runs every write in a task under ``wait_for`` (for its write timeout), which
    costs more than the write itself: an idle, connected socket with an empty buffer takes
    the bytes at once, so they go straight to its stream. Anything else (not connected, a
    health check due, data still buffered) takes redis-py's own path.
    """
    writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
    due = conn.health_check_interval and asyncio.get_running_loop().time() > conn.next_health_check
    if writer is None or due or writer.is_closing() or writer.transport.get_write_buffer_size():
        await conn.send_packed_command(packed)
    else:
        writer.writelines(packed)


class AsyncTransport:
    """Executes operations with an asyncio client.

    With ``lean`` (for a client the caller owns and closes through :meth:`close`), a round
    trip of one script call on a single server or Sentinel-managed primary goes over a
    connection of the transport's own, written and read directly: redis-py's per-command
    path (pool checkout, retry wrapper, argument encoding) costs more than the round trip.
    Anything unusual (a reconnect, NOSCRIPT, a concurrent call) takes the usual path.
    """

    def __init__(self, client: AsyncClient, url: str, *, lean: bool = False) -> None:
        self.client = client
        self.url = url
        self._outage = connection.Outage()
        plain = isinstance(client, redis.asyncio.Redis) and client.connection is None
        self._lean = lean and plain
        self._lean_connection: redis.asyncio.connection.AbstractConnection | None = None
        self._lean_busy = False
        self._lean_started = 0.0
        self._lean_timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know.

        While the server is unreachable, wait for it up to the URL's ``wait_for_server``.
        """
        try:
            return await self._execute(calls)
        except ServerUnavailable as exc:
            patience = connection.Patience(self.url, self._outage)
            await asyncio.sleep(patience.next_pause(exc))
        while True:
            try:
                replies = await self._execute(calls)
            except ServerUnavailable as exc:
                await asyncio.sleep(patience.next_pause(exc))
                continue
            patience.recovered()
            return replies

    async def _execute(self, calls: Sequence[Call]) -> list[Any]:
        try:
            if len(calls) == 1 and self._lean and not self._lean_busy:
                item = calls[0]
                if isinstance(item, ScriptCall) and (packed := _packed_script(item)):
                    return [await self._lean_call(item, packed)]
            routes = await self._routes(calls)
            if len(calls) == 1:
                return [await self._one(calls[0], routes[0])]
            pipe = self.client.pipeline(transaction=False)
            for item, route in zip(calls, routes, strict=True):
                pipe.execute_command(*_args(item), **route)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            for index in _missing_scripts(calls, replies):
                replies[index] = await self._one(calls[index], routes[index])
            return _raise_first_error(self.url, calls, replies)
        except UNREACHABLE as exc:
            _reraise_cancellation(exc)
            raise unavailable(self.url, exc) from exc

    async def _routes(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        """Per call, the node a cluster client must send it to (nothing: route by its keys)."""
        return await self._nodes(_route_keys(calls))

    async def _nodes(self, keys: Sequence[str | None]) -> list[dict[str, Any]]:
        client = self.client
        if not isinstance(client, redis.asyncio.RedisCluster):
            return [{} for _ in keys]
        await client.initialize()  # a no-op once the slot map is known
        routes: list[dict[str, Any]] = []
        for key in keys:
            if key is None:
                routes.append({})
            elif key:
                routes.append({"target_nodes": client.get_node_from_key(key)})
            else:
                routes.append({"target_nodes": client.get_default_node()})
        return routes

    async def _one(self, item: Call, route: dict[str, Any]) -> Any:
        try:
            try:
                return await self.client.execute_command(*_args(item), **route)
            except NoScriptError:
                assert isinstance(item, ScriptCall)
                (load_route,) = await self._nodes([_script_key(item)])
                for source in _every_script():
                    await self.client.execute_command("SCRIPT", "LOAD", source, **load_route)
                # The retried call's own error replies are translated like any other.
                return await self.client.execute_command(*_args(item), **route)
        except ResponseError as exc:
            if isinstance(exc, UNREACHABLE):  # a cluster's CLUSTERDOWN is both
                raise
            raise _refused(self.url, exc) from None

    async def _lean_call(self, item: ScriptCall, packed: list[bytes]) -> Any:
        """One script call on the transport's own connection; on any trouble, the usual path.

        redis-py drops a connection whose exchange was cut short (an error, a timeout, a
        cancellation), so the next call reconnects it; a call that failed on a dropped
        connection is sent again through the client, with its retries, as redis-py would.
        """
        assert isinstance(self.client, redis.asyncio.Redis)
        conn = self._lean_connection
        if conn is None:
            pool = self.client.connection_pool
            conn = self._lean_connection = pool.make_connection()  # type: ignore[no-untyped-call]
            # The read timeout is kept by a watchdog, not by a timer armed per call.
            self._lean_timeout, conn.socket_timeout = conn.socket_timeout, None
        self._lean_busy = True
        loop = asyncio.get_running_loop()
        self._lean_started = loop.time()
        if self._watchdog is None and self._lean_timeout:
            self._watchdog = loop.call_later(1.0, self._watch, conn)
        try:
            await _send(conn, packed)
            return await conn.read_response()
        except (NoScriptError, *UNREACHABLE) as exc:
            _reraise_cancellation(exc)
            return await self._one(item, {})
        except ResponseError as exc:
            raise _refused(self.url, exc) from None
        finally:
            self._lean_busy = False

    def _watch(self, conn: redis.asyncio.connection.AbstractConnection) -> None:
        """Every second while lean calls are made: cut the connection of a call that has
        waited longer than the read timeout (its read fails and it takes the usual path)."""
        self._watchdog = None
        if not self._lean_busy or conn is not self._lean_connection:
            return  # idle: the next call arms it again
        loop = asyncio.get_running_loop()
        if self._lean_timeout and loop.time() - self._lean_started > self._lean_timeout:
            writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
            if writer is not None:
                writer.transport.abort()
            return
        self._watchdog = loop.call_later(1.0, self._watch, conn)

    async def run(self, op: Op[T]) -> T:
        """Drive an operation to its result."""
        try:
            step = next(op)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(await self.execute(step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._lean_connection is not None:
            await self._lean_connection.disconnect()
            self._lean_connection = None
        await connection.aclose(self.client)


class SyncTransport:
    """Executes operations with a blocking client (``lean``: as :class:`AsyncTransport`)."""

    def __init__(self, client: SyncClient, url: str, *, lean: bool = False) -> None:
        self.client = client
        self.url = url
        self._outage = connection.Outage()
        plain = isinstance(client, redis.Redis) and client.connection is None
        self._lean = lean and plain
        self._lean_connection: redis.connection.ConnectionInterface | None = None
        self._lean_lock = threading.Lock()

    def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know.

        While the server is unreachable, wait for it up to the URL's ``wait_for_server``.
        """
        try:
            return self._execute(calls)
        except ServerUnavailable as exc:
            patience = connection.Patience(self.url, self._outage)
            time.sleep(patience.next_pause(exc))
        while True:
            try:
                replies = self._execute(calls)
            except ServerUnavailable as exc:
                time.sleep(patience.next_pause(exc))
                continue
            patience.recovered()
            return replies

    def _execute(self, calls: Sequence[Call]) -> list[Any]:
        try:
            if len(calls) == 1 and self._lean and self._lean_lock.acquire(blocking=False):
                try:
                    item = calls[0]
                    if isinstance(item, ScriptCall) and (packed := _packed_script(item)):
                        return [self._lean_call(item, packed)]
                finally:
                    self._lean_lock.release()
            routes = self._routes(calls)
            if len(calls) == 1:
                return [self._one(calls[0], routes[0])]
            pipe = self.client.pipeline(transaction=False)
            for item, route in zip(calls, routes, strict=True):
                pipe.execute_command(*_args(item), **route)
            replies: list[Any] = pipe.execute(raise_on_error=False)
            for index in _missing_scripts(calls, replies):
                replies[index] = self._one(calls[index], routes[index])
            return _raise_first_error(self.url, calls, replies)
        except UNREACHABLE as exc:
            raise unavailable(self.url, exc) from exc

    def _routes(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        """Per call, the node a cluster client must send it to (nothing: route by its keys)."""
        return self._nodes(_route_keys(calls))

    def _nodes(self, keys: Sequence[str | None]) -> list[dict[str, Any]]:
        client = self.client
        if not isinstance(client, redis.cluster.RedisCluster):
            return [{} for _ in keys]
        routes: list[dict[str, Any]] = []
        for key in keys:
            if key is None:
                routes.append({})
            elif key:
                node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
                routes.append({"target_nodes": node})
            else:
                node = client.get_default_node()  # type: ignore[no-untyped-call]
                routes.append({"target_nodes": node})
        return routes

    def _one(self, item: Call, route: dict[str, Any]) -> Any:
        try:
            try:
                return self.client.execute_command(*_args(item), **route)  # type: ignore[no-untyped-call]
            except NoScriptError:
                assert isinstance(item, ScriptCall)
                (load_route,) = self._nodes([_script_key(item)])
                for source in _every_script():
                    self.client.execute_command("SCRIPT", "LOAD", source, **load_route)  # type: ignore[no-untyped-call]
                # The retried call's own error replies are translated like any other.
                return self.client.execute_command(*_args(item), **route)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if isinstance(exc, UNREACHABLE):  # a cluster's CLUSTERDOWN is both
                raise
            raise _refused(self.url, exc) from None

    def _lean_call(self, item: ScriptCall, packed: list[bytes]) -> Any:
        """One script call on the transport's own connection (the caller holds the lock)."""
        assert isinstance(self.client, redis.Redis)
        conn = self._lean_connection
        if conn is None:
            pool = self.client.connection_pool
            conn = self._lean_connection = pool.make_connection()
        try:
            conn.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return conn.read_response()
        except (NoScriptError, *UNREACHABLE):
            return self._one(item, {})
        except ResponseError as exc:
            raise _refused(self.url, exc) from None

    def run(self, op: Op[T]) -> T:
        """Drive an operation to its result."""
        try:
            step = next(op)
            while True:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(self.execute(step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lean_lock:
            if self._lean_connection is not None:
                self._lean_connection.disconnect()  # type: ignore[no-untyped-call]
                self._lean_connection = None
        connection.close(self.client)
