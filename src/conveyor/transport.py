"""Runs the operations of :mod:`conveyor.ops` on a redis-py client, async or sync.

Scripts are called by SHA and loaded only when the server answers NOSCRIPT. Errors that
mean the server is unreachable become :class:`~conveyor.ServerUnavailable`; coded script
errors become Conveyor's exceptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from conveyor.connection import UNREACHABLE, unavailable
from conveyor.ops import Call, Command, Op, Pause, ScriptCall, translate_error

T = TypeVar("T")


def _args(item: Call) -> tuple[Any, ...]:
    if isinstance(item, Command):
        return item.args
    return ("EVALSHA", item.script.sha, len(item.keys), *item.keys, *item.args)


def _missing_scripts(calls: Sequence[Call], replies: list[Any]) -> list[int]:
    return [
        index
        for index, reply in enumerate(replies)
        if isinstance(reply, NoScriptError) and isinstance(calls[index], ScriptCall)
    ]


def _raise_first_error(calls: Sequence[Call], replies: list[Any]) -> list[Any]:
    for item, reply in zip(calls, replies, strict=False):
        if isinstance(reply, ResponseError):
            if isinstance(item, Command) and item.error_ok:
                continue
            raise translate_error(reply)
    return replies


class AsyncTransport:
    """Executes operations with an asyncio client."""

    def __init__(self, client: redis.asyncio.Redis, url: str) -> None:
        self.client = client
        self.url = url

    async def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know."""
        try:
            if len(calls) == 1:
                return [await self._one(calls[0])]
            pipe = self.client.pipeline(transaction=False)
            for item in calls:
                pipe.execute_command(*_args(item))
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            for index in _missing_scripts(calls, replies):
                replies[index] = await self._one(calls[index])
            return _raise_first_error(calls, replies)
        except UNREACHABLE as exc:
            raise unavailable(self.url, exc) from exc

    async def _one(self, item: Call) -> Any:
        try:
            return await self.client.execute_command(*_args(item))  # type: ignore[no-untyped-call]
        except NoScriptError:
            assert isinstance(item, ScriptCall)
            await self.client.execute_command(  # type: ignore[no-untyped-call]
                "SCRIPT", "LOAD", item.script.source
            )
            return await self.client.execute_command(*_args(item))  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise translate_error(exc) from None

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
        await self.client.aclose()


class SyncTransport:
    """Executes operations with a blocking client."""

    def __init__(self, client: redis.Redis, url: str) -> None:
        self.client = client
        self.url = url

    def execute(self, calls: Sequence[Call]) -> list[Any]:
        """Send the calls of one round trip; reload scripts the server does not know."""
        try:
            if len(calls) == 1:
                return [self._one(calls[0])]
            pipe = self.client.pipeline(transaction=False)
            for item in calls:
                pipe.execute_command(*_args(item))  # type: ignore[no-untyped-call]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            for index in _missing_scripts(calls, replies):
                replies[index] = self._one(calls[index])
            return _raise_first_error(calls, replies)
        except UNREACHABLE as exc:
            raise unavailable(self.url, exc) from exc

    def _one(self, item: Call) -> Any:
        try:
            return self.client.execute_command(*_args(item))  # type: ignore[no-untyped-call]
        except NoScriptError:
            assert isinstance(item, ScriptCall)
            self.client.execute_command(  # type: ignore[no-untyped-call]
                "SCRIPT", "LOAD", item.script.source
            )
            return self.client.execute_command(*_args(item))  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise translate_error(exc) from None

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
        self.client.close()
