"""The ``conveyor`` command line, run with CliRunner (and one real worker subprocess)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

import conveyor
from conveyor import ops
from conveyor.cli import main
from conveyor.cli.worker import build_worker
from conveyor.connection import sync_client
from conveyor.transport import SyncTransport
from tests import cli_app
from tests.cli_runner import UNREACHABLE, invoke, invoke_json
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, input: str | None = None) -> Result:
    return invoke(main, *args, input=input)


def run_json(*args: str) -> Any:
    return invoke_json(main, *args)


@pytest.fixture
def queue(sync_queue: conveyor.SyncQueue) -> conveyor.SyncQueue:
    """The sync face of a fresh queue (conftest's ``sync_queue``), as these tests call it."""
    return sync_queue


def known_queues(url: str) -> list[str]:
    transport = SyncTransport(sync_client(url), url)
    try:
        return transport.run(ops.known_queues())
    finally:
        transport.close()


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert conveyor.__version__ in result.stdout


def test_enqueue_prints_the_id_and_the_job_can_be_inspected(queue: conveyor.SyncQueue) -> None:
    payload = {"to": "ada@example.com", "n": [1, 2]}
    result = run("enqueue", queue.name, "send_email", json.dumps(payload), "--priority", "5")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()

    stored = queue.get_job(job_id)
    assert stored is not None and stored.payload == payload and stored.priority == 5

    status = run_json("status", queue.name)
    (counts,) = status["queues"]
    expected = {"queue": queue.name, "waiting": 1, "delayed": 0, "active": 0,
                "completed": 0, "dead": 0, "paused": False, "workers": 0}  # fmt: skip
    assert {key: counts[key] for key in expected} == expected

    listed = run_json("jobs", queue.name, "--state", "waiting")
    assert [(j["id"], j["payload"], j["state"]) for j in listed] == [(job_id, payload, "waiting")]
    assert run_json("jobs", queue.name, "--state", "dead") == []

    job = run_json("job", queue.name, job_id)
    assert job["id"] == job_id and job["name"] == "send_email" and job["payload"] == payload
    assert job["result"] is None and job["attempt"] == 0 and job["max_attempts"] == 3
    assert "raw_payload" not in job

    for args in (["jobs", queue.name], ["job", queue.name, job_id], ["status", queue.name]):
        human = run(*args)
        assert human.exit_code == 0, human.output
    assert job_id in run("jobs", queue.name).stdout


def test_enqueue_json_options(queue: conveyor.SyncQueue) -> None:
    job = run_json("enqueue", queue.name, "report", "--id", "r-1", "--delay", "60",
                   "--attempts", "5")  # fmt: skip
    assert (job["id"], job["payload"], job["max_attempts"]) == ("r-1", {}, 5)  # {}: none given
    assert queue.counts().delayed == 1
    stdin = run("enqueue", queue.name, "report", "-", input='{"from": "stdin"}')
    assert stdin.exit_code == 0, stdin.output
    stored = queue.get_job(stdin.stdout.strip())
    assert stored is not None and stored.payload == {"from": "stdin"}


def test_invalid_json_payload_is_refused_and_nothing_is_enqueued(
    server_url: str, queue_name: str
) -> None:
    result = run("enqueue", queue_name, "send_email", "{'to': 'single quotes'}")
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr
    assert queue_name not in known_queues(server_url)
    with conveyor.SyncQueue(queue_name, url=server_url) as q:
        assert q.counts().waiting == 0


def test_invalid_queue_name_is_a_usage_error() -> None:
    result = run("status", "no spaces please")
    assert result.exit_code == 2
    assert "invalid queue name" in result.stderr


def test_a_missing_job_exits_1(queue: conveyor.SyncQueue) -> None:
    result = run("job", queue.name, "no-such-id")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: no job 'no-such-id' in queue '{queue.name}'"


async def test_failed_job_shows_its_error_and_history(queue: conveyor.SyncQueue) -> None:
    job_id = queue.enqueue("nobody_handles_this", {"x": 1}).id
    options = dataclasses.replace(WORKER_TEST_OPTIONS, unknown_job_grace=0.0)
    async with RunningWorker(conveyor.Worker(queue.name, options=options)):
        await wait_for(lambda: queue.counts().dead == 1)
    job = run_json("job", queue.name, job_id)
    assert job["state"] == "dead" and job["dead_reason"] == "unknown_job"
    assert job["error"]["type"] == "UnknownJobError"
    assert [a["cause"] for a in job["history"]] == ["unknown_job"]
    listed = run("jobs", queue.name, "--state", "dead")
    assert "UnknownJobError" in listed.stdout and "unknown_job" in listed.stdout
    assert "UnknownJobError" in run("job", queue.name, job_id).stdout


def test_pause_resume_drain(queue: conveyor.SyncQueue) -> None:
    queue.enqueue("a")
    queue.enqueue("b", delay=60)
    queue.enqueue("c")

    assert run("pause", queue.name).exit_code == 0
    assert queue.counts().paused is True
    assert run_json("status", queue.name)["queues"][0]["paused"] is True
    assert run("resume", queue.name).exit_code == 0
    assert queue.counts().paused is False

    drained = run("drain", queue.name)
    assert drained.exit_code == 0
    assert "Removed 3" in drained.stdout
    counts = queue.counts()
    assert (counts.waiting, counts.delayed) == (0, 0)


def test_status_lists_every_queue_and_checks_the_server(queue: conveyor.SyncQueue) -> None:
    queue.enqueue("a")
    status = run_json("status")
    assert queue.name in [q["queue"] for q in status["queues"]]
    server = status["server"]
    assert server["maxmemory_policy"] == "noeviction"
    assert server["aof_enabled"] is True
    assert server["problems"] == []
    human = run("status")
    assert "maxmemory-policy" in human.stdout and "append-only file" in human.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["enqueue", "q", "name", "{}"],
        ["jobs", "q"],
        ["job", "q", "some-id"],
        ["pause", "q"],
        ["resume", "q"],
        ["drain", "q"],
        ["worker", "tests.cli_app:worker", "--startup-timeout", "0"],
    ],
    ids=lambda args: args[0],
)
def test_an_unreachable_server_is_one_line_and_exit_1(args: list[str]) -> None:
    result = run(*args, "--url", UNREACHABLE)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot reach the Redis/Valkey server at redis://127.0.0.1:1")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.cli_app", "expected MODULE:ATTR"),
        ("no_such_module_anywhere:worker", "cannot import 'no_such_module_anywhere'"),
        ("tests.cli_app:missing", "has no attribute 'missing'"),
        ("tests.cli_app:not_a_worker", "got int"),
        ("tests.cli_app:handlers", "--queue is required"),
    ],
)
def test_worker_target_errors(target: str, message: str) -> None:
    result = run("worker", target)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_worker_refuses_an_unsafe_server_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: conveyor.Worker) -> None:
        raise conveyor.UnsafeServerError("refusing to start: maxmemory-policy is 'allkeys-lru'")

    monkeypatch.setattr(conveyor.Worker, "run", refuse)
    result = run("worker", "tests.cli_app:worker")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: refusing to start: maxmemory-policy is 'allkeys-lru'"


def test_command_line_overrides_the_loaded_worker() -> None:
    changes = {"concurrency": 7, "allow_unsafe_server": True}
    built = build_worker(cli_app.worker, ("a", "b"), "redis://example:6379", changes)
    assert [k.queue for k in built.queues] == ["a", "b"]
    assert built.url == "redis://example:6379"
    assert built.options.concurrency == 7 and built.options.allow_unsafe_server
    assert built.options.idle_block == cli_app.worker.options.idle_block
    assert list(built.handlers) == ["add"]

    kept = build_worker(cli_app.worker, (), None, {})
    assert [k.queue for k in kept.queues] == ["cli-app"]
    assert kept.options == cli_app.worker.options

    mapped = build_worker(cli_app.handlers, ("c",), None, {"concurrency": 3})
    assert list(mapped.handlers) == ["add"] and mapped.options.concurrency == 3


async def test_worker_subprocess_runs_a_job_enqueued_by_the_cli_and_stops_on_sigterm(
    queue: conveyor.SyncQueue, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tests.cli_app:worker",
             "--queue", queue.name, "--concurrency", "2"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        enqueued = run("enqueue", queue.name, "add", '{"a": 2, "b": 3}')
        assert enqueued.exit_code == 0, enqueued.output
        job_id = enqueued.stdout.strip()

        def completed() -> bool:
            job = queue.get_job(job_id)
            return job is not None and job.state is conveyor.JobState.COMPLETED

        await wait_for(completed, timeout=20, interval=0.05)
        assert run_json("job", queue.name, job_id)["result"] == 5
        await wait_for(lambda: queue.counts().workers == 1, timeout=10, interval=0.05)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        assert queue.counts().workers == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "serving" in log.read_text()


def test_process_options_on_the_command_line_reach_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[conveyor.Worker] = []
    monkeypatch.setattr(conveyor.Worker, "run", lambda self: started.append(self))
    result = run("worker", "tests.cli_app:threaded", "--process-handlers", "--processes", "2",
                 "--max-jobs-per-child", "50", "--max-child-memory", "256",
                 "--child-init", "tests.process_handlers")  # fmt: skip
    assert result.exit_code == 0, result.output
    (built,) = started
    assert built.handlers["shout"].process is True
    assert cli_app.threaded.handlers["shout"].process is False  # the loaded worker's own choice
    options = built.options
    assert (options.process_handlers, options.processes, options.max_jobs_per_child) == (
        True,
        2,
        50,
    )
    assert options.max_child_memory == 256 * 1024 * 1024
    assert options.child_init == "tests.process_handlers"
    refused = run("worker", "tests.cli_app:threaded", "--processes", "0")
    assert refused.exit_code == 2 and "--processes" in refused.stderr


def test_worker_grace_and_startup_timeout_reach_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[conveyor.Worker] = []
    monkeypatch.setattr(conveyor.Worker, "run", lambda self: started.append(self))
    result = run("worker", "tests.cli_app:worker", "--grace", "2.5", "--startup-timeout", "40")
    assert result.exit_code == 0, result.output
    (built,) = started
    assert (built.options.shutdown_grace, built.options.startup_timeout) == (2.5, 40.0)
    defaults_kept = run("worker", "tests.cli_app:worker")
    assert defaults_kept.exit_code == 0, defaults_kept.output
    assert started[1].options.shutdown_grace == cli_app.worker.options.shutdown_grace
    assert started[1].options.startup_timeout is None  # waits for the server by default
    for flag in ("--grace", "--startup-timeout"):
        for bad in ("-1", "nan", "soon"):
            refused = run("worker", "tests.cli_app:worker", flag, bad)
            assert refused.exit_code == 2, (flag, bad, refused.output)
            assert "Traceback" not in refused.output


def test_a_bounded_start_up_wait_exits_1_with_a_clear_message() -> None:
    result = run("worker", "tests.cli_app:worker", "--url", UNREACHABLE, "--startup-timeout", "0.5")
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot reach the Redis/Valkey server at redis://127.0.0.1:1")
    assert last.endswith("gave up after waiting 0.5s (startup_timeout)")
    assert "Traceback" not in result.output


async def test_sigterm_stops_a_worker_waiting_for_the_server(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tests.cli_app:worker",
             "--url", UNREACHABLE],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        await wait_for(lambda: "waiting until it answers" in log.read_text(), timeout=20)
        assert proc.poll() is None  # still waiting, not exited
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped before the server was reachable" in log.read_text()
