"""Process handlers: children that grind, hang, crash, leak and get recycled; the worker lives.

Handlers come from :mod:`tests.process_handlers`, since a child imports its handler by name.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import conveyor
from conveyor import AttemptCause, DeadReason, Immediate, JobContext, JobState
from conveyor.worker.handlers import make_handler
from conveyor.worker.processes import ProcessPool, rebuild_error
from tests import process_handlers as ph
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)


def make_worker(queue: conveyor.Queue, url: str, *handlers: Any, **options: Any) -> conveyor.Worker:
    """A worker whose plain ``def`` handlers all run in child processes."""
    options = {"process_handlers": True, "child_kill_grace": 0.5, **options}
    return conveyor.Worker(
        queue.name, url=url, handlers=handlers,
        options=dataclasses.replace(WORKER_TEST_OPTIONS, **options),
    )  # fmt: skip


async def finished(queue: conveyor.Queue, job_id: str) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job is not None and job.state in (JobState.COMPLETED, JobState.DEAD) else None


async def run_one(queue: conveyor.Queue, name: str, payload: Any, **options: Any) -> conveyor.Job:
    job = await queue.enqueue(name, payload, **options)
    done: conveyor.Job = await wait_for(lambda: finished(queue, job.id), timeout=30)
    return done


def ledger_pids(path: Path) -> dict[tuple[str, int], int]:
    """(job id, attempt) -> the pid that ran it, from the handlers' own record."""
    out = {}
    for line in path.read_text().splitlines():
        job_id, attempt, pid, _ = line.split()
        out[(job_id, int(attempt))] = int(pid)
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- registration (no server) -----------------------------------------------------------


def test_a_handler_a_child_cannot_import_is_refused_at_registration() -> None:
    worker = conveyor.Worker("q")

    def nested(ctx: JobContext, payload: Any) -> None: ...

    with pytest.raises(ValueError, match=r"cannot run in a child process.*closure"):
        worker.handler(process=True)(nested)
    with pytest.raises(ValueError, match="lambda"):
        worker.add_handler(make_handler(lambda ctx, p: p, "anon", process=True))

    async def coroutine(ctx: JobContext, payload: Any) -> None: ...

    with pytest.raises(TypeError, match="async def"):
        worker.handler(process=True)(coroutine)
    # Worker-wide: plain defs go to the pool (and must be importable), async defs do not.
    everywhere = conveyor.Worker("q", options=conveyor.WorkerOptions(process_handlers=True))
    with pytest.raises(ValueError, match="define it at the top level"):
        everywhere.handler(nested)
    everywhere.handler(coroutine)
    everywhere.handler(name="threaded", process=False)(nested)
    everywhere.handler(ph.spin)
    assert {n: h.process for n, h in everywhere.handlers.items()} == {
        "coroutine": False, "threaded": False, "spin": True,
    }  # fmt: skip
    with pytest.raises(ValueError, match="processes must be at least 1"):
        conveyor.WorkerOptions(processes=0)
    with pytest.raises(ValueError, match="process_start_method"):
        conveyor.WorkerOptions(process_start_method="fork")


def test_errors_from_a_child_keep_their_class_when_the_worker_knows_it() -> None:
    def info(module: str, type_: str, *args: Any, **attrs: Any) -> dict[str, Any]:
        message = str(args[0]) if args else ""
        return {"module": module, "type": type_, "message": message, "args": list(args),
                "attrs": attrs, "traceback": ""}  # fmt: skip

    value = rebuild_error(info("builtins", "ValueError", "bad value", 42))
    assert type(value) is ValueError and value.args == ("bad value", 42)
    later = rebuild_error(info("conveyor.errors", "RetryLater", "not yet", delay=0.5))
    assert isinstance(later, conveyor.RetryLater) and later.delay == 0.5
    quota = rebuild_error(info("tests.process_handlers", "QuotaError", "over", status=429))
    assert isinstance(quota, ph.QuotaError) and quota.status == 429
    unknown = rebuild_error(info("somewhere.else", "WeirdError", "odd"))
    assert type(unknown).__name__ == "WeirdError" and str(unknown) == "odd"


# --- against a real server --------------------------------------------------------------


async def test_a_cpu_bound_process_job_does_not_delay_async_jobs(
    queue: conveyor.Queue, server_url: str, tmp_path: Path
) -> None:
    worker = make_worker(queue, server_url, ph.spin, processes=2)
    starts: list[float] = []

    @worker.handler
    async def ping(ctx: JobContext, payload: float) -> float:
        starts.append(time.time() - payload)
        return payload

    ledger = tmp_path / "ledger"
    async with RunningWorker(worker):
        grinders = [
            await queue.enqueue("spin", {"seconds": 4.0, "ledger": str(ledger)}) for _ in range(2)
        ]
        await wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) == 2)
        for count in range(1, 6):
            await queue.enqueue("ping", time.time())
            await wait_for(lambda count=count: len(starts) == count, timeout=10)
        for job in grinders:  # the async jobs ran while both children were grinding
            assert (await queue.get_job(job.id)).state is JobState.ACTIVE
        results = [await wait_for(lambda j=j: finished(queue, j.id)) for j in grinders]
    print(f"async job start latency while children grind: max {max(starts) * 1000:.0f} ms")
    assert max(starts) < 1.0
    pids = {job.result["pid"] for job in results}
    assert len(pids) == 2 and os.getpid() not in pids


async def test_payloads_and_results_cross_as_the_same_json_as_in_a_thread(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, processes=1)
    worker.add_handler(make_handler(ph.echo, "in_process", process=True))
    worker.add_handler(make_handler(ph.echo, "in_thread", process=False))
    worker.add_handler(make_handler(ph.whoami, process=True))
    payloads = [
        {"text": "héllo ✓ \U0001f600", "n": 2**53 + 1, "f": 0.1, "neg": -1e-300, "none": None,
         "list": [True, False, [], {}], "nested": {"a": {"b": ["c"]}}},
        "plain", 0, None, [1, 2.5, "x"],
    ]  # fmt: skip
    async with RunningWorker(worker):
        for payload in payloads:
            via_process = await run_one(queue, "in_process", payload)
            via_thread = await run_one(queue, "in_thread", payload)
            assert via_process.state is via_thread.state is JobState.COMPLETED
            assert via_process.raw_result == via_thread.raw_result
            assert via_process.result == payload
        seen = await run_one(queue, "whoami", None, attempts=4)
    assert seen.result["pid"] != os.getpid()
    assert seen.result == {
        "pid": seen.result["pid"], "id": seen.id, "name": "whoami", "queue": queue.name,
        "attempt": 1, "max_attempts": 4, "token": seen.result["token"], "worker_id": worker.id,
    }  # fmt: skip


async def test_errors_raised_in_a_child_follow_the_same_rules_as_in_a_thread(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, processes=1)
    worker.handler(ph.fail, backoff=Immediate(), permanent=(ph.QuotaError,))
    async with RunningWorker(worker):
        value = await run_one(queue, "fail", "value", attempts=2)
        permanent = await run_one(queue, "fail", "permanent", attempts=3)
        later = await run_one(queue, "fail", "retry_later", attempts=2)
        quota = await run_one(queue, "fail", "quota", attempts=3)
        local = await run_one(queue, "fail", "local", attempts=1)
    assert value.dead_reason is DeadReason.ATTEMPTS_EXHAUSTED and len(value.history) == 2
    assert value.error is not None
    assert (value.error.type, value.error.message) == ("ValueError", "('bad value', 42)")
    assert 'process_handlers.py", line' in value.error.traceback
    assert "raise ValueError" in value.error.traceback
    assert (permanent.dead_reason, permanent.attempt) == (DeadReason.PERMANENT_ERROR, 1)
    assert later.history[0].error.message == "not yet"
    assert (quota.dead_reason, quota.attempt) == (DeadReason.PERMANENT_ERROR, 1)
    assert quota.error.type == "QuotaError"
    assert local.error.type == "LocalError"
    assert local.error.message == "only the child knows this class"


async def test_a_job_past_its_timeout_is_killed_and_retried_in_a_fresh_child(
    queue: conveyor.Queue, server_url: str, tmp_path: Path
) -> None:
    worker = make_worker(queue, server_url, processes=1)
    worker.handler(ph.hang_first, timeout=1.0, backoff=Immediate())
    worker.handler(ph.whoami)
    ledger = tmp_path / "ledger"
    async with RunningWorker(worker):
        started = time.monotonic()
        # Stubborn: it ignores SIGTERM, so the kill takes SIGKILL after the grace.
        job = await run_one(queue, "hang_first", {"ledger": str(ledger), "stubborn": True})
        took = time.monotonic() - started
        after = await run_one(queue, "whoami", None)
    assert job.state is JobState.COMPLETED and job.attempt == 2
    (timed_out,) = job.history
    assert timed_out.cause is AttemptCause.TIMEOUT
    assert timed_out.error.type == "JobTimeoutError"
    assert "did not finish within 1s" in timed_out.error.message
    pids = ledger_pids(ledger)
    killed, fresh = pids[(job.id, 1)], pids[(job.id, 2)]
    assert killed != fresh and job.result["pid"] == fresh
    assert gone(killed)
    assert after.result["pid"] == fresh  # the replacement serves the next jobs
    assert took < 10


async def test_cancelling_a_running_process_job_kills_its_child(
    queue: conveyor.Queue, server_url: str, tmp_path: Path
) -> None:
    worker = make_worker(queue, server_url, ph.spin, ph.whoami, processes=1)
    ledger = tmp_path / "ledger"
    async with RunningWorker(worker):
        job = await queue.enqueue("spin", {"seconds": 30.0, "ledger": str(ledger)}, attempts=3)
        await wait_for(lambda: ledger.exists() and ledger.read_text())
        assert await queue.cancel(job.id) == "requested"
        with pytest.raises(conveyor.JobCancelled):
            await queue.result(job.id, timeout=20)
        after = await run_one(queue, "whoami", None)
    stopped = await queue.get_job(job.id)
    assert stopped is not None and stopped.state is JobState.CANCELLED
    assert stopped.attempt == 1 and not stopped.history  # not retried, not a failure
    killed = ledger_pids(ledger)[(job.id, 1)]
    assert gone(killed) and after.result["pid"] != killed


@pytest.mark.parametrize(
    ("how", "cause"), [("segfault", "killed by SIGSEGV"), ("exit", "exited with code 3")]
)
async def test_a_child_that_dies_fails_only_its_attempt(
    queue: conveyor.Queue, server_url: str, tmp_path: Path, how: str, cause: str
) -> None:
    worker = make_worker(queue, server_url, ph.crash, ph.whoami, processes=1)
    worker.add_handler(make_handler(ph.crash, "crash_once", backoff=Immediate()))
    ledger = tmp_path / "ledger"
    payload = {"how": how, "ledger": str(ledger)}
    async with RunningWorker(worker):
        always = await run_one(queue, "crash", payload, attempts=2, backoff=Immediate())
        once = await run_one(queue, "crash_once", {**payload, "crash_attempts": 1})
        after = await run_one(queue, "whoami", None)
    assert always.state is JobState.DEAD and always.dead_reason is DeadReason.ATTEMPTS_EXHAUSTED
    assert [a.cause for a in always.history] == [AttemptCause.ERROR] * 2
    for attempt in always.history:
        assert attempt.error.type == "ChildDiedError"
        assert cause in attempt.error.message and "crash" in attempt.error.message
    assert once.state is JobState.COMPLETED and once.attempt == 2
    assert cause in once.history[0].error.message
    pids = ledger_pids(ledger)
    assert len({pids[(always.id, 1)], pids[(always.id, 2)], pids[(once.id, 1)]}) == 3
    assert once.result["pid"] == after.result["pid"]  # the survivor keeps serving


async def test_children_are_replaced_after_max_jobs_per_child(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, ph.whoami, processes=1, max_jobs_per_child=2)
    async with RunningWorker(worker):
        pids = [(await run_one(queue, "whoami", None)).result["pid"] for _ in range(5)]
    a, b, c = dict.fromkeys(pids)  # in order of first appearance
    assert pids == [a, a, b, b, c]
    await wait_for(lambda: gone(a) and gone(b) and gone(c), timeout=10)


async def test_a_child_over_the_memory_ceiling_is_replaced_after_its_job(
    queue: conveyor.Queue, server_url: str
) -> None:
    ceiling = 400 << 20
    worker = make_worker(queue, server_url, ph.leak, processes=1, max_child_memory=ceiling)
    async with RunningWorker(worker):
        pids = [
            (await run_one(queue, "leak", {"mb": mb})).result["pid"] for mb in (0, 10, 500, 0, 0)
        ]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4]


async def test_locks_stay_renewed_while_a_child_grinds(
    queue: conveyor.Queue, server_url: str
) -> None:
    assert WORKER_TEST_OPTIONS.lock_ttl == 2.0
    worker = make_worker(queue, server_url, ph.spin, processes=1)
    watcher = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)
    async with RunningWorker(worker), RunningWorker(watcher):
        job = await run_one(queue, "spin", {"seconds": 5.0})
    assert job.state is JobState.COMPLETED
    assert (job.attempt, job.stalls, job.history) == (1, 0, ())
    assert job.finished_at - job.started_at >= 5.0


async def test_child_init_is_imported_once_at_start_up_and_its_failure_is_reported(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, ph.modules, processes=1, child_init="colorsys")
    async with RunningWorker(worker):
        job = await run_one(queue, "modules", ["colorsys", "wave"])
    assert job.result == {"colorsys": True, "wave": False}

    broken = make_worker(queue, server_url, ph.modules, processes=1, child_init="no_such_mod")
    async with RunningWorker(broken):
        dead = await run_one(queue, "modules", [], attempts=1)
    assert dead.error.type == "ChildStartError"
    assert "child_init 'no_such_mod' failed: ModuleNotFoundError" in dead.error.message


async def test_progress_and_logs_from_a_child_are_stored(
    queue: conveyor.Queue, server_url: str
) -> None:
    worker = make_worker(queue, server_url, ph.report, processes=1)
    async with RunningWorker(worker):
        job = await run_one(queue, "report", None)
    assert job.state is JobState.COMPLETED
    assert job.progress == {"done": 1, "of": 2}
    assert len(job.logs) == 1 and job.logs[0].endswith(" halfway there")


# --- SIGTERM of a worker process with busy children -------------------------------------


@pytest.fixture
def worker_process(queue: conveyor.Queue, server_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(**flags: Any) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "tests.process_handlers", "--queue", queue.name]
        for name, value in flags.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        env = {**os.environ, conveyor.defaults.URL_ENV: server_url, "PYTHONUNBUFFERED": "1"}
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            popen = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        started.append(popen)
        return popen

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=30)
    for log in sorted(tmp_path.glob("worker-*.log")):
        print(f"----- {log.name} -----\n{log.read_text(errors='replace')[-20_000:]}")


@pytest.mark.timeout(90)
async def test_sigterm_with_children_busy_loses_nothing(
    queue: conveyor.Queue, server_url: str, tmp_path: Path, worker_process: Any
) -> None:
    ledger = tmp_path / "ledger"
    until = tmp_path / "enough"  # created once the first worker is gone: reruns end early
    first = worker_process(concurrency=3, processes=3, shutdown_grace=2.0)
    short = await queue.enqueue("spin", {"seconds": 1.0, "ledger": str(ledger)})
    spec = {"seconds": 30.0, "ledger": str(ledger), "until": str(until)}
    long = [await queue.enqueue("spin", spec) for _ in range(2)]

    def started() -> bool:
        return ledger.exists() and len(ledger.read_text().splitlines()) == 3

    await wait_for(started, timeout=45)  # the worker and its children start
    children = set(ledger_pids(ledger).values())
    assert len(children) == 3 and first.pid not in children
    signalled = time.monotonic()
    first.send_signal(signal.SIGTERM)
    await wait_for(lambda: first.poll() is not None, timeout=20)
    assert first.returncode == 0
    assert time.monotonic() - signalled < 2.0 + 4.0  # the grace, then the kill and hand-back
    await wait_for(lambda: all(gone(pid) for pid in children), timeout=10)

    done = await queue.get_job(short.id)
    assert done is not None and done.state is JobState.COMPLETED  # finished within the grace
    for job in long:
        back = await queue.get_job(job.id)
        assert back is not None
        assert (back.state, back.attempt, back.history) == (JobState.WAITING, 0, ())

    until.touch()
    second = make_worker(queue, server_url, ph.spin, processes=2)
    async with RunningWorker(second):
        for job in long:
            await wait_for(lambda job=job: finished(queue, job.id), timeout=40)
    for job in [short, *long]:
        ended = await queue.get_job(job.id)
        assert ended is not None and ended.state is JobState.COMPLETED
        assert (ended.attempt, ended.stalls, ended.history) == (1, 0, ())
    runs = [line.split()[0] for line in ledger.read_text().splitlines()]
    assert sorted(runs) == sorted([short.id, *(job.id for job in long for _ in range(2))])


def test_a_pool_is_made_only_for_process_handlers() -> None:
    options = conveyor.WorkerOptions(concurrency=1)
    threaded = make_handler(ph.echo, process=False)
    assert ProcessPool.for_handlers(options, [threaded]) is None
    pool = ProcessPool.for_handlers(options, [threaded, make_handler(ph.spin, process=True)])
    assert pool is not None and pool.size == 1
