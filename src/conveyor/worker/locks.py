"""Keeps a worker's locks alive from a thread of its own, and its heartbeat with them.

The thread has its own blocking connection, so a handler that hogs the CPU or blocks the
event loop (``time.sleep`` in an ``async def``) cannot make its own or its neighbours'
jobs look stalled to other workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from conveyor import connection
from conveyor.errors import ServerUnavailable
from conveyor.keys import QueueKeys
from conveyor.transport import SyncTransport
from conveyor.worker import calls
from conveyor.worker.options import WorkerOptions

log = logging.getLogger("conveyor.worker")


class LockKeeper(threading.Thread):
    """Renews every held lock in one call per queue per interval."""

    def __init__(
        self,
        url: str,
        keys: list[QueueKeys],
        held: dict[str, dict[str, str]],
        worker_id: str,
        options: WorkerOptions,
        on_lost: Callable[[str, list[tuple[str, str, bool]]], None],
        describe: Callable[[], bytes],
        on_cancel: Callable[[str, list[str]], None],
        on_failed: Callable[[str], None] = lambda why: None,
    ) -> None:
        super().__init__(name=f"conveyor-locks-{worker_id}", daemon=True)
        self.url = url
        self.keys = keys
        self.held = held
        self.worker_id = worker_id
        self.options = options
        self.on_lost = on_lost
        self.describe = describe
        self.on_cancel = on_cancel
        #: Told (from this thread) why the keeper gave up: the worker must stop, since
        #: without renewals its jobs look stalled to every other worker.
        self.on_failed = on_failed
        self._stop_event = threading.Event()
        self._transport = SyncTransport(connection.sync_client(url), url)
        self._failing = False

    def renew_once(self) -> None:
        """Renew all locks and the heartbeat now (also called once before the thread starts)."""
        lock_ttl_ms = round(self.options.lock_ttl * 1000)
        heartbeat_ms = round(self.options.heartbeat_ttl * 1000)
        batch = []
        snapshots = []
        info = self.describe()
        for keys in self.keys:
            held = self.held.get(keys.queue, {}).copy()
            snapshots.append(held)
            batch.append(
                calls.extend_locks(
                    keys, lock_ttl_ms, self.worker_id, heartbeat_ms, info, held.items()
                )
            )
        replies = self._transport.execute(batch)
        for keys, held, (lost, cancel, missing) in zip(self.keys, snapshots, replies, strict=True):
            if cancel:
                self.on_cancel(keys.queue, [raw.decode() for raw in cancel])
            if lost:
                # With the token renewed, so a report about an older attempt is ignored; and
                # whether the job's record is gone.
                self.on_lost(keys.queue, [(raw.decode(), held[raw.decode()], raw in missing)
                                          for raw in lost])  # fmt: skip

    def run(self) -> None:
        try:
            self._renew_until_stopped()
        except BaseException as exc:  # never a silent death: the worker stops with it
            log.critical("the lock keeper died; stopping the worker", exc_info=True)
            self.on_failed(f"its lock keeper died: {type(exc).__name__}: {exc}")

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
                    self.on_failed(f"its lock renewal kept failing: {type(exc).__name__}: {exc}")
                    return
                log.exception("lock renewal failed; trying again in %gs",
                              self.options.lock_renew_interval)  # fmt: skip

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=self.options.lock_renew_interval + 5)
        self._transport.close()
