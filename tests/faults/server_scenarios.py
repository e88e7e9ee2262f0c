"""Scenarios on a private server that is crashed, stopped or filled while workers run:
3 (crash and restart with the AOF), 4 (server unreachable) and 8 (bounded memory).

Each returns a :class:`Report`; the tests assert on it, ``scripts/soak.py`` tabulates it.
"""

from __future__ import annotations

import random
import time

import redis.asyncio

import conveyor
from conveyor import JobSpec, QueueOptions, ServerUnavailable
from conveyor.keys import QueueKeys
from tests.conftest import wait_for
from tests.faults.common import (
    Producers,
    Refusal,
    Report,
    Window,
    finished_ids,
    judge_windows,
    resumed,
    sleepy,
    wait_until_settled,
)
from tests.faults.harness import PrivateServer, WorkerProcess, Workers

WORKERS = 3
CONCURRENCY = 10
#: A producer must hear that the server is away within this long (one bounded retry).
REFUSAL_DEADLINE = 10.0


def _judge_refusals(report: Report, server: PrivateServer, refusals: list[Refusal]) -> str:
    report.check(bool(refusals), "no producer was told that the server was away")
    unclear = [r.error for r in refusals if not isinstance(r.error, ServerUnavailable)]
    report.check(not unclear, f"producers got other errors than ServerUnavailable: {unclear[:3]}")
    unnamed = [r.error for r in refusals if server.url not in str(r.error)]
    report.check(not unnamed, f"ServerUnavailable did not name the server: {unnamed[:1]}")
    slowest = max((r.seconds for r in refusals), default=0.0)
    report.check(slowest <= REFUSAL_DEADLINE, f"a producer waited {slowest:.1f}s for its error")
    return f"{len(refusals)} enqueues refused with ServerUnavailable (slowest {slowest:.1f}s)"


async def _stay_down(began: float, downtime: float, processes: list[WorkerProcess]) -> None:
    """Wait until the server has been away ``downtime`` seconds; every worker must live on."""

    def waited_out() -> bool:
        for process in processes:
            assert process.alive(), f"worker {process.pid} died during the outage"
        return time.time() - began >= downtime

    await wait_for(waited_out, timeout=downtime + 30, interval=0.1)


def _judge_workers(report: Report, workers: Workers, processes: list[WorkerProcess]) -> None:
    report.check(all(p.alive() for p in processes), "a worker process died")
    report.check(len(workers.started) == len(processes), "a worker had to be started again")


async def server_crash(
    server: PrivateServer,
    workers: Workers,
    *,
    how: str,
    producers: int = 3,
    before: int = 30,
    after: int = 30,
    downtime: float = 3.0,
    seed: int = 3,
) -> Report:
    """Scenario 3: SIGKILL the server (``how="SIGKILL"``) or ``SHUTDOWN NOSAVE`` it while
    producers enqueue durably and workers run jobs; start it again on the same data folder
    after ``downtime`` seconds (longer than the lock TTL, so running jobs' locks expire).
    """
    assert how in ("SIGKILL", "SHUTDOWN NOSAVE")
    report = Report(f"server {how} + restart", 0, 0, 0, None)
    processes = await workers.start_ready(WORKERS, concurrency=CONCURRENCY)
    name, durable = workers.queue_name, conveyor.Durable()
    flow = Producers(server.url, name, producers, sleepy(random.Random(seed)), durable=durable)
    async with conveyor.Queue(name, url=server.url) as monitor, flow:

        async def busy() -> bool:
            counts = await monitor.counts()
            return counts.completed >= before and counts.active > 0

        await wait_for(busy, timeout=60, interval=0.05)
        # Completions seen now and confirmed in the AOF (WAITAOF) survive a crash of the
        # server process; later ones may be lost with the last writes.
        completed, _ = await finished_ids(server.url, name)
        await server.fsync()
        began = await (server.kill() if how == "SIGKILL" else server.shutdown_nosave())
        await wait_for(lambda: flow.all_refused_since(began), timeout=30)
        await _stay_down(began, downtime, processes)
        ended = await server.start()
        report.recovery = await resumed(workers.ledger, processes, ended)
        await wait_for(lambda: flow.acked_since(ended) >= after, timeout=60)
        await flow.stop()
        acked = flow.ids()
        await wait_until_settled(monitor, len(acked), timeout=60)
        refusals = flow.refused_since(began)

    completed_now, _ = await finished_ids(server.url, name)
    window = Window(began, ended, frozenset(completed))
    runs = workers.ledger.by_job()
    at_risk = judge_windows(report, runs, acked, completed_now, [window])
    _judge_workers(report, workers, processes)
    report.jobs = len(acked)
    refused = _judge_refusals(report, server, refusals)
    report.notes = (
        f"down {ended - began:.1f}s; {refused}; {len(completed)} completions in the AOF "
        f"before the fault, {at_risk} jobs running or finishing at it"
    )
    return report


async def server_outage(
    server: PrivateServer,
    workers: Workers,
    *,
    downtimes: tuple[float, ...] = (5.0, 30.0),
    producers: int = 3,
    between: int = 30,
    seed: int = 4,
) -> Report:
    """Scenario 4: the server is away for each of ``downtimes`` (stopped, then started again)
    while producers enqueue and workers run; the workers must resume by themselves.
    """
    label = " then ".join(f"{d:g}s" for d in downtimes)
    report = Report(f"server unreachable {label}", 0, 0, 0, None)
    processes = await workers.start_ready(WORKERS, concurrency=CONCURRENCY)
    name = workers.queue_name
    windows: list[Window] = []
    recoveries: list[float] = []
    flow = Producers(server.url, name, producers, sleepy(random.Random(seed)))
    async with conveyor.Queue(name, url=server.url) as monitor, flow:
        mark = time.time()
        for downtime in downtimes:

            async def busy(since: float = mark) -> bool:
                return flow.acked_since(since) >= between and (await monitor.counts()).active > 0

            await wait_for(busy, timeout=60, interval=0.05)
            completed, _ = await finished_ids(server.url, name)
            began = await server.stop()  # a clean SHUTDOWN: the AOF is flushed

            await _stay_down(began, downtime, processes)
            report.check(flow.all_refused_since(began), "a producer was never refused")
            mark = await server.start()
            windows.append(Window(began, mark, frozenset(completed)))
            recoveries.append(await resumed(workers.ledger, processes, mark))
        await wait_for(lambda: flow.acked_since(mark) >= between, timeout=60)
        await flow.stop()
        acked = flow.ids()
        await wait_until_settled(monitor, len(acked), timeout=60)
        refusals = flow.refused_since(windows[0].began)

    completed_now, _ = await finished_ids(server.url, name)
    at_risk = judge_windows(report, workers.ledger.by_job(), acked, completed_now, windows)
    _judge_workers(report, workers, processes)
    report.jobs = len(acked)
    report.recovery = max(recoveries)
    refused = _judge_refusals(report, server, refusals)
    resumes = ", ".join(f"{r:.1f}s" for r in recoveries)
    report.notes = f"workers resumed after {resumes}; {refused}; {at_risk} jobs active at a stop"
    return report


async def bounded_memory(
    server: PrivateServer,
    workers: Workers,
    *,
    jobs: int = 20_000,
    keep: int = 1_000,
    dead_keep: int = 100,
    events_maxlen: int = 2_000,
    batch: int = 250,
    backlog: int = 1_000,
    pad: int = 1024,
    dead_every: int = 25,
    allowance: int = 4 * 2**20,
) -> Report:
    """Scenario 8: many jobs (every ``dead_every``-th one fails for good) flow through a queue
    with retention settings, fed no faster than the workers take them (a bounded backlog);
    the server's memory, the finished sets and the events stream stay bounded.
    """
    report = Report(f"bounded memory ({jobs} jobs)", jobs, 0, 0, None)
    name = workers.queue_name
    await workers.start_ready(
        4, concurrency=20, completed_keep_count=keep, dead_keep_count=dead_keep,
        events_maxlen=events_maxlen,
    )  # fmt: skip
    options = QueueOptions(
        completed_keep_count=keep, dead_keep_count=dead_keep, events_maxlen=events_maxlen
    )
    payload = {"pad": "x" * pad}
    samples: list[tuple[int, int]] = []  # (jobs enqueued, used_memory)
    ids: list[str] = []
    async with conveyor.Queue(name, url=server.url, options=options) as producer:

        async def backlog_below(limit: int) -> bool:
            counts = await producer.counts()
            return counts.waiting + counts.delayed + counts.active < limit

        for start in range(0, jobs, batch):
            await wait_for(lambda: backlog_below(backlog), timeout=60, interval=0.01)
            specs = [
                JobSpec("fails", payload, attempts=1)
                if n % dead_every == 0
                else JobSpec("record", payload)
                for n in range(start, min(start + batch, jobs))
            ]
            ids += [job.id for job in await producer.enqueue_many(specs)]
            samples.append((len(ids), await server.used_memory()))
        await wait_for(lambda: backlog_below(1), timeout=60, interval=0.05)
    final = await server.used_memory()

    keys = QueueKeys(name)
    async with redis.asyncio.Redis.from_url(server.url) as client:
        kept = await client.zcard(keys.key("completed"))
        dead = await client.zcard(keys.key("dead"))
        stream = await client.xlen(keys.key("events"))
        hashes = 0
        async for _ in client.scan_iter(match=keys.job("*"), count=1000):
            hashes += 1
    runs = workers.ledger.counts()
    report.lost = len(set(ids) - set(runs))
    report.duplicated = sum(1 for job_id in ids if runs[job_id] > 1)
    report.check(report.lost == 0, f"{report.lost} jobs never ran")
    report.check(report.duplicated == 0, f"{report.duplicated} jobs ran twice without a fault")
    report.check(kept == keep, f"{kept} completed jobs kept, not {keep}")
    report.check(dead == dead_keep, f"{dead} dead jobs kept, not {dead_keep}")
    report.check(hashes == kept + dead, f"{hashes} job hashes for {kept + dead} finished jobs")
    # XADD MAXLEN ~ trims whole stream nodes (stream-node-max-entries, 100 by default).
    report.check(stream <= events_maxlen + 100, f"{stream} events for a cap of {events_maxlen}")
    warm = next(i for i, (count, _) in enumerate(samples) if count >= jobs // 4)
    baseline = samples[warm][1]
    peak = max(memory for _, memory in samples[warm:])
    growth = peak - baseline
    report.check(growth <= allowance, f"used_memory grew by {growth / 2**20:.1f} MiB")
    unbounded = (jobs - samples[warm][0]) * pad
    mib = 2**20
    report.notes = (
        f"used_memory {baseline / mib:.1f} MiB after {samples[warm][0]} jobs, peak "
        f"{peak / mib:.1f} MiB, end {final / mib:.1f} MiB (payloads alone would add "
        f"{unbounded / mib:.0f} MiB unbounded); kept {kept} completed, {dead} dead, "
        f"{hashes} job hashes; events XLEN {stream} (cap {events_maxlen})"
    )
    return report
