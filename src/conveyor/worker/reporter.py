"""Collects progress and log lines from running handlers and stores them in batches.

Handlers call ``ctx.progress()`` and ``ctx.log()`` from the event loop or from a thread;
neither blocks on Redis. Reports are sent together in one script call soon after, and
always before the job is settled, so nothing a handler reported is lost to a race.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from typing import Any

from conveyor import codec, defaults
from conveyor.errors import ServerUnavailable
from conveyor.worker import calls
from conveyor.worker.shared import Shared

log = logging.getLogger("conveyor.worker")


class _Pending:
    __slots__ = ("lines", "progress", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.progress = b""
        self.lines: list[str] = []


class Reporter:
    """Buffers reports per job and flushes them from the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, shared: Shared) -> None:
        self.loop = loop
        self.shared = shared
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._scheduled = False
        self._flusher: asyncio.Task[None] | None = None

    def progress(self, queue: str, job_id: str, token: str, value: Any) -> None:
        """Record the job's progress (a number or a small JSON value)."""
        data = codec.encode(value, limit=defaults.MAX_PROGRESS_BYTES, what="progress")
        with self._lock:
            self._entry(queue, job_id, token).progress = data
        self._schedule()

    def log(self, queue: str, job_id: str, token: str, message: str) -> None:
        """Append one line to the job's log."""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        line = " ".join(str(message).split("\n"))[: defaults.MAX_LOG_LINE_CHARS]
        with self._lock:
            self._entry(queue, job_id, token).lines.append(f"{stamp} {line}\n")
        self._schedule()

    def unsettled(self, queue: str, job_id: str) -> bool:
        """Whether :meth:`flush` must run before this job is settled, so its reports land
        first (a plain call: most jobs report nothing)."""
        return (queue, job_id) in self._pending or self._flusher is not None

    def _entry(self, queue: str, job_id: str, token: str) -> _Pending:
        entry = self._pending.get((queue, job_id))
        if entry is None or entry.token != token:
            entry = self._pending[(queue, job_id)] = _Pending(token)
        return entry

    def _schedule(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._start_flush)

    def _start_flush(self) -> None:
        with self._lock:
            self._scheduled = False
        if self._flusher is None:
            self._flusher = self.loop.create_task(self._flush_all())

    async def flush(self) -> None:
        """Send everything reported so far (one flusher at a time keeps reports in order)."""
        if self._flusher is None:
            self._flusher = self.loop.create_task(self._flush_all())
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                await self._send()
        finally:
            self._flusher = None

    async def _send(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        by_queue: dict[str, list[tuple[str, str, bytes, bytes]]] = {}
        for (queue, job_id), entry in pending.items():
            logs = "".join(entry.lines).encode()
            by_queue.setdefault(queue, []).append((job_id, entry.token, entry.progress, logs))
        queues, options = self.shared.queues, self.shared.queue_options
        batch = [
            calls.report(queues[queue], options, reports) for queue, reports in by_queue.items()
        ]
        try:
            await self.shared.transport.execute(batch)
        except ServerUnavailable as exc:
            log.warning("could not store progress/logs of %d jobs: %s", len(pending), exc)
        except Exception:  # reports are best effort; a flusher that died would lose the rest
            log.exception("could not store progress/logs of %d jobs", len(pending))
