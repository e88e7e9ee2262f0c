"""The jobs a worker session runs: each claim takes its lock, runs in a task of its own,
gives its slot back and is settled; at shutdown, the unfinished ones are handed back."""

from __future__ import annotations

import asyncio
import logging

from conveyor import defaults
from conveyor.errors import ServerUnavailable
from conveyor.worker import calls
from conveyor.worker.calls import Claim
from conveyor.worker.runner import Runner
from conveyor.worker.settler import Settler
from conveyor.worker.shared import Shared
from conveyor.worker.slots import Slots

log = logging.getLogger("conveyor.worker")


class Jobs:
    """The jobs in flight on one worker session (what its fetchers hand claims to)."""

    def __init__(self, shared: Shared, slots: Slots, runner: Runner, settler: Settler) -> None:
        self.shared = shared
        self.slots = slots
        self.runner = runner
        self.settler = settler
        #: One task per job being run or settled.
        self.tasks: set[asyncio.Task[None]] = set()
        #: Set once the jobs were cancelled for the shutdown (and are about to be handed
        #: back): a late handler settles nothing.
        self.closed = False
        self._loop = asyncio.get_running_loop()

    def start(self, claim: Claim) -> None:
        """Hold the claim's lock and run it in a task of its own."""
        self.shared.held.take(claim.queue, claim.id, claim.token)
        self.tasks.add(self._loop.create_task(self._process(claim)))

    async def _process(self, claim: Claim) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            try:
                outcome = await self.runner.run(claim, task)
            except Exception:  # a bug, not the job's fault: never a silently lost slot
                log.exception("could not run job %s; it runs again when its lock expires",
                              claim.id)  # fmt: skip
                self.slots.give()
                self.shared.held.let_go(claim.queue, claim.id, claim.token)
                return
            if not outcome.slot_freed:  # else given back at its timeout
                self.slots.give()
            if self.closed:  # it ignored the shutdown; its job was handed back meanwhile
                log.warning("job %s returned after the worker stopped; not recorded", claim.id)
                return
            await self.settler.settle(claim, outcome)
        finally:
            # Here rather than in a done callback: one callback less on the loop per job.
            self.tasks.discard(task)

    def cancel(self, queue: str, job_ids: list[str]) -> None:
        """Stop these running jobs: someone cancelled them."""
        for job_id in job_ids:
            if self.runner.cancel(queue, job_id):
                log.info("job %s was cancelled; stopping it", job_id)

    async def cancel_all(self) -> None:
        """Cancel the jobs still running; :meth:`hand_back` then returns those whose
        handler ignores it, and nothing settles any more."""
        if not self.tasks:
            self.closed = True
            return
        for task in self.tasks:
            task.cancel()
        _done, stuck = await asyncio.wait(set(self.tasks), timeout=defaults.SHUTDOWN_CANCEL_WAIT)
        self.closed = True
        if stuck:
            log.warning(
                "%d handlers did not stop within %.0fs of their cancellation; handing their "
                "jobs back anyway (the process may not exit until they return)",
                len(stuck), defaults.SHUTDOWN_CANCEL_WAIT,
            )  # fmt: skip

    async def hand_back(self) -> None:
        """Return every job whose lock is still held to its queue, for another worker."""
        held = self.shared.held.snapshot()
        calls_ = [
            calls.release(keys, self.shared.queue_options, held[queue].items())
            for queue, keys in self.shared.queues.items()
            if held.get(queue)
        ]
        if not calls_:
            return
        try:
            replies = await self.shared.transport.execute(calls_)
            log.info("handed back %d active jobs", sum(int(r) for r in replies))
        except ServerUnavailable as exc:
            log.warning("could not hand back active jobs (they return when their locks "
                        "expire): %s", exc)  # fmt: skip
