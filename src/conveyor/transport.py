"""Runs the operations of :mod:`conveyor.ops` on a redis-py client (asyncio).

Scripts are called by SHA and loaded only when the server answers NOSCRIPT (then all of
them). Errors that mean the server is unreachable (or cannot serve right now: a failover, a
cluster resharding) become :class:`~conveyor.ServerUnavailable`, after waiting for the server as
long as the URL's ``wait_for_server`` allows; coded script errors become Conveyor's
exceptions. The client may be a single server's, a Sentinel-managed primary's or a
cluster's: every script call names only keys of one queue, so the cluster client routes
it by its first key, and a keyless ``WAIT``/``WAITAOF`` follows the write it waits for.

This module is the source of :mod:`conveyor.sync_transport` (``python tools/unasync.py``);
the decisions both share live in :mod:`conveyor.wire`, redis-py's internals in
:mod:`conveyor.compat`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from conveyor import compat, connection, wire
from conveyor.connection import UNREACHABLE, AsyncClient, unavailable
from conveyor.errors import ServerUnavailable
from conveyor.ops import Call, Op, Pause, ScriptCall
from conveyor.sync_transport import SyncTransport as SyncTransport  # unasync: drop

T = TypeVar("T")


# unasync: begin async-only
def _reraise_cancellation(exc: BaseException) -> None:
    """A task cancelled mid-command must stay cancelled, not look like an outage.

    redis-py drops the connection of a command interrupted by a cancellation and may then
    raise a connection error; turning that into ServerUnavailable would swallow the
    cancellation and leave loops that retry outages (the fetchers) running for ever.
    """
    task = asyncio.current_task()
    if task is not None and getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError from exc


# unasync: end async-only
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
        self._lean_connection: compat.AsyncConnection | None = None
        self._gate = wire.AsyncGate()
        # unasync: begin async-only
        self._lean_started = 0.0
        self._lean_timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        # unasync: end async-only

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
            item = calls[0] if len(calls) == 1 and self._lean else None
            if isinstance(item, ScriptCall) and self._gate.enter():
                try:
                    return [await self._lean_call(item)]
                finally:
                    self._gate.leave()
            routes = await self._nodes(wire.route_keys(calls))
            if len(calls) == 1:
                return [await self._one(calls[0], routes[0])]
            pipe = self.client.pipeline(transaction=False)
            for item, route in zip(calls, routes, strict=True):
                pipe.execute_command(*wire.call_args(item), **route)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            for index in wire.missing_scripts(calls, replies):
                replies[index] = await self._one(calls[index], routes[index])
            return wire.raise_first_error(self.url, calls, replies)
        except UNREACHABLE as exc:
            _reraise_cancellation(exc)  # unasync: drop
            raise unavailable(self.url, exc) from exc

    async def _nodes(self, keys: Sequence[str | None]) -> list[dict[str, Any]]:
        """Per key of :func:`wire.route_keys`, the node a cluster client must send it to."""
        client = self.client
        if not isinstance(client, redis.asyncio.RedisCluster):
            return [{} for _ in keys]
        await client.initialize()  # unasync: drop (a no-op once the slot map is known)
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
                return await self.client.execute_command(*wire.call_args(item), **route)
            except NoScriptError:
                assert isinstance(item, ScriptCall)
                (load_route,) = await self._nodes([wire.script_key(item)])
                for source in wire.every_script():
                    await self.client.execute_command("SCRIPT", "LOAD", source, **load_route)
                # The retried call's own error replies are translated like any other.
                return await self.client.execute_command(*wire.call_args(item), **route)
        except ResponseError as exc:
            if isinstance(exc, UNREACHABLE):  # a cluster's CLUSTERDOWN is both
                raise
            raise wire.refused(self.url, exc) from None

    async def _lean_call(self, item: ScriptCall) -> Any:
        """One script call on the transport's own connection; on any trouble, the usual path.

        redis-py drops a connection whose exchange was cut short (an error, a timeout, a
        cancellation), so the next call reconnects it; a call that failed on a dropped
        connection is sent again through the client, with its retries, as redis-py would.
        """
        try:
            conn = self._lean_connection
            if conn is None:
                conn = await self._open_lean()
            # unasync: begin async-only
            loop = asyncio.get_running_loop()
            self._lean_started = loop.time()
            if self._watchdog is None and self._lean_timeout:
                self._watchdog = loop.call_later(1.0, self._watch, conn)
            # unasync: end async-only
            packed = compat.pack_script(conn, item.script.sha, item.keys, item.args)
            await compat.async_send(conn, packed)
            return await conn.read_response()
        except (NoScriptError, *UNREACHABLE) as exc:
            _reraise_cancellation(exc)  # unasync: drop
            return await self._one(item, {})
        except ResponseError as exc:
            raise wire.refused(self.url, exc) from None

    async def _open_lean(self) -> compat.AsyncConnection:
        """The transport's own connection (not connected yet on redis-py's lean path)."""
        assert isinstance(self.client, redis.asyncio.Redis)
        conn = await compat.async_open(self.client.connection_pool)
        self._lean_connection = conn
        # unasync: begin async-only
        # The read timeout is kept by a watchdog, not by a timer armed per call.
        self._lean_timeout = compat.take_read_timeout(conn)
        # unasync: end async-only
        return conn

    # unasync: begin async-only
    def _watch(self, conn: compat.AsyncConnection) -> None:
        """Every second while lean calls are made: cut the connection of a call that has
        waited longer than the read timeout (its read fails and it takes the usual path)."""
        self._watchdog = None
        if not self._gate.busy or conn is not self._lean_connection:
            return  # idle: the next call arms it again
        loop = asyncio.get_running_loop()
        if self._lean_timeout and loop.time() - self._lean_started > self._lean_timeout:
            compat.abort(conn)
            return
        self._watchdog = loop.call_later(1.0, self._watch, conn)

    # unasync: end async-only
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
        # unasync: begin async-only
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        # unasync: end async-only
        async with self._gate:
            if self._lean_connection is not None:
                assert isinstance(self.client, redis.asyncio.Redis)
                await compat.async_release(self.client.connection_pool, self._lean_connection)
                self._lean_connection = None
        await connection.aclose(self.client)
