"""A worker and the readers defend themselves against whatever is in storage.

A job hash with a missing or malformed field (written by an old version, a producer with
direct access, an import, a bug) is buried as ``invalid_job`` with the field named, every
other job keeps flowing, and readers show the job instead of raising.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import conveyor
from conveyor import DeadReason, JobContext, JobState
from conveyor.keys import QueueKeys
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

#: (field, stored value or None to delete it): one per family of field.
CORRUPTIONS = [
    ("priority", b"1.5"),
    ("priority", b"5000"),
    ("attempt", b"x"),
    ("max_attempts", b"2.5"),
    ("max_attempts", b"0"),
    ("timeout_ms", b"abc"),
    ("timeout_ms", b"-5"),
    ("created_ms", b"1e12"),
    ("stalls", b"nan"),
    ("options", b"{not json"),
    ("options", b'{"backoff": {"type": "nope"}}'),
    ("options", b'{"backoff": {"type": "fixed", "seconds": -1}}'),
    ("band", b"x"),
    ("keep_ms", b"soon"),
    ("name", None),
    ("state", None),
]


def _corrupt(url: str, queue: str, job_id: str, field: str, value: bytes | None) -> None:
    raw = redis.Redis.from_url(url)
    key = QueueKeys(queue).job(job_id)
    if value is None:
        raw.hdel(key, field)
    else:
        raw.hset(key, field, value)
    raw.close()


def _worker(queue: conveyor.Queue, url: str, done: list[Any], **options: Any) -> conveyor.Worker:
    worker = conveyor.Worker(
        queue.name, url=url, options=dataclasses.replace(WORKER_TEST_OPTIONS, **options)
    )

    @worker.handler
    async def ok(ctx: JobContext, payload: int) -> int:
        done.append(payload)
        return payload

    return worker


async def _dead(queue: conveyor.Queue, job_id: str) -> conveyor.Job | None:
    job = await queue.get_job(job_id)
    return job if job is not None and job.state is JobState.DEAD else None


@pytest.mark.parametrize(("field", "value"), CORRUPTIONS, ids=lambda v: repr(v))
async def test_a_corrupted_job_is_buried_as_invalid_and_the_others_flow(
    queue: conveyor.Queue, server_url: str, field: str, value: bytes | None
) -> None:
    await queue.enqueue_many([("ok", n) for n in range(50)])
    bad = await queue.enqueue("ok", -1, backoff=conveyor.Immediate())
    await queue.enqueue_many([("ok", n) for n in range(50, 100)])
    _corrupt(server_url, queue.name, bad.id, field, value)
    done: list[Any] = []
    async with RunningWorker(_worker(queue, server_url, done)):
        await wait_for(lambda: len(done) >= 100)
        dead = await wait_for(lambda: _dead(queue, bad.id))
    assert sorted(done) == list(range(100))
    assert dead.dead_reason is DeadReason.INVALID_JOB
    assert dead.error is not None and dead.error.type == "InvalidJobError"
    assert f"{field}:" in dead.error.message
    assert dead.history[-1].cause is conveyor.AttemptCause.INVALID_JOB
    assert (await queue.counts()).completed == 100
    completed = await queue.list_jobs(JobState.COMPLETED, limit=100)
    assert len(completed) == 100 and not any(job.problems for job in completed)


async def test_a_delayed_job_with_a_malformed_band_is_promoted_then_buried(
    queue: conveyor.Queue, server_url: str
) -> None:
    bad = await queue.enqueue("ok", -1, delay=0.2)
    good = await queue.enqueue("ok", 1, delay=0.2)
    _corrupt(server_url, queue.name, bad.id, "band", b"nan")
    done: list[Any] = []
    async with RunningWorker(_worker(queue, server_url, done)):
        dead = await wait_for(lambda: _dead(queue, bad.id))
        await wait_for(lambda: done == [1])
    assert dead.dead_reason is DeadReason.INVALID_JOB and "band:" in dead.error.message
    assert (await queue.get_job(good.id)).state is JobState.COMPLETED  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "value"), [("stalls", b"x"), ("priority", b"1.5"),
                                              ("attempt", b"2.5")])  # fmt: skip
async def test_stall_recovery_buries_a_corrupted_stalled_job(
    queue: conveyor.Queue, server_url: str, field: str, value: bytes
) -> None:
    keys = QueueKeys(queue.name)
    stalled = await queue.enqueue("ok", -1)
    also = await queue.enqueue("ok", -2)
    raw = redis.Redis.from_url(server_url)
    for job in (stalled, also):  # as if a worker took them and died
        raw.zrem(keys.key("waiting"), job.id)
        raw.zadd(keys.key("active"), {job.id: 1})
        raw.hset(keys.job(job.id), mapping={"state": "active", "token": "gone.1",
                                            "attempt": 1, "worker": "gone"})  # fmt: skip
    raw.close()
    _corrupt(server_url, queue.name, stalled.id, field, value)
    done: list[Any] = []
    async with RunningWorker(_worker(queue, server_url, done)):
        dead = await wait_for(lambda: _dead(queue, stalled.id))
        await queue.enqueue("ok", 7)
        await wait_for(lambda: 7 in done and -2 in done)
    assert dead.dead_reason is DeadReason.INVALID_JOB
    assert dead.error is not None and f"{field}:" in dead.error.message


# --- readers ------------------------------------------------------------------------------

CORRUPT_FIELDS = {"priority": b"1.5", "created_ms": b"yesterday", "options": b"{oops",
                  "history": b"not a record\n", "reason": b"gremlins"}  # fmt: skip


@pytest.fixture
def corrupted(sync_queue: conveyor.SyncQueue, server_url: str) -> tuple[str, str]:
    """A waiting job whose stored hash is malformed (and lacks its state), beside a good one."""
    sync_queue.enqueue("ok", 1)
    bad = sync_queue.enqueue("ok", 2)
    raw = redis.Redis.from_url(server_url)
    raw.hset(QueueKeys(sync_queue.name).job(bad.id), mapping=CORRUPT_FIELDS)
    raw.hdel(QueueKeys(sync_queue.name).job(bad.id), "state")
    raw.close()
    return sync_queue.name, bad.id


def _check(job: conveyor.Job) -> None:
    assert (job.priority, job.created_at, job.options, job.history) == (0, 0.0, {}, ())
    assert job.state is JobState.WAITING and job.dead_reason is None
    assert {problem.split(":")[0] for problem in job.problems} == {*CORRUPT_FIELDS, "state"}
    assert job.payload == 2


def test_readers_show_a_corrupted_job_with_its_problems(
    sync_queue: conveyor.SyncQueue, corrupted: tuple[str, str]
) -> None:
    _, bad_id = corrupted
    job = sync_queue.get_job(bad_id)
    assert job is not None and job.id == bad_id
    _check(job)
    listed = sync_queue.list_jobs(JobState.WAITING)
    assert len(listed) == 2
    _check(next(j for j in listed if j.id == bad_id))
    good = next(j for j in listed if j.id != bad_id)
    assert good.problems == ()


def test_the_cli_shows_a_corrupted_job(corrupted: tuple[str, str]) -> None:
    from conveyor.cli import main
    from tests.cli_runner import invoke, invoke_json

    name, bad_id = corrupted
    listed = invoke(main, "jobs", name)
    assert listed.exit_code == 0, listed.output
    assert bad_id in listed.output and "malformed: " in listed.output
    assert "priority: b'1.5' is not an integer" in listed.output
    as_json = invoke_json(main, "jobs", name, "--state", "waiting")
    assert any(item["id"] == bad_id and item["problems"] for item in as_json)
    shown = invoke(main, "job", name, bad_id)
    assert shown.exit_code == 0, shown.output
    assert "malformed" in shown.output and "created_ms" in shown.output
    status = invoke_json(main, "status", name)
    assert status["queues"][0]["waiting"] == 2


def test_the_dashboard_and_the_exporter_show_a_corrupted_job(
    corrupted: tuple[str, str], server_url: str
) -> None:
    from starlette.testclient import TestClient

    from conveyor import partitions
    from conveyor.connection import sync_client
    from conveyor.dashboard import create_app
    from conveyor.prometheus import QueueCollector
    from conveyor.transport import SyncTransport

    name, bad_id = corrupted
    app = create_app(server_url, queues=[name])
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        page = client.get(f"/queues/{name}/jobs/{bad_id}")
        assert page.status_code == 200
        assert "Malformed" in page.text
        assert "priority: b&#39;1.5&#39; is not an integer" in page.text
        rows = client.get(f"/queues/{name}/rows", params={"state": "waiting"})
        assert rows.status_code == 200 and bad_id in rows.text
        assert client.get(f"/queues/{name}").status_code == 200
    raw = redis.Redis.from_url(server_url)  # the oldest waiting job's age is read from it
    for job_id in raw.zrange(QueueKeys(name).key("waiting"), 0, -1):
        raw.hset(QueueKeys(name).job(job_id.decode()), "created_ms", b"1.5e12")
    raw.hset(QueueKeys(name).key("worker_info"), "ghost", b"{not json")  # a live worker's
    raw.zadd(QueueKeys(name).key("workers"), {"ghost": 2**50})
    raw.close()
    transport = SyncTransport(sync_client(server_url), server_url)
    try:
        snapshots = transport.run(partitions.metrics_of([name], 3600.0))
        families = {f.name: f for f in QueueCollector(snapshots).collect()}
    finally:
        transport.close()
    waiting = [s for s in families["conveyor_jobs"].samples if s.labels["state"] == "waiting"]
    assert waiting[0].value == 2
    from conveyor.cli import main
    from tests.cli_runner import invoke_json

    assert invoke_json(main, "status", name)["queues"][0]["waiting"] == 2


# --- background tasks ---------------------------------------------------------------------


async def test_a_background_task_that_fails_once_is_logged_and_restarted(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from conveyor.worker import calls

    real = calls.fetch
    failures = [RuntimeError("injected fault")]

    def fetch_failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(calls, "fetch", fetch_failing_once)
    done: list[Any] = []
    async with RunningWorker(_worker(queue, server_url, done)):
        await queue.enqueue_many([("ok", n) for n in range(5)])
        await wait_for(lambda: len(done) == 5)
    (record,) = [r for r in caplog.records if "failed; restarting it" in r.getMessage()]
    assert f"fetcher of {queue.name}" in record.getMessage()
    assert record.exc_info is not None and "injected fault" in str(record.exc_info[1])


@pytest.mark.parametrize("target", [
    "conveyor.worker.fetcher.Fetcher._fetch",
    "conveyor.worker.worker._Session._recover_stalled",
    "conveyor.worker.locks.LockKeeper._renew_until_stopped",
])  # fmt: skip
async def test_a_background_task_that_keeps_failing_stops_the_worker(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, target: str,
) -> None:  # fmt: skip
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(target, broken)
    worker = _worker(queue, server_url, [], task_restarts=1)
    with pytest.raises(conveyor.WorkerFailedError, match="injected fault"):
        await asyncio.wait_for(worker.serve(), 60)
    assert any(r.levelname == "CRITICAL" and r.exc_info for r in caplog.records)
    # Not heartbeating: it unregistered, and no one counts it as alive.
    assert (await queue.counts()).workers == 0


def test_run_raises_worker_failed_error_for_the_cli_to_report(
    sync_queue: conveyor.SyncQueue, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.worker.fetcher import Fetcher

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Fetcher, "_fetch", broken)
    worker = conveyor.Worker(
        sync_queue.name, url=server_url,
        options=dataclasses.replace(WORKER_TEST_OPTIONS, task_restarts=0),
    )  # fmt: skip
    with pytest.raises(conveyor.WorkerFailedError, match=r"fetcher of .* kept failing"):
        worker.run()
    assert issubclass(conveyor.WorkerFailedError, conveyor.ConveyorError)  # CLI: one line, 1


async def test_schedules_that_cannot_fire_are_logged_and_jobs_keep_flowing(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from conveyor import schedules

    tried: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        tried.append(1)
        raise ValueError("a malformed stored schedule")

    monkeypatch.setattr(schedules, "fire_due", broken)
    done: list[Any] = []
    worker = _worker(queue, server_url, done, schedule_check_interval=0.05, task_restarts=0)
    async with RunningWorker(worker):
        await queue.enqueue_many([("ok", n) for n in range(5)])
        await wait_for(lambda: len(done) == 5 and len(tried) >= 3)
    logged = [r for r in caplog.records if "could not fire its schedules" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # once a minute, traceback


def test_conveyor_worker_exits_1_with_one_line_when_a_task_keeps_failing(
    queue_name: str, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.cli import main
    from conveyor.worker.fetcher import Fetcher
    from tests.cli_runner import invoke

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Fetcher, "_fetch", broken)
    monkeypatch.setattr(conveyor.defaults, "TASK_RESTART_PAUSE", 0.001)  # 8 restarts, quickly
    result = invoke(main, "worker", "tests.cli_app:handlers", "-q", queue_name, "--url",
                    server_url)  # fmt: skip
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: worker ")
    assert last.endswith("kept failing: RuntimeError: injected fault")
    assert result.stderr.count("failed; restarting it") == conveyor.defaults.TASK_RESTARTS
    assert "Traceback" in result.stderr  # each failure is logged with its traceback
    with conveyor.SyncQueue(queue_name, url=server_url) as registered:
        registered.obliterate(force=True)


async def test_the_lock_keeper_stops_the_worker_after_failing_renewals(
    queue: conveyor.Queue, server_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from conveyor.worker.locks import LockKeeper

    real = LockKeeper.renew_once
    calls_made: list[int] = []

    def renew_failing_after_start(self: LockKeeper) -> None:
        calls_made.append(1)
        if len(calls_made) > 1:  # the first is the registration, before the thread starts
            raise RuntimeError("injected renewal fault")
        real(self)

    monkeypatch.setattr(LockKeeper, "renew_once", renew_failing_after_start)
    worker = _worker(queue, server_url, [], task_restarts=2)
    with pytest.raises(conveyor.WorkerFailedError, match="lock renewal kept failing"):
        await asyncio.wait_for(worker.serve(), 60)
    failed = [r for r in caplog.records if "lock renewal failed" in r.getMessage()]
    assert len(failed) == 3 and all(r.exc_info for r in failed)
    assert (await queue.counts()).workers == 0


# --- log messages -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["complete", "fail", "renew"])
async def test_a_job_whose_record_vanished_is_reported_missing_not_as_a_lost_lock(
    queue: conveyor.Queue, server_url: str, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)
    started, finish = asyncio.Event(), asyncio.Event()

    @worker.handler
    async def hold(ctx: JobContext, payload: None) -> None:
        started.set()
        await finish.wait()
        if outcome == "fail":
            raise RuntimeError("too late")

    async with RunningWorker(worker):
        job = await queue.enqueue("hold", None)
        await asyncio.wait_for(started.wait(), 30)
        raw = redis.Redis.from_url(server_url)  # as a server restart without its data would
        raw.delete(QueueKeys(queue.name).job(job.id))
        raw.close()
        if outcome == "renew":  # the lock keeper notices first
            await wait_for(lambda: "no longer exists" in caplog.text)
        finish.set()
        await wait_for(lambda: "no longer exists" in caplog.text)
    assert f"job {job.id} no longer exists on the server (its data was lost" in caplog.text
    assert "lock was lost" not in caplog.text and "lost the lock" not in caplog.text


def test_text_log_lines_escape_control_characters() -> None:
    import logging

    from conveyor.worker.log_context import JobLogFilter, JsonFormatter, TextFormatter

    evil = "x\n2026-01-01 INFO forged \x1b[2J"
    record = logging.LogRecord(
        "conveyor.worker", logging.WARNING, __file__, 1, "job %s stalled", (evil,), None
    )
    record.job_id, record.job_name = "id\r\nline", "name\u2028"
    JobLogFilter().filter(record)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "job x\\n2026-01-01 INFO forged \\x1b[2J stalled" in line
    assert "[name\\u2028 id\\r\\nline #0]" in line
    entry = json.loads(JsonFormatter().format(record))  # JSON escapes on its own
    assert entry["job_id"] == "id\r\nline" and "\n" not in JsonFormatter().format(record)


async def test_a_worker_logs_a_job_id_with_a_newline_on_one_line(
    queue: conveyor.Queue, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor.worker.log_context import JobLogFilter, TextFormatter

    keys = QueueKeys(queue.name)
    job = await queue.enqueue("fail", None, attempts=1)
    evil = "x\n2026-01-01 00:00:00 INFO conveyor.worker forged"
    raw = redis.Redis.from_url(server_url)  # stored by something that checked nothing
    score = raw.zscore(keys.key("waiting"), job.id)
    raw.rename(keys.job(job.id), keys.job(evil))
    raw.hset(keys.job(evil), "id", evil)
    raw.zrem(keys.key("waiting"), job.id)
    raw.zadd(keys.key("waiting"), {evil: score or 0})
    raw.close()
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def fail(ctx: JobContext, payload: None) -> None:
        raise ValueError("no\nway")

    async with RunningWorker(worker):
        await wait_for(lambda: _dead(queue, evil))
    formatter = TextFormatter()
    dead = [r for r in caplog.records if "is dead" in r.getMessage()]
    assert all(JobLogFilter().filter(r) for r in dead)
    assert dead and all("\n" not in formatter.format(r) for r in dead)
    assert "x\\n2026-01-01 00:00:00 INFO conveyor.worker forged" in formatter.format(dead[0])


async def test_failure_and_dead_log_lines_carry_the_error_type_and_message(
    queue: conveyor.Queue, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor.worker.log_context import JobLogFilter, JsonFormatter, TextFormatter

    caplog.set_level("INFO", "conveyor.worker")
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def flaky(ctx: JobContext, payload: None) -> None:
        raise ValueError("bad input 42")

    job = await queue.enqueue("flaky", None, attempts=2, backoff=conveyor.Immediate())
    async with RunningWorker(worker):
        await wait_for(lambda: _dead(queue, job.id))
    retried = next(r for r in caplog.records if "retrying" in r.getMessage())
    dead = next(r for r in caplog.records if "is dead" in r.getMessage())
    for record in (retried, dead):
        JobLogFilter().filter(record)
        assert "ValueError: bad input 42" in TextFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
        assert (entry["error_type"], entry["error_message"]) == ("ValueError", "bad input 42")
        assert "ValueError: bad input 42" in entry["message"]
    assert "attempts_exhausted" in dead.getMessage()


# --- the parsers, property-based (no server) ----------------------------------------------

_TRICKY = [b"", b"0", b"-0", b"007", b"1.5", b"1e3", b"nan", b"inf", b" 1", b"1 ", b"+1",
           b"0x10", b"99999999999999999", b"-1", b"\xff\xfe", b"{}", b"[]", b"null",
           b'{"backoff": {"type": "fixed"}}', b'{"backoff": 3}', "٣".encode()]  # fmt: skip
_field_values = st.one_of(st.none(), st.sampled_from(_TRICKY), st.binary(max_size=24))


def _good_claim_values() -> dict[str, bytes]:
    return {"id": b"j1", "name": b"ok", "payload": b"1", "attempt": b"1",
            "max_attempts": b"3", "timeout_ms": b"0", "options": b"{}",
            "created_ms": b"1700000000000", "priority": b"0", "stalls": b"0",
            "started_ms": b"", "worker": b"", "state": b"waiting", "band": b"2199023255552",
            "keep_ms": b""}  # fmt: skip


def test_a_well_formed_claim_has_no_problems() -> None:
    from conveyor.worker.calls import CLAIM_FIELDS, parse_claim

    values = _good_claim_values()
    claim = parse_claim("q", 5, [values[name] for name in CLAIM_FIELDS], b"t.1")
    assert claim.problems == () and (claim.id, claim.attempt, claim.token) == ("j1", 1, "t.1")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(_good_claim_values())), _field_values))
def test_the_claim_parser_never_raises(changes: dict[str, bytes | None]) -> None:
    from conveyor.defaults import PRIORITY_MAX, PRIORITY_MIN
    from conveyor.worker.calls import CLAIM_FIELDS, _parse_claim_slowly, parse_claim

    values: dict[str, bytes | None] = {**_good_claim_values(), **changes}
    row = [values[name] or b"" for name in CLAIM_FIELDS]
    claim = parse_claim("q", 5, row, b"t.1")
    assert claim == _parse_claim_slowly("q", 5, row, b"t.1")  # the quick path agrees
    named = {problem.split(":")[0] for problem in claim.problems}
    assert named <= set(CLAIM_FIELDS)
    assert PRIORITY_MIN <= claim.priority <= PRIORITY_MAX
    assert claim.max_attempts >= 1 and claim.attempt >= 0 and claim.stalls >= 0
    assert isinstance(claim.options, dict)
    if not claim.problems:  # a claim without problems is one a worker can run and settle
        assert claim.name and values["state"] and values["band"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*_good_claim_values(), "due_ms", "finished_ms",
                                        "history", "error", "reason", "replays", "group",
                                        "result", "progress", "logs"]),
                       _field_values))  # fmt: skip
def test_job_from_hash_never_raises(changes: dict[str, bytes | None]) -> None:
    from conveyor.job import job_from_hash

    fields = {**_good_claim_values(), **changes}
    stored = {name.encode(): value for name, value in fields.items() if value is not None}
    job = job_from_hash("q", stored)
    assert isinstance(job.state, JobState) and isinstance(job.options, dict)
    if fields == _good_claim_values():
        assert job.problems == ()


def test_lua_and_python_agree_on_what_a_stored_whole_number_is(server_url: str) -> None:
    from pathlib import Path

    import conveyor.lua as lua_module
    from conveyor.stored import whole

    source = (Path(lua_module.__file__).parent / "lua" / "include" / "fields.lua").read_text()
    script = source + "\nlocal n = whole(ARGV[1])\nif n then return string.format('%.0f', n) end"
    values = [*_TRICKY, b"1", b"-7", b"1234567890123456", b"12345678901234567",
              b"-1234567890123456", b"9007199254740992", b"9007199254740993", b"1\n",
              b"\x001"]  # fmt: skip
    raw = redis.Redis.from_url(server_url)
    try:
        for value in values:
            lua = raw.eval(script, 0, value)
            python = whole(value)
            assert (int(lua) if lua is not None else None) == python, value
    finally:
        raw.close()


async def test_operator_commands_on_a_job_with_a_malformed_band_do_not_fail(
    queue: conveyor.Queue, server_url: str
) -> None:
    job = await queue.enqueue("ok", 1)
    later = await queue.enqueue("ok", 2, delay=60)
    for one in (job, later):
        _corrupt(server_url, queue.name, one.id, "band", b"x")
    assert await queue.set_priority(job.id, 5)  # mends the band
    mended = await queue.get_job(job.id)
    assert mended is not None and mended.problems == () and mended.priority == 5
    assert await queue.reschedule(later.id, 0)
    moved = await queue.get_job(later.id)
    assert moved is not None and moved.state is JobState.WAITING
