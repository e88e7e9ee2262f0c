"""Handlers: the functions that run jobs, registered by job name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conveyor.retry import Backoff, BackoffFunction

#: A handler takes the job's context and its decoded payload and returns a JSON value.
HandlerFunction = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Handler:
    """A registered handler and its per-handler defaults."""

    name: str
    function: HandlerFunction
    is_async: bool
    timeout: float | None = None
    backoff: Backoff | BackoffFunction | None = None
    permanent: tuple[type[BaseException], ...] = ()


def make_handler(
    function: HandlerFunction,
    name: str | None = None,
    *,
    timeout: float | None = None,
    backoff: Backoff | BackoffFunction | None = None,
    permanent: tuple[type[BaseException], ...] = (),
) -> Handler:
    """Describe ``function`` as the handler of jobs called ``name`` (default: its name)."""
    if not callable(function):
        raise TypeError(f"a handler must be callable, got {function!r}")
    return Handler(
        name=name or function.__name__,
        function=function,
        is_async=inspect.iscoroutinefunction(function),
        timeout=timeout,
        backoff=backoff,
        permanent=tuple(permanent),
    )
