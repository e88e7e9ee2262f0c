"""Scenarios where workers misbehave or are mistreated: 5 (poison input), 6 (clock skew) and
7 (churn: workers SIGKILLed and restarted at random while jobs flow).

Each returns a :class:`Report`; the tests assert on it, ``scripts/soak.py`` tabulates it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import statistics
import time
from dataclasses import dataclass

import redis.asyncio

import conveyor
from conveyor import AttemptCause, DeadReason, Immediate, JobSpec, JobState, PayloadError
from conveyor.keys import QueueKeys
from tests.conftest import wait_for
from tests.faults.common import Report, finished_ids
from tests.faults.harness import LOCK_TTL, STALL_CHECK_INTERVAL, Ledger, WorkerProcess, Workers

# --- 5. poison input -----------------------------------------------------------------------

#: The per-attempt timeout of the hanging handlers.
HANG_TIMEOUT = 3.0
#: Good jobs beside the poison must be done within this long (before any hang times out).
PROMPT = 2.0


@dataclass(frozen=True)
class Poison:
    """A bad job and how it must end: dead for ``reason``, after ``runs`` handler starts."""

    label: str
    spec: JobSpec
    reason: DeadReason
    error: str
    cause: AttemptCause
    runs: int
    garble: bool = False  # the stored payload is overwritten with bytes that are not JSON


POISONS = (
    Poison("bytes that are not JSON", JobSpec("record", {"n": 0}), DeadReason.INVALID_PAYLOAD,
           "PayloadError", AttemptCause.INVALID_PAYLOAD, 0, garble=True),
    Poison("JSON of the wrong shape (a list)", JobSpec("shape", [1, 2, 3], attempts=2),
           DeadReason.ATTEMPTS_EXHAUSTED, "TypeError", AttemptCause.ERROR, 2),
    Poison("JSON of the wrong shape (a key missing)", JobSpec("shape", {"user": {}}, attempts=2),
           DeadReason.ATTEMPTS_EXHAUSTED, "KeyError", AttemptCause.ERROR, 2),
    Poison("an unknown job name", JobSpec("no_such_job", {}), DeadReason.UNKNOWN_JOB,
           "UnknownJobError", AttemptCause.UNKNOWN_JOB, 0),
    Poison("a handler that always raises", JobSpec("fails", {}, attempts=3),
           DeadReason.ATTEMPTS_EXHAUSTED, "PoisonError", AttemptCause.ERROR, 3),
    Poison("an async handler that hangs", JobSpec("hangs", {}, attempts=2, timeout=HANG_TIMEOUT),
           DeadReason.ATTEMPTS_EXHAUSTED, "JobTimeoutError", AttemptCause.TIMEOUT, 2),
    Poison("a sync handler that hangs",
           JobSpec("hangs_sync", {}, attempts=1, timeout=HANG_TIMEOUT),
           DeadReason.ATTEMPTS_EXHAUSTED, "JobTimeoutError", AttemptCause.TIMEOUT, 1),
    Poison("a result that is not JSON", JobSpec("unencodable", {}), DeadReason.PERMANENT_ERROR,
           "PayloadError", AttemptCause.ERROR, 1),
    Poison("a result over the size limit", JobSpec("huge_result", {}),
           DeadReason.PERMANENT_ERROR, "PayloadError", AttemptCause.ERROR, 1),
)  # fmt: skip
GARBAGE = b"\x80\xff{not json"


async def _key_count(client: redis.asyncio.Redis, keys: QueueKeys) -> int:
    return len([key async for key in client.scan_iter(match=keys.prefix + "*", count=1000)])


async def _completed_within(queue: conveyor.Queue, ids: list[str], since: float) -> float:
    """Wait until every job of ``ids`` is completed; the last one's delay after ``since``."""

    async def finished() -> list[float] | None:
        jobs = [await queue.get_job(job_id) for job_id in ids]
        done = [j.finished_at for j in jobs if j and j.state is JobState.COMPLETED]
        return [t for t in done if t is not None] if len(done) == len(ids) else None

    times = await wait_for(finished, timeout=60, interval=0.05)
    return max(times) - since


async def _refuse_oversized(report: Report, queue: conveyor.Queue, url: str) -> str:
    """A payload over the limit is refused at enqueue, with the job beside it: nothing stored."""
    keys = queue.keys
    async with redis.asyncio.Redis.from_url(url) as client:
        before = await _key_count(client, keys)
        beside = JobSpec("record", {"n": -1}, id="beside-the-oversized-one")
        oversized = JobSpec("record", "x" * (queue.options.max_payload_bytes + 1), id="oversized")
        message = ""
        try:
            await queue.enqueue_many([beside, oversized])
        except PayloadError as exc:
            message = str(exc)
        report.check(bool(message), "an oversized payload was accepted")
        report.check(await _key_count(client, keys) == before, "a refused enqueue stored keys")
    for job_id in (beside.id, oversized.id):
        report.check(await queue.get_job(job_id or "") is None, f"{job_id} was stored")
    return message


async def poison(
    queue: conveyor.Queue, workers: Workers, *, copies: int = 1, good: int = 5
) -> Report:
    """Scenario 5: every kind of bad job (``copies`` of each, ``good`` good jobs after each)
    goes to one worker process; it stays up, good jobs are not held up, bad ones end dead.
    """
    # Hanging handlers hold a slot each (a sync one for good): leave ten for the rest.
    # No grace for unknown names: no other worker could know "no_such_job".
    (worker,) = await workers.start_ready(concurrency=10 + 2 * copies, unknown_job_grace=0.0)
    report = Report("poison input", 0, 0, 0, None)
    refused = await _refuse_oversized(report, queue, workers.server_url)
    bad: dict[str, Poison] = {}
    good_ids: list[str] = []
    await queue.pause()  # so the garbled payload is in place before any worker looks
    async with redis.asyncio.Redis.from_url(workers.server_url) as client:
        for _ in range(copies):
            for item in POISONS:
                (job,) = await queue.enqueue_many([item.spec])
                bad[job.id] = item
                if item.garble:
                    await client.hset(queue.keys.job(job.id), "payload", GARBAGE)
                beside = [JobSpec("record", {"n": n}) for n in range(good)]
                good_ids += [j.id for j in await queue.enqueue_many(beside)]
    resumed_at = time.time()
    await queue.resume()
    first_batch = await _completed_within(queue, good_ids, resumed_at)
    # More good jobs while the hanging handlers hold their slots.
    hanging = {job_id for job_id, item in bad.items() if item.spec.name.startswith("hangs")}
    await wait_for(lambda: hanging <= set(workers.ledger.counts()), timeout=30)
    later_at = time.time()
    later = await queue.enqueue_many([JobSpec("record", {"n": n}) for n in range(len(good_ids))])
    second_batch = await _completed_within(queue, [j.id for j in later], later_at)
    good_ids += [j.id for j in later]

    async def all_dead() -> bool:
        return (await queue.counts()).dead == len(bad)

    await wait_for(all_dead, timeout=30 + 3 * HANG_TIMEOUT, interval=0.1)
    runs = workers.ledger.counts()
    not_dead = 0
    for job_id, item in bad.items():
        job = await queue.get_job(job_id)
        assert job is not None
        not_dead += job.state is not JobState.DEAD
        ended = (job.state, job.dead_reason, job.error and job.error.type, runs[job_id])
        expected = (JobState.DEAD, item.reason, item.error, item.runs)
        report.check(ended == expected, f"{item.label}: ended {ended}, not {expected}")
        causes = [attempt.cause for attempt in job.history]
        report.check(causes == [item.cause] * max(item.runs, 1), f"{item.label}: attempts {causes}")
    missing = [job_id for job_id in good_ids if runs[job_id] != 1]
    report.lost = sum(1 for job_id in good_ids if not runs[job_id]) + not_dead
    report.duplicated = sum(1 for job_id in good_ids if runs[job_id] > 1)
    report.check(not missing, f"{len(missing)} good jobs did not run exactly once")
    for label, delay in (("beside", first_batch), ("after", second_batch)):
        report.check(delay <= PROMPT, f"good jobs enqueued {label} the poison took {delay:.2f}s")
    report.check(worker.alive(), "the worker died")
    report.check(workers.started == [worker], "another worker process was started")
    report.check(worker.pid in await workers.registered_pids(), "the worker left the queue")
    report.check("could not settle" not in worker.output(), "a job could not be settled")
    report.jobs = len(good_ids) + len(bad)
    report.recovery = None
    report.notes = (
        f"{len(bad)} bad jobs of {len(POISONS)} kinds all dead with the right reason; "
        f"{len(good_ids)} good jobs done {first_batch:.2f}s/{second_batch:.2f}s after they "
        f"could start; one worker pid throughout; oversized payload refused: {refused}"
    )
    return report


# --- 6. clock skew ---------------------------------------------------------------------------

#: A delayed job may start this much after it is due (the worker wakes at the due time).
LATE = 2.0


async def clock_skew(
    queue: conveyor.Queue,
    workers: Workers,
    *,
    offsets: tuple[float, ...] = (30.0, -30.0),
    delays: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0),
    copies: int = 2,
) -> Report:
    """Scenario 6: workers whose clocks are ``offsets`` seconds off hold long jobs beside a
    worker with the right time, all checking for stalled jobs twice a second: no lock is
    stolen. Then the skewed workers alone take delayed jobs: none starts before it is due.
    """
    report = Report("clock skew " + "/".join(f"{o:+g}s" for o in offsets), 0, 0, 0, None)
    ledger = workers.ledger
    long_seconds = LOCK_TTL * 2.5
    holders: dict[str, tuple[WorkerProcess, float]] = {}
    for offset in (*offsets, 0.0):
        # Started one by one with two slots, each worker takes exactly the two new jobs.
        (process,) = await workers.start_ready(concurrency=2, clock_offset=offset)
        jobs = await queue.enqueue_many([JobSpec("sleepy", {"seconds": long_seconds})] * 2)
        ids = {job.id for job in jobs}
        await wait_for(lambda: ids <= ledger.started_by(process.pid), timeout=30)  # noqa: B023
        holders.update(dict.fromkeys(ids, (process, offset)))

    async def long_done() -> bool:
        return (await queue.counts()).completed == len(holders)

    await wait_for(long_done, timeout=60, interval=0.1)
    runs = ledger.by_job()
    for job_id, (process, offset) in holders.items():
        job = await queue.get_job(job_id)
        assert job is not None and job.finished_at is not None
        ran = [run.pid for run in runs[job_id]]
        report.check(ran == [process.pid], f"a long job ran on {ran}, not [{process.pid}]")
        report.check((job.attempt, job.stalls, job.history) == (1, 0, ()), f"stolen: {job}")
        skew = job.result["clock"] - job.finished_at
        report.check(abs(skew - offset) < 5, f"worker clock off by {skew:.1f}s, not {offset}")

    # The worker with the right time leaves; then each skewed worker in turn is the only
    # one awake (the others are SIGSTOPped) while delayed and failing jobs come due.
    normal = next(p for p, offset in holders.values() if offset == 0.0)
    normal.send(signal.SIGTERM)
    await normal.exited()
    skewed = list({p.pid: p for p, offset in holders.values() if offset != 0.0}.values())
    spread: list[float] = []
    total = len(holders)
    for process in skewed:
        others = [p for p in skewed if p is not process]
        for other in others:
            other.send(signal.SIGSTOP)
        try:
            total += await _delayed_pass(report, queue, ledger, process, delays, copies, spread)
            total += await _failures_on_the_server_clock(report, queue, copies)
        finally:
            for other in others:
                other.send(signal.SIGCONT)
    counts = ledger.counts()
    report.jobs = total
    report.lost = total - len(counts)
    report.duplicated = sum(1 for n in counts.values() if n > 1)
    report.check(report.duplicated == 0, f"{report.duplicated} jobs ran twice")
    report.notes = (
        f"{len(holders)} jobs of {long_seconds:g}s (2.5 lock TTLs) ran once each, no lock "
        f"stolen; {len(spread)} delayed jobs started {min(spread):+.3f}s..{max(spread):+.2f}s "
        f"from due on the skewed workers; failed attempts recorded on the server's clock"
    )
    return report


async def _delayed_pass(
    report: Report,
    queue: conveyor.Queue,
    ledger: Ledger,
    process: WorkerProcess,
    delays: tuple[float, ...],
    copies: int,
    spread: list[float],
) -> int:
    """Delayed jobs run by one (skewed) worker: none before it is due, none much later."""
    sent = time.time()
    specs = [JobSpec("record", {"delay": d}, delay=d) for d in delays for _ in range(copies)]
    delayed = await queue.enqueue_many(specs)
    acked = time.time()
    ids = [job.id for job in delayed]
    await _completed_within(queue, ids, acked)
    runs = ledger.by_job()
    for job_id, spec in zip(ids, specs, strict=True):
        assert spec.delay is not None
        (run,) = runs[job_id]
        report.check(run.pid == process.pid, "a delayed job ran on a stopped worker")
        early = sent + spec.delay - run.at  # > 0: it ran before it was due
        late = run.at - (acked + spec.delay)
        spread.append(-early)
        report.check(early <= 0.005, f"a job delayed {spec.delay}s ran {early:.3f}s early")
        report.check(late <= LATE, f"a job delayed {spec.delay}s ran {late:.2f}s late")
    return len(ids)


async def _failures_on_the_server_clock(report: Report, queue: conveyor.Queue, count: int) -> int:
    """Jobs that fail on skewed workers: their attempt records must not mix up the clocks."""
    failing = await queue.enqueue_many([JobSpec("fails", {}, attempts=1)] * count)

    async def all_dead() -> list[conveyor.Job] | None:
        jobs = [await queue.get_job(job.id) for job in failing]
        dead = [job for job in jobs if job is not None and job.state is JobState.DEAD]
        return dead if len(dead) == len(failing) else None

    for job in await wait_for(all_dead, timeout=30, interval=0.1):
        assert job.finished_at is not None
        (attempt,) = job.history
        took = attempt.ended_at - attempt.started_at
        report.check(0 <= took < 5, f"a failed attempt lasted {took:+.1f}s by its record")
        gap = job.finished_at - attempt.ended_at
        report.check(abs(gap) < 5, f"an attempt ended {gap:+.1f}s off the server's clock")
    return len(failing)


# --- 7. churn --------------------------------------------------------------------------------


def _pid_of(worker_id: str) -> int:
    return int(worker_id.rsplit(".", 2)[1])  # worker ids are host.pid.suffix


#: Churn kills a worker every second or two: let jobs survive more stalls than the default.
CHURN_MAX_STALLS = 20


async def churn(
    queue: conveyor.Queue,
    workers: Workers,
    *,
    jobs: int = 2_000,
    worker_count: int = 4,
    concurrency: int = 10,
    chaos_seconds: float = 10.0,
    kill_every: tuple[float, float] = (1.0, 2.0),
    seed: int = 7,
) -> Report:
    """Scenario 7: ``jobs`` jobs through ``worker_count`` workers while a chaos loop SIGKILLs
    a random one every ``kill_every`` seconds (for ``chaos_seconds``) and starts another.
    """
    rng = random.Random(seed)
    settings = {"concurrency": concurrency, "max_stalls": CHURN_MAX_STALLS}
    pool = await workers.start_ready(worker_count, **settings)
    # No backoff after a stall, so a re-run shows how fast recovery is, not the backoff policy.
    specs = [
        JobSpec("sleepy", {"seconds": round(rng.uniform(0.05, 0.25), 3)}, backoff=Immediate())
        for _ in range(jobs)
    ]
    ids: list[str] = []
    for start in range(0, jobs, 1000):
        ids += [job.id for job in await queue.enqueue_many(specs[start : start + 1000])]

    async def all_done() -> bool:
        return (await queue.counts()).completed == jobs

    kills: dict[int, float] = {}
    chaos_until = time.monotonic() + chaos_seconds
    while time.monotonic() < chaos_until and not await all_done():
        await asyncio.sleep(rng.uniform(*kill_every))  # the chaos schedule, not a wait
        victim = rng.choice(pool)
        kills[victim.pid] = victim.send(signal.SIGKILL)
        await victim.exited()
        pool.remove(victim)
        pool.append(workers.start(**settings))
    await wait_for(all_done, timeout=60 + jobs / 20, interval=0.2)

    report = Report(f"churn: {worker_count} workers, SIGKILL every {kill_every[0]:g}-"
                    f"{kill_every[1]:g}s", jobs, 0, 0, None)  # fmt: skip
    counts = await queue.counts()
    completed, _ = await finished_ids(workers.server_url, queue.name)
    runs = workers.ledger.by_job()
    report.lost = len(set(ids) - completed)
    report.check(report.lost == 0, f"{report.lost} jobs not completed")
    report.check(counts.dead == 0, f"{counts.dead} jobs dead")
    rerun_after: list[float] = []  # from a kill until an interrupted job started again
    recovered_after: list[float] = []  # from a kill until a live worker reclaimed the job
    unexplained: set[str] = set()
    twice = {job_id: sorted(r, key=lambda run: run.at) for job_id, r in runs.items() if len(r) > 1}
    for job_id, history in twice.items():
        for earlier, later in itertools.pairwise(history):
            killed_at = kills.get(earlier.pid)
            if killed_at is None or earlier.at > killed_at:
                unexplained.add(job_id)  # it ran again, but not because its worker was killed
            else:
                rerun_after.append(later.at - killed_at)
        job = await queue.get_job(job_id)
        assert job is not None
        # A worker may also die between claiming a job and starting it: stalls >= re-runs.
        report.check(job.stalls >= len(history) - 1, f"{job_id}: {job.stalls} stalls")
        for attempt in job.history:
            killed_at = kills.get(_pid_of(attempt.worker))
            if attempt.cause is not AttemptCause.STALLED or killed_at is None:
                unexplained.add(job_id)
            else:
                recovered_after.append(attempt.ended_at - killed_at)
    report.check(not unexplained, f"{len(unexplained)} jobs ran again without a kill")
    report.duplicated = len(twice)
    report.check(bool(rerun_after), "no kill interrupted a job")
    report.recovery = max(recovered_after, default=None)
    median = statistics.median(rerun_after) if rerun_after else 0.0
    report.notes = (
        f"{len(kills)} SIGKILLs; {len(rerun_after)} interrupted runs, reclaimed at most "
        f"{report.recovery or 0:.1f}s after the kill (lock TTL {LOCK_TTL:g}s, stall check "
        f"{STALL_CHECK_INTERVAL:g}s) and started again {median:.1f}s after it (median; a "
        "first stall goes to the front of the queue, a later one backs off)"
    )
    return report
