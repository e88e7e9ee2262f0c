"""Handlers: the functions that run jobs, registered by job name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conveyor.retry import Backoff, BackoffFunction
from conveyor.worker.child import function_ref

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
    #: Run in a child process (plain ``def`` only); ``None``: as the worker's options say.
    process: bool | None = None


def make_handler(
    function: HandlerFunction,
    name: str | None = None,
    *,
    timeout: float | None = None,
    backoff: Backoff | BackoffFunction | None = None,
    permanent: tuple[type[BaseException], ...] = (),
    process: bool | None = None,
) -> Handler:
    """Describe ``function`` as the handler of jobs called ``name`` (default: its name)."""
    if not callable(function):
        raise TypeError(f"a handler must be callable, got {function!r}")
    _check_arguments(function)
    if process:
        check_process_handler(function)
    return Handler(
        name=name or function.__name__,
        function=function,
        is_async=inspect.iscoroutinefunction(function),
        timeout=timeout,
        backoff=backoff,
        permanent=tuple(permanent),
        process=process,
    )


def _check_arguments(function: HandlerFunction) -> None:
    """Refuse at registration a function that cannot be called as ``function(ctx, payload)``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin or C function without a signature: trust it
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(f"handler {function!r} must accept two arguments: (ctx, payload)") from None


def check_process_handler(function: HandlerFunction) -> None:
    """Raise unless ``function`` can run in a child process (a plain, importable ``def``)."""
    if inspect.iscoroutinefunction(function):
        raise TypeError(
            f"{function!r} is an async def: async handlers run on the event loop; "
            "process=True is for plain def handlers"
        )
    function_ref(function)
