"""Keeps a worker's locks alive from a thread of its own, and its heartbeat with them.

The thread has its own blocking connection, so a handler that hogs the CPU or blocks the
event loop (``time.sleep`` in an ``async def``) cannot make its own or its neighbours'
jobs look stalled to other workers.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from conveyor import connection
from conveyor.errors import ServerUnavailable
from conveyor.transport import SyncTransport
from conveyor.worker import calls
from conveyor.worker.held import MISSING
from conveyor.worker.shared import Shared

log = logging.getLogger("conveyor.worker")


class LockEvents(Protocol):
    """What the lock keeper asks of, and tells, its worker session; called from its thread."""

    def describe(self) -> bytes:
        """The worker's self-description, stored with each heartbeat."""

    def cancel_requested(self, queue: str, job_ids: list[str]) -> None:
        """Someone cancelled these running jobs (``queue.cancel``): stop them."""

    def keeper_failed(self, why: str) -> None:
        """The keeper gave up: the worker must stop, since without renewals its jobs look
        stalled to every other worker."""


class LockKeeper(threading.Thread):
    """Renews every held lock in one call per queue per interval.

    A lock the server reports lost is let go of here (and logged), so the session stops
    renewing it."""

    def __init__(self, url: str, shared: Shared, events: LockEvents) -> None:
        super().__init__(name=f"conveyor-locks-{shared.worker_id}", daemon=True)
        self.url = url
        self.keys = list(shared.queues.values())
        self.held = shared.held
        self.worker_id = shared.worker_id
        self.options = shared.options
        self.events = events
        self._stop_event = threading.Event()
        self._transport = SyncTransport(connection.sync_client(url), url)
        self._failing = False

    def renew_once(self) -> None:
        """Renew all locks and the heartbeat now (also called once before the thread starts)."""
        lock_ttl_ms = round(self.options.lock_ttl * 1000)
        heartbeat_ms = round(self.options.heartbeat_ttl * 1000)
        info = self.events.describe()
        snapshot = self.held.snapshot()
        held = [snapshot.get(keys.queue, {}) for keys in self.keys]
        batch = [
            calls.extend_locks(keys, lock_ttl_ms, self.worker_id, heartbeat_ms, info, locks.items())
            for keys, locks in zip(self.keys, held, strict=True)
        ]
        replies = self._transport.execute(batch)
        for keys, locks, (lost, cancel, missing) in zip(self.keys, held, replies, strict=True):
            if cancel:
                self.events.cancel_requested(keys.queue, [raw.decode() for raw in cancel])
            for raw in lost:
                job_id = raw.decode()
                # With the token renewed: if the job was settled (or even fetched again)
                # since, this report is about an older attempt, and ignored.
                if self.held.let_go(keys.queue, job_id, locks[job_id]):
                    if raw in missing:
                        log.warning(MISSING, job_id)
                    else:
                        log.warning("lost the lock of job %s; another worker may run it", job_id)

    def run(self) -> None:
        try:
            self._renew_until_stopped()
        except BaseException as exc:  # never a silent death: the worker stops with it
            log.critical("the lock keeper died; stopping the worker", exc_info=True)
            self.events.keeper_failed(f"its lock keeper died: {type(exc).__name__}: {exc}")

    def _renew_until_stopped(self) -> None:
        failures = 0  # in a row, other than outages (which the fetchers report)
        while not self._stop_event.wait(self.options.lock_renew_interval):
            try:
                self.renew_once()
                if self._failing:
                    log.warning("lock renewal works again")
                self._failing = False
                failures = 0
            except ServerUnavailable as exc:
                if not self._failing:
                    log.warning("cannot renew locks: %s", exc)
                self._failing = True
            except Exception as exc:
                failures += 1
                if failures > self.options.task_restarts:
                    log.critical("lock renewal failed %d times in a row; stopping the worker",
                                 failures, exc_info=True)  # fmt: skip
                    self.events.keeper_failed(
                        f"its lock renewal kept failing: {type(exc).__name__}: {exc}"
                    )
                    return
                log.exception("lock renewal failed; trying again in %gs",
                              self.options.lock_renew_interval)  # fmt: skip

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=self.options.lock_renew_interval + 5)
        self._transport.close()
