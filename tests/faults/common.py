"""What every fault scenario shares: producers that keep enqueueing through an outage, the
fault windows they live through, and the report that judges the ledger against them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio

import conveyor
from conveyor import JobSpec, NotDurableError, ServerUnavailable
from conveyor.keys import QueueKeys
from tests.conftest import wait_for
from tests.faults.harness import Execution, Ledger, WorkerProcess


@dataclass
class Report:
    """One row of the soak table, and the invariants the scenario saw broken (none, we hope)."""

    scenario: str
    jobs: int
    lost: int
    duplicated: int
    recovery: float | None  # seconds until the system was working again, where it applies
    notes: str = ""
    violations: list[str] = field(default_factory=list)

    def check(self, holds: bool, violation: str) -> None:
        if not holds:
            self.violations.append(violation)

    def line(self) -> str:
        recovery = "-" if self.recovery is None else f"{self.recovery:.2f}s"
        return (
            f"{self.scenario}: {self.jobs} jobs, {self.lost} lost, {self.duplicated} duplicated, "
            f"recovery {recovery}; {self.notes}"
        )


@dataclass(frozen=True)
class Refusal:
    """An enqueue that raised: when, after how long, and what it said."""

    at: float
    seconds: float
    error: Exception


class Producer:
    """Enqueues jobs under ids of its own, one call at a time, until told to stop.

    A call that fails (server away) may or may not have stored the job, so the producer
    retries the same id, which is idempotent; an id counts as acknowledged only once a call
    for it has returned. It stops only between ids, so every stored id is acknowledged.
    """

    def __init__(
        self,
        queue: conveyor.Queue,
        prefix: str,
        make: Callable[[], JobSpec],
        *,
        durable: conveyor.Durable | None = None,
        pace: float = 0.02,
    ) -> None:
        self.queue = queue
        self.prefix = prefix
        self.make = make
        self.durable = durable
        self.pace = pace
        self.acked: list[tuple[str, float]] = []  # (id, when the enqueue returned)
        self.refusals: list[Refusal] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            spec = dataclasses.replace(self.make(), id=f"{self.prefix}-{len(self.acked)}")
            while True:
                started = time.monotonic()
                try:
                    await self.queue.enqueue_many([spec], durable=self.durable)
                    break
                except (ServerUnavailable, NotDurableError) as exc:
                    self.refusals.append(Refusal(time.time(), time.monotonic() - started, exc))
                    await asyncio.sleep(self.pace)
            self.acked.append((spec.id or "", time.time()))
            await asyncio.sleep(self.pace)

    def ids(self) -> set[str]:
        return {job_id for job_id, _ in self.acked}

    def acked_since(self, moment: float) -> int:
        return sum(1 for _, at in self.acked if at > moment)

    def refused_since(self, moment: float) -> list[Refusal]:
        return [r for r in self.refusals if r.at >= moment]


class Producers:
    """A few producers, each with its own connection, running in the background."""

    def __init__(
        self,
        url: str,
        queue: str,
        count: int,
        make: Callable[[], JobSpec],
        *,
        durable: conveyor.Durable | None = None,
        pace: float = 0.02,
    ) -> None:
        self.queues = [conveyor.Queue(queue, url=url) for _ in range(count)]
        self.producers = [
            Producer(q, f"p{i}", make, durable=durable, pace=pace)
            for i, q in enumerate(self.queues)
        ]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Producers:
        self._tasks = [asyncio.create_task(p.run(self._stop)) for p in self.producers]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self.queues:
            await queue.close()

    def ids(self) -> set[str]:
        return set().union(*(p.ids() for p in self.producers))

    def acked_since(self, moment: float) -> int:
        return sum(p.acked_since(moment) for p in self.producers)

    def refused_since(self, moment: float) -> list[Refusal]:
        return [r for p in self.producers for r in p.refused_since(moment)]

    def all_refused_since(self, moment: float) -> bool:
        return all(p.refused_since(moment) for p in self.producers)


def sleepy(rng: random.Random, low: float = 0.05, high: float = 0.3) -> Callable[[], JobSpec]:
    """Jobs that sleep a little, so some are always running when the fault strikes."""
    return lambda: JobSpec("sleepy", {"seconds": round(rng.uniform(low, high), 3)})


@dataclass(frozen=True)
class Window:
    """A fault: from the server being gone to it answering again, and the completions the
    server had made durable before it went.
    """

    began: float
    ended: float
    completed_before: frozenset[str]


async def finished_ids(url: str, queue: str) -> tuple[set[str], set[str]]:
    """The ids in the queue's completed and dead sets."""
    keys = QueueKeys(queue)
    async with redis.asyncio.Redis.from_url(url) as client:
        completed = await client.zrange(keys.key("completed"), 0, -1)
        dead = await client.zrange(keys.key("dead"), 0, -1)
    return {i.decode() for i in completed}, {i.decode() for i in dead}


async def wait_until_settled(queue: conveyor.Queue, total: int, timeout: float) -> None:
    """Wait until ``total`` jobs are finished (completed or dead) and none is left to run."""

    async def settled() -> bool:
        c = await queue.counts()
        return c.completed + c.dead == total and c.waiting + c.delayed + c.active == 0

    await wait_for(settled, timeout=timeout, interval=0.1)


async def resumed(ledger: Ledger, processes: Iterable[WorkerProcess], since: float) -> float:
    """Wait until every worker has started a job after ``since``; the slowest one's delay."""
    processes = list(processes)

    def firsts() -> dict[int, float] | None:
        first: dict[int, float] = {}
        for run in ledger.executions():
            if run.at > since and run.pid not in first:
                first[run.pid] = run.at
        for process in processes:
            if not process.alive():
                raise AssertionError(f"worker {process.pid} died:\n{process.output()[-5000:]}")
        return first if all(p.pid in first for p in processes) else None

    first = await wait_for(firsts, timeout=60, interval=0.1)
    return max(first.values()) - since


def judge_windows(
    report: Report,
    runs: dict[str, list[Execution]],
    acked: set[str],
    completed: set[str],
    windows: list[Window],
) -> int:
    """Check the ledger against the faults: nothing lost, nothing completed runs again, and
    only jobs at risk at a fault ran twice; returns how many jobs were at risk.

    A job is at risk at a fault when it had been fetched before it and its completion was
    not durable yet: still running, or finished but not (durably) acknowledged.
    """
    lost = acked - completed
    never_ran = acked - set(runs)
    report.lost = len(lost | never_ran)
    report.check(not lost, f"{len(lost)} acknowledged jobs not completed: {sorted(lost)[:5]}")
    report.check(not never_ran, f"{len(never_ran)} acknowledged jobs never ran")
    for window in windows:
        again = {
            job_id
            for job_id in window.completed_before
            if any(run.at >= window.began for run in runs.get(job_id, ()))
        }
        report.check(not again, f"{len(again)} jobs completed before a fault ran again")
    first = {job_id: min(run.at for run in r) for job_id, r in runs.items()}
    at_risk = {
        job_id
        for job_id, started in first.items()
        # Nothing can be fetched while the server is away, so a job that started before it
        # was back was fetched before the fault (its start may be logged a bit after).
        if any(started < w.ended and job_id not in w.completed_before for w in windows)
    }
    twice = {job_id for job_id, r in runs.items() if len(r) > 1}
    report.duplicated = len(twice)
    unexplained = twice - at_risk
    examples = {
        job_id: [(run.pid, round(run.at - windows[0].began, 3)) for run in runs[job_id]]
        for job_id in sorted(unexplained)[:3]
    }
    faults = [(round(w.began - windows[0].began, 3), round(w.ended - windows[0].began, 3))
              for w in windows]  # fmt: skip
    report.check(
        not unexplained,
        f"{len(unexplained)} jobs ran twice without being at risk, e.g. (pid, seconds after "
        f"the first fault began): {examples}; faults (began, ended): {faults}",
    )
    return len(at_risk)
