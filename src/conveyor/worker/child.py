"""The main loop of a child process that runs process handlers, and how handlers are named.

A child imports each handler by ``module:qualname``, receives a job as two frames (a JSON
header with the handler and the job's context, then the payload's JSON bytes, as stored)
and answers with a JSON header and, on success, the result's JSON bytes. Nothing is
pickled. Progress and log lines a handler reports are sent to the worker as they happen.
"""

from __future__ import annotations

import importlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import msgspec

from conveyor import codec
from conveyor.errors import PayloadError
from conveyor.worker.context import JobContext

#: How often a child checks that the worker that started it is still alive (seconds).
PARENT_CHECK_INTERVAL = 1.0

_MAIN_NAMES = ("__main__", "__mp_main__")


def function_ref(function: Callable[..., Any]) -> str:
    """The ``module:qualname`` a child imports ``function`` by; ValueError if it has none.

    A lambda, a nested function, a closure or a bound method has no importable name. A
    function of the main script is named ``__main__:name``: the child imports the script
    as multiprocessing does (so its ``worker.run()`` must sit under
    ``if __name__ == "__main__":``), which needs a script file, not ``python -c`` or a REPL.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    problem = ""
    if inspect.ismethod(function):
        problem = "it is a bound method"
    elif not isinstance(module, str) or not isinstance(qualname, str):
        problem = "it has no module and name (a partial or a callable object?)"
    elif "<" in qualname:
        problem = "a lambda, nested function or closure cannot be imported by name"
    elif module in _MAIN_NAMES and not getattr(sys.modules.get("__main__"), "__file__", None):
        problem = "it is defined in an interactive session or `python -c`, not in a file"
    if problem:
        raise ValueError(
            f"{function!r} cannot run in a child process: {problem}. A child imports its "
            "handler by module and name: define it at the top level of a module."
        )
    assert isinstance(module, str) and isinstance(qualname, str)
    module = "__main__" if module in _MAIN_NAMES else module
    loaded = sys.modules.get(module)
    found = _lookup(loaded, qualname) if loaded is not None else None
    # While its module is still being imported (a decorator) the name is not bound yet.
    if found is not None and inspect.unwrap(found) is not inspect.unwrap(function):
        raise ValueError(
            f"{function!r} cannot run in a child process: {module}.{qualname} is another "
            "object, and the child would import that one."
        )
    return f"{module}:{qualname}"


def _lookup(module: Any, qualname: str) -> Any:
    value = module
    for part in qualname.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def resolve(ref: str) -> Callable[..., Any]:
    """Import the function a :func:`function_ref` names (in the child)."""
    module_name, _, qualname = ref.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"{ref} is not callable")
    return cast("Callable[..., Any]", value)


def describe_error(exc: BaseException, with_traceback: bool = True) -> dict[str, Any]:
    """An exception as JSON: its class, arguments and attributes (those that are JSON)."""
    cls = type(exc)
    return {
        "module": cls.__module__,
        "type": cls.__qualname__,
        "message": str(exc),
        "args": list(exc.args) if _is_json(list(exc.args)) else None,
        "attrs": {k: v for k, v in vars(exc).items() if _is_json(v)},
        "traceback": "".join(traceback.format_exception(exc)) if with_traceback else "",
    }


def _is_json(value: Any) -> bool:
    try:
        codec.encode(value)
    except PayloadError:
        return False
    return True


class _Relay:
    """Sends a handler's progress and log lines to the worker, which stores them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def progress(self, queue: str, job_id: str, token: str, value: Any) -> None:
        self._send({"op": "progress", "token": token, "value": value})

    def log(self, queue: str, job_id: str, token: str, message: str) -> None:
        self._send({"op": "log", "token": token, "message": str(message)})

    def _send(self, message: dict[str, Any]) -> None:
        data = codec.encode(message, what="progress")
        with self.lock:
            self.conn.send_bytes(data)


class _Child:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.relay = _Relay(conn)
        self.functions: dict[str, Callable[..., Any]] = {}

    def serve(self) -> None:
        while True:
            try:
                header = self.conn.recv_bytes()
                payload = self.conn.recv_bytes()
            except (EOFError, OSError):
                return  # the worker closed the pipe: retire
            reply, result = self.run(msgspec.json.decode(header), payload)
            with self.relay.lock:
                self.conn.send_bytes(codec.encode(reply))
                if result is not None:
                    self.conn.send_bytes(result)

    def run(self, request: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes | None]:
        try:
            function = self.functions.get(request["handler"])
            if function is None:
                function = self.functions[request["handler"]] = resolve(request["handler"])
            # The same two methods as the worker's Reporter, over the pipe.
            context = JobContext(**request["context"], reporter=self.relay)
            value = function(context, codec.decode(payload))
        except Exception as exc:
            return {"op": "error", "error": describe_error(exc)}, None
        try:
            result = codec.encode(value, limit=request["max_result_bytes"], what="result")
        except PayloadError as exc:
            return {"op": "error", "error": describe_error(exc, with_traceback=False)}, None
        return {"op": "ok"}, result


def _watch_parent() -> None:
    """Exit when the worker is gone (even SIGKILLed): nobody would take the result."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_INTERVAL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="conveyor-parent-watch", daemon=True).start()


def main(conn: Connection, init_module: str | None) -> None:
    """The child's entry point: import ``init_module``, say ready, then run jobs until EOF."""
    # Ctrl-C in a terminal reaches the whole process group: the worker decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent()
    try:
        if init_module:
            importlib.import_module(init_module)
    except BaseException as exc:
        conn.send_bytes(codec.encode({"op": "failed", "error": describe_error(exc)}))
        return
    conn.send_bytes(codec.encode({"op": "ready", "pid": os.getpid()}))
    _Child(conn).serve()
