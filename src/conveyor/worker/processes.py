"""Runs process handlers in long-lived child processes, supervised from the event loop.

The worker process stays the one supervisor: it fetches, keeps the locks and settles every
job; a child only runs handlers (see :mod:`conveyor.worker.child`). A child past the job's
timeout is terminated (SIGTERM, then SIGKILL after a grace), a child that dies fails only
its own job's attempt, and a child is replaced after ``max_jobs_per_child`` jobs or when
its memory is over the ceiling after a job. The pool refills itself; the worker never stops.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped]

from conveyor import codec
from conveyor.errors import ConveyorError
from conveyor.job import AttemptCause
from conveyor.worker import child
from conveyor.worker.context import JobContext
from conveyor.worker.handlers import Handler
from conveyor.worker.options import WorkerOptions
from conveyor.worker.outcome import JobTimeoutError, Outcome

log = logging.getLogger("conveyor.worker")

#: How long a new child may take to import its modules (and ``child_init``) and say ready.
START_TIMEOUT = 120.0


class ChildStartError(ConveyorError):
    """A child process could not start (its ``child_init`` failed, or it died at start-up)."""


class ChildDiedError(ConveyorError):
    """The child process running the job died (a crash, ``os._exit``, the OOM killer)."""


class HandlerError(ConveyorError):
    """An error raised in a child whose class the worker cannot import; named after it."""


def default_size(concurrency: int) -> int:
    """The CPU count available to this process, or the concurrency if that is smaller."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, concurrency))


class _Child:
    """One child process and the worker's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid or 0
        self.jobs = 0


class ProcessPool:
    """The children of one worker session; :meth:`run` runs one job in one of them."""

    def __init__(self, options: WorkerOptions, handlers: Iterable[Handler]) -> None:
        self.options = options
        self.size = options.processes or default_size(options.concurrency)
        self._mp = multiprocessing.get_context(options.process_start_method)
        self._refs = {h.name: child.function_ref(h.function) for h in handlers if h.process}
        self._idle: collections.deque[_Child] = collections.deque()
        self._busy: set[_Child] = set()
        self._starting = 0
        self._changed = asyncio.Event()
        self._starts: set[asyncio.Task[None]] = set()
        self._stops: set[asyncio.Task[Any]] = set()
        self._closing = False

    @classmethod
    def for_handlers(
        cls, options: WorkerOptions, handlers: Iterable[Handler]
    ) -> ProcessPool | None:
        """A pool if any handler runs in a process, else ``None``."""
        handlers = list(handlers)
        return cls(options, handlers) if any(h.process for h in handlers) else None

    def start(self) -> None:
        """Start the children in the background, so the first jobs find them ready."""
        for _ in range(self.size - self._live()):
            self._refill()

    async def close(self) -> None:
        """Stop every child: idle ones at once, busy ones (their jobs cancelled) by signal."""
        self._closing = True
        for task in list(self._starts):
            task.cancel()
        await asyncio.gather(*self._starts, return_exceptions=True)
        children = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(self._stop(c, kill=True) for c in children), *self._stops)

    # --- running a job ------------------------------------------------------------

    async def run(
        self, handler: Handler, context: JobContext, raw_payload: bytes, timeout: float,
        max_result_bytes: int,
    ) -> Outcome:  # fmt: skip
        """Run one job in a child; every failure, a crash included, becomes an Outcome."""
        request = codec.encode({
            "handler": self._refs[handler.name], "context": _context_fields(context),
            "max_result_bytes": max_result_bytes,
        })  # fmt: skip
        try:
            worker = await self._acquire()
        except asyncio.CancelledError:
            if not context.cancelled:
                raise
            return _cancelled()  # by queue.cancel, while it waited for a child
        except Exception as exc:  # ChildStartError, or the OS refused a new process
            return Outcome(False, cause=AttemptCause.ERROR, error=exc)
        try:
            worker.conn.send_bytes(request)
            worker.conn.send_bytes(raw_payload)
            outcome = await asyncio.wait_for(self._replies(worker, context), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            await self._discard(worker, kill=True)
            error = JobTimeoutError(
                f"{handler.name} did not finish within {timeout:g}s; "
                f"its process {worker.pid} was terminated"
            )
            return Outcome(False, cause=AttemptCause.TIMEOUT, error=error)
        except OSError:  # the pipe broke while sending: the child is gone
            outcome = None
        except asyncio.CancelledError:
            if not context.cancelled:  # the worker is shutting down: the job is handed back
                self._busy.discard(worker)
                self._stop_later(worker, kill=True)
                raise
            outcome = _cancelled()  # by queue.cancel: kill its child, end it as cancelled
            await self._discard(worker, kill=True)
            return outcome
        except Exception as exc:  # a garbled message: this child cannot be trusted any more
            log.exception("bad message from child process %d", worker.pid)
            await self._discard(worker, kill=True)
            return Outcome(False, cause=AttemptCause.ERROR, error=exc)
        if outcome is None:
            code = await self._discard(worker, kill=False)
            return Outcome(False, cause=AttemptCause.ERROR, error=ChildDiedError(
                f"the process {worker.pid} running {handler.name} died: {_exit_text(code)}"
            ))  # fmt: skip
        self._release(worker)
        return outcome

    async def _replies(self, worker: _Child, context: JobContext) -> Outcome | None:
        """Read the child's messages until the job's answer; ``None`` if the child died."""
        while True:
            header = await _receive(worker.conn)
            if header is None:
                return None
            message = msgspec.json.decode(header)
            op = message.get("op")
            if op == "ok":
                result = await _receive(worker.conn)
                return None if result is None else Outcome(True, result)
            if op == "error":
                info = message["error"]
                return Outcome(False, cause=AttemptCause.ERROR, error=rebuild_error(info),
                               traceback=info.get("traceback", ""))  # fmt: skip
            if message.get("token") == context.token:  # else left over from an earlier job
                _relay(context, message)

    # --- the children -------------------------------------------------------------

    def _live(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    async def _acquire(self) -> _Child:
        while True:
            while self._idle:
                worker = self._idle.popleft()
                if worker.process.exitcode is None:
                    self._busy.add(worker)
                    return worker
                log.warning("child process %d died while idle: %s", worker.pid,
                            _exit_text(worker.process.exitcode))  # fmt: skip
                self._stop_later(worker, kill=False)
            if self._live() < self.size:
                worker = await self._start_child()
                self._busy.add(worker)
                return worker
            self._changed.clear()
            await self._changed.wait()

    def _release(self, worker: _Child) -> None:
        worker.jobs += 1
        self._busy.discard(worker)
        reason = self._recycle_reason(worker)
        if reason:
            log.info("replacing child process %d: %s", worker.pid, reason)
            self._stop_later(worker, kill=False)
            self._refill()
        else:
            self._idle.append(worker)
        self._changed.set()

    def _recycle_reason(self, worker: _Child) -> str:
        limit = self.options.max_jobs_per_child
        if limit is not None and worker.jobs >= limit:
            return f"it ran {worker.jobs} jobs (max_jobs_per_child={limit})"
        ceiling = self.options.max_child_memory
        if ceiling is not None:
            try:
                rss = psutil.Process(worker.pid).memory_info().rss
            except psutil.Error:
                return "it is gone"
            if rss > ceiling:
                return f"its memory, {rss >> 20} MiB, is over max_child_memory ({ceiling} bytes)"
        return ""

    async def _discard(self, worker: _Child, *, kill: bool) -> int | None:
        """Stop a busy child and start another in its place; its exit code."""
        self._busy.discard(worker)
        self._refill()
        self._changed.set()
        return await self._stop(worker, kill=kill)

    def _refill(self) -> None:
        if self._closing or self._live() >= self.size:
            return
        self._starting += 1
        task = asyncio.ensure_future(self._prestart())
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    async def _prestart(self) -> None:
        try:
            worker = await self._start_child(counted=True)
        except ChildStartError as exc:
            log.error("%s", exc)
            return
        except Exception:  # the pool starts one when a job needs it
            log.exception("could not start a child process")
            return
        self._idle.append(worker)
        self._changed.set()

    async def _start_child(self, counted: bool = False) -> _Child:
        if not counted:
            self._starting += 1
        try:
            return await self._launch()
        finally:
            self._starting -= 1
            self._changed.set()

    async def _launch(self) -> _Child:
        ours, theirs = self._mp.Pipe(duplex=True)
        process = self._mp.Process(  # type: ignore[attr-defined]
            target=child.main, args=(theirs, self.options.child_init),
            name="conveyor-child", daemon=True,
        )  # fmt: skip
        try:
            process.start()  # a fork+exec: quick; the child's imports happen after it
        except Exception as exc:
            ours.close()
            raise ChildStartError(f"could not start a child process: {exc}") from exc
        finally:
            theirs.close()  # the child has its own copy; EOF on ours means it is gone
        worker = _Child(process, ours)
        try:
            header = await asyncio.wait_for(_receive(ours), START_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            header = b"{}"
        except BaseException:
            self._stop_later(worker, kill=True)
            raise
        message = msgspec.json.decode(header) if header is not None else {}
        if message.get("op") == "ready":
            return worker
        code = await self._stop(worker, kill=header is not None)
        if "error" in message:
            error = message["error"]
            why = f"child_init {self.options.child_init!r} failed: {error['type']}: "
            why += error["message"]
        elif header is not None:
            why = f"it did not say ready within {START_TIMEOUT:g}s"
        else:
            why = f"it {_exit_text(code)} during start-up"
        raise ChildStartError(f"could not start a child process: {why}")

    async def _stop(self, worker: _Child, *, kill: bool) -> int | None:
        """End a child: close its pipe (an idle child exits), SIGTERM if asked, then SIGKILL."""
        worker.conn.close()
        process = worker.process
        grace = self.options.child_kill_grace
        if kill and process.exitcode is None:
            process.terminate()
        if not await _exited(process, grace if kill else max(grace, 5.0)):
            if kill:
                log.warning("child process %d ignored SIGTERM for %.1fs: SIGKILL", worker.pid,
                            grace)  # fmt: skip
            process.kill()
            await _exited(process, 10.0)
        code = process.exitcode
        if code is not None:
            process.close()
        return code

    def _stop_later(self, worker: _Child, *, kill: bool) -> None:
        """Stop a child in the background (:meth:`close` waits for it)."""
        task = asyncio.ensure_future(self._stop(worker, kill=kill))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)


async def _receive(conn: Connection) -> bytes | None:
    """The next message from a child, without blocking the loop; ``None`` at EOF."""
    loop = asyncio.get_running_loop()
    if not conn.poll():
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        fd = conn.fileno()  # kept: the reader must go even if the pipe is closed meanwhile
        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
    try:
        return conn.recv_bytes()  # the child writes a message at once: this does not wait
    except (EOFError, OSError):
        return None


async def _exited(process: BaseProcess, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    pause = 0.005
    while process.exitcode is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)
    return True


def _cancelled() -> Outcome:
    """The outcome of a job cancelled by an operator; this task carries on to settle it."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()
    return Outcome(False, cancelled=True)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        text = f"killed by {name}"
        if -code == signal.SIGKILL:
            text += " (from outside the worker: the out-of-memory killer?)"
        return text
    return f"exited with code {code}"


def _context_fields(context: JobContext) -> dict[str, Any]:
    """The JSON fields of the job's context (not the parent's reporter)."""
    return {
        f.name: getattr(context, f.name)
        for f in dataclasses.fields(context)
        if isinstance(getattr(context, f.name), (str, int, float, bool))
    }


def _relay(context: JobContext, message: dict[str, Any]) -> None:
    """Pass a child's progress report or log line on as if the handler ran here."""
    try:
        if message.get("op") == "progress":
            context.progress(message.get("value"))
        elif message.get("op") == "log":
            context.log(str(message.get("message", "")))
    except Exception:
        log.exception("could not record a report of job %s", context.id)


_rebuilt: dict[tuple[str, str], type[BaseException]] = {}


def rebuild_error(info: dict[str, Any]) -> BaseException:
    """The worker's copy of an exception raised in a child, for the retry rules.

    When the exception's class is already imported here (builtins, Conveyor's, the app's),
    the copy is an instance of it, so ``PermanentError``, ``RetryLater``, a handler's
    ``permanent=`` types and backoff functions see what they would see in a thread.
    Otherwise it is a :class:`HandlerError` subclass with the same name.
    """
    module = "__main__" if info["module"] == "__mp_main__" else info["module"]
    cls = _find_class(module, info["type"])
    args = info["args"] if info.get("args") is not None else [info["message"]]
    if cls is not None:
        try:
            exc = cls.__new__(cls, *args)
            exc.args = tuple(args)
            for name, value in info.get("attrs", {}).items():
                setattr(exc, name, value)
            str(exc)  # a class whose __str__ needs what its __init__ sets is not usable
            return exc
        except Exception:
            pass
    key = (module, info["type"])
    named = _rebuilt.get(key)
    if named is None:
        name = info["type"].rpartition(".")[2]
        named = _rebuilt[key] = type(name, (HandlerError,), {"__module__": module})
    return named(info["message"])


def _find_class(module: str, qualname: str) -> type[BaseException] | None:
    value: Any = sys.modules.get(module)
    for part in qualname.split(".") if value is not None else ():
        value = getattr(value, part, None)
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    return None
