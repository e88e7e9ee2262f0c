"""Runs the operations of :mod:`conveyor.ops` on a redis-py client, async or sync.

Scripts are called by SHA and loaded only when the server answers NOSCRIPT. Errors that
mean the server is unreachable (or cannot serve right now: a failover, a cluster
resharding) become :class:`~conveyor.ServerUnavailable`, after waiting for the server as
long as the URL's ``wait_for_server`` allows; coded script errors become Conveyor's
exceptions. The client may be a single server's, a Sentinel-managed primary's or a
cluster's: every script call names only keys of one queue, so the cluster client routes
it by its first key, and a keyless ``WAIT``/``WAITAOF`` follows the write it waits for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import redis.asyncio
import redis.cluster
from redis.exceptions import NoScriptError, ResponseError

from conveyor import connection
from conveyor.connection import UNREACHABLE, AsyncClient, SyncClient, unavailable
from conveyor.errors import ServerUnavailable
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


class AsyncTransport:
    """Executes operations with an asyncio client."""

    def __init__(self, client: AsyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self._outage = connection.Outage()

    async def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know.

        While the server is unreachable, wait for it up to the URL's ``wait_for_server``.
        """
        patience = connection.Patience(self.url, self._outage)
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
                await self.client.execute_command(
                    "SCRIPT", "LOAD", item.script.source, **load_route
                )
                # The retried call's own error replies are translated like any other.
                return await self.client.execute_command(*_args(item), **route)
        except ResponseError as exc:
            if isinstance(exc, UNREACHABLE):  # a cluster's CLUSTERDOWN is both
                raise
            raise _refused(self.url, exc) from None

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
        await connection.aclose(self.client)


class SyncTransport:
    """Executes operations with a blocking client."""

    def __init__(self, client: SyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self._outage = connection.Outage()

    def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know.

        While the server is unreachable, wait for it up to the URL's ``wait_for_server``.
        """
        patience = connection.Patience(self.url, self._outage)
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
                self.client.execute_command(  # type: ignore[no-untyped-call]
                    "SCRIPT", "LOAD", item.script.source, **load_route
                )
                # The retried call's own error replies are translated like any other.
                return self.client.execute_command(*_args(item), **route)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if isinstance(exc, UNREACHABLE):  # a cluster's CLUSTERDOWN is both
                raise
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
        connection.close(self.client)
