"""Retrying through a server outage: one backoff for the worker, and one send-until-reachable
helper for the calls that must not be dropped (a job's settlement)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from conveyor import defaults
from conveyor.errors import ServerUnavailable

log = logging.getLogger("conveyor.worker")

T = TypeVar("T")

#: The first pause (before jitter is taken off) after the server stops answering.
FIRST_PAUSE = 0.1


class Outage:
    """The pause before trying an unreachable server again: doubling up to
    :data:`~conveyor.defaults.RECONNECT_BACKOFF_MAX`, jittered so that many workers do not
    come back in step; it starts from the bottom once the server answers again.

    One is shared by a worker session's fetchers and its settler."""

    __slots__ = ("_pause",)

    def __init__(self) -> None:
        self._pause = FIRST_PAUSE

    def pause(self) -> float:
        """The next pause, in seconds (each one longer, up to the most)."""
        self._pause = min(defaults.RECONNECT_BACKOFF_MAX, self._pause * 2)
        return self._pause * (0.5 + random.random() / 2)

    def recovered(self) -> None:
        """The server answers again: the next outage starts its backoff from the bottom."""
        self._pause = FIRST_PAUSE


async def until_reachable(
    send: Callable[[], Awaitable[T]], outage: Outage, what: str, *args: Any
) -> T:
    """``await send()``, tried again after each :class:`ServerUnavailable` (logged as
    "could not <what % args>, retrying") with the ``outage`` backoff, until it is answered.
    Any other error is raised."""
    while True:
        try:
            return await send()
        except ServerUnavailable as exc:
            log.warning("could not " + what + ", retrying: %s", *args, exc)
            await asyncio.sleep(outage.pause())
