"""The I/O-free pieces of a round trip, shared by the async and the sync transport.

How a call is spelled, which cluster node must run it, which replies mean NOSCRIPT and
which error to raise: :mod:`conveyor.transport` and its generated twin
:mod:`conveyor.sync_transport` differ only in how they wait, never in these decisions.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from conveyor import connection
from conveyor.connection import unavailable
from conveyor.lua import all_script_names, script
from conveyor.ops import Call, Command, ScriptCall, translate_error

#: Commands that wait for the writes made before them on the same connection.
FOLLOWERS = ("WAIT", "WAITAOF")
#: Commands without keys: a cluster client sends them to its default node.
KEYLESS = frozenset({"CONFIG", "INFO", "TIME", "PING", "DBSIZE", "MEMORY", "CLIENT", "SCRIPT"})


def call_args(item: Call) -> tuple[Any, ...]:
    """The command a call sends, as redis-py's ``execute_command`` takes it."""
    if isinstance(item, Command):
        return item.args
    return ("EVALSHA", item.script.sha, len(item.keys), *item.keys, *item.args)


def route_keys(calls: Sequence[Call]) -> list[str | None]:
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
        if name in FOLLOWERS:
            out.append(last_written)
        elif name in KEYLESS:
            out.append("")
        else:
            out.append(None)
    return out


def script_key(item: ScriptCall) -> str:
    """The key whose node runs the script (where to load it on a cluster)."""
    return item.keys[0] if item.keys else ""


@functools.cache
def every_script() -> tuple[str, ...]:
    """The source of every Conveyor script.

    A server that lost one script lost them all (a restart, a failover, ``SCRIPT FLUSH``), so
    the first caller to meet NOSCRIPT loads them all: users that may run the scripts but not
    load them (the read-only dashboard of docs/acl.md) can read again as soon as a worker or
    producer has made one call on that node.
    """
    return tuple(script(name).source for name in all_script_names())


def missing_scripts(calls: Sequence[Call], replies: list[Any]) -> list[int]:
    """The indexes of the script calls a pipeline's server answered with NOSCRIPT."""
    return [
        index
        for index, reply in enumerate(replies)
        if isinstance(reply, NoScriptError) and isinstance(calls[index], ScriptCall)
    ]


def refused(url: str, exc: ResponseError) -> Exception:
    """A server's error reply as the exception to raise."""
    if connection.is_transient(exc):
        return unavailable(url, exc)
    return translate_error(exc)


def raise_first_error(url: str, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
    """The replies of a pipeline, unless one is an error its call does not accept."""
    for item, reply in zip(calls, replies, strict=False):
        if isinstance(reply, ResponseError):
            if isinstance(item, Command) and item.error_ok:
                continue
            raise refused(url, reply)
    return replies


class AsyncGate:
    """Whether the lean connection is free, for tasks of one event loop (no lock needed)."""

    def __init__(self) -> None:
        self.busy = False

    def enter(self) -> bool:
        """Take the connection if it is free; ``False`` (at once) if it is not."""
        if self.busy:
            return False
        self.busy = True
        return True

    def leave(self) -> None:
        self.busy = False

    async def __aenter__(self) -> None:  # closing: nothing to wait for on one event loop
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class SyncGate:
    """As :class:`AsyncGate`, for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def enter(self) -> bool:
        return self._lock.acquire(blocking=False)

    def leave(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:  # held while the lean connection is closed
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
