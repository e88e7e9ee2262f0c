"""The ``conveyor dlq`` commands, run with CliRunner against the real test server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result

import conveyor
from conveyor.cli import main
from conveyor.cli.dlq import dlq
from conveyor.keys import partition_for
from tests.cli_runner import UNREACHABLE, invoke, invoke_json
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for
from tests.test_dead_letters import make_dead

pytestmark = pytest.mark.timeout(30)


def run(*args: str, input: str | None = None) -> Result:
    return invoke(dlq, *args, input=input)


def run_json(*args: str) -> Any:
    return invoke_json(dlq, *args)


@pytest.fixture
def queue(sync_queue: conveyor.SyncQueue) -> conveyor.SyncQueue:
    """The sync face of a fresh queue (conftest's ``sync_queue``), as these tests call it."""
    return sync_queue


@pytest.fixture
def other(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    q = conveyor.SyncQueue(f"{queue_name}-other", url=server_url)
    yield q
    q.obliterate(force=True)
    q.close()


def killed(queue: conveyor.SyncQueue, name: str, *payloads: Any) -> list[str]:
    """Enqueue one job per payload and kill each (no worker needed); their ids."""
    ids = []
    for payload in payloads:
        job = queue.enqueue(name, payload)
        assert queue.dead_letters.kill(job.id)
        ids.append(job.id)
    return ids


def dead_ids(queue: conveyor.SyncQueue) -> set[str]:
    return {job.id for job in queue.dead_letters.list(limit=1000).jobs}


def test_list_json_with_filters_and_pages(queue: conveyor.SyncQueue) -> None:
    emails = killed(queue, "send_email", 1, 2, 3)
    (report,) = killed(queue, "build_report", {"month": 5})

    listed = run_json("list", queue.name)
    assert listed["cursor"] is None
    assert {j["id"] for j in listed["jobs"]} == {*emails, report}
    assert {(j["state"], j["dead_reason"]) for j in listed["jobs"]} == {("dead", "killed")}
    died = [j["finished_at"] for j in listed["jobs"]]
    assert died == sorted(died, reverse=True)  # newest first

    by_name = run_json("list", queue.name, "--name", "build_report", "--reason", "killed")
    assert [(j["id"], j["payload"]) for j in by_name["jobs"]] == [(report, {"month": 5})]
    assert len(run_json("list", queue.name, "--since", "1h")["jobs"]) == 4
    assert run_json("list", queue.name, "--until", "1h")["jobs"] == []
    assert run_json("list", queue.name, "--since", "2999-01-01T00:00:00Z")["jobs"] == []
    assert run_json("list", queue.name, "--reason", "permanent_error")["jobs"] == []

    first = run_json("list", queue.name, "--limit", "3")
    assert len(first["jobs"]) == 3 and first["cursor"] is not None
    rest = run_json("list", queue.name, "--limit", "3", "--cursor", str(first["cursor"]))
    assert {j["id"] for j in first["jobs"] + rest["jobs"]} == {*emails, report}

    table = run("list", queue.name, "--limit", "3")
    assert table.exit_code == 0, table.output
    assert f"--cursor {first['cursor']}" in table.stdout
    assert all(j["id"] in table.stdout for j in first["jobs"])

    bad = run("list", queue.name, "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "neither an ISO datetime nor a duration" in bad.output


async def test_error_type_filter_and_show_with_history(server_url: str, queue_name: str) -> None:
    async_queue = conveyor.Queue(queue_name, url=server_url)
    try:
        await make_dead(async_queue, server_url, [conveyor.JobSpec("value_error", {"n": 1}),
                                                  conveyor.JobSpec("key_error", "k")])  # fmt: skip
    finally:
        await async_queue.close()
    sync_queue = conveyor.SyncQueue(queue_name, url=server_url)
    try:
        (dead,) = run_json("list", queue_name, "--error-type", "ValueError")["jobs"]
        assert dead["name"] == "value_error"

        shown = run_json("show", queue_name, dead["id"])
        assert shown["payload"] == {"n": 1} and shown["dead_reason"] == "attempts_exhausted"
        assert shown["error"]["type"] == "ValueError" and shown["first_failed_at"]
        (attempt,) = shown["history"]
        assert (attempt["attempt"], attempt["cause"]) == (1, "error")
        assert attempt["error"]["message"] == "bad value {'n': 1}"
        assert "Traceback" in attempt["error"]["traceback"] and attempt["worker"]

        text = run("show", queue_name, dead["id"])
        assert text.exit_code == 0, text.output
        for expected in ("attempts_exhausted", "attempt 1 · error", "bad value", "Traceback"):
            assert expected in text.stdout
    finally:
        sync_queue.obliterate(force=True)
        sync_queue.close()


def test_show_refuses_a_job_that_is_not_dead(queue: conveyor.SyncQueue) -> None:
    waiting = queue.enqueue("send_email", 1)
    result = run("show", queue.name, waiting.id)
    assert result.exit_code == 1 and "is waiting, not dead" in result.stderr
    missing = run("show", queue.name, "nope")
    assert missing.exit_code == 1 and "no job 'nope'" in missing.stderr


def test_replay_one_with_an_edited_payload(queue: conveyor.SyncQueue) -> None:
    job_id, other_id = killed(queue, "send_email", {"to": "typo@"}, {"to": "x@"})

    bad = run("replay", queue.name, job_id, "--payload", "{not json")
    assert bad.exit_code == 2 and "--payload is not valid JSON" in bad.output
    bulk = run("replay", queue.name, "--all", "--payload", "{}")
    assert bulk.exit_code == 2 and "give exactly one ID" in bulk.output
    assert dead_ids(queue) == {job_id, other_id}  # nothing changed

    result = run("replay", queue.name, job_id, "--payload", '{"to": "ada@example.com"}')
    assert result.exit_code == 0, result.output
    assert "Replayed 1 dead job." in result.stdout
    job = queue.get_job(job_id)
    assert job is not None and job.state is conveyor.JobState.WAITING
    assert job.payload == {"to": "ada@example.com"} and job.replays == 1
    assert dead_ids(queue) == {other_id}

    again = run("replay", queue.name, job_id)  # no longer dead: says so, changes nothing
    assert again.exit_code == 1 and "is waiting, not dead" in again.stderr


def test_replay_dry_run_changes_nothing(queue: conveyor.SyncQueue) -> None:
    ids = killed(queue, "send_email", 1, 2, 3)
    result = run("replay", queue.name, "--all", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would replay 3 dead jobs:" in result.stdout
    assert set(result.stdout.splitlines()[1:]) == set(ids)
    preview = run_json("replay", queue.name, "--name", "send_email", "--dry-run")
    assert (preview["matched"], preview["moved"], preview["dry_run"]) == (3, 0, True)
    assert sorted(preview["ids"]) == sorted(ids)
    assert dead_ids(queue) == set(ids) and queue.counts().waiting == 0


def test_bulk_replay_asks_for_confirmation(queue: conveyor.SyncQueue) -> None:
    emails = killed(queue, "send_email", 1, 2)
    (report,) = killed(queue, "build_report", 3)

    declined = run("replay", queue.name, "--all", input="n\n")
    assert declined.exit_code == 1
    assert f"Replay 3 dead jobs of queue {queue.name!r}?" in declined.output
    assert dead_ids(queue) == {*emails, report}

    by_name = run("replay", queue.name, "--name", "send_email", input="y\n")
    assert by_name.exit_code == 0, by_name.output
    assert "Replay 2 dead jobs" in by_name.output and "Replayed 2 dead jobs." in by_name.stdout
    assert dead_ids(queue) == {report}

    done = run_json("replay", queue.name, "--all", "--yes")
    assert (done["matched"], done["moved"], done["ids"]) == (1, 1, [report])
    assert queue.counts().waiting == 3 and queue.counts().dead == 0

    nothing = run("replay", queue.name, "--all")  # nothing matches: no question asked
    assert nothing.exit_code == 0 and "Replayed 0 dead jobs." in nothing.stdout


def test_replay_at_a_rate(queue: conveyor.SyncQueue) -> None:
    killed(queue, "send_email", *range(5))
    started = time.monotonic()
    result = run_json("replay", queue.name, "--all", "--yes", "--rate", "2")
    assert result["moved"] == 5
    assert time.monotonic() - started >= 1.9  # 5 jobs at 2/s: batches start at 0s, 1s, 2s
    assert queue.counts().waiting == 5


@pytest.mark.parametrize("rate", ["nan", "inf", "0", "-1"])
def test_replay_refuses_a_rate_that_is_no_positive_number(
    queue: conveyor.SyncQueue, rate: str
) -> None:
    killed(queue, "send_email", 1)
    result = run("replay", queue.name, "--all", "--yes", "--rate", rate)
    assert result.exit_code == 2, result.output
    assert "rate" in result.output and "Traceback" not in result.output
    assert queue.counts().dead == 1 and queue.counts().waiting == 0  # nothing moved


def test_replay_to_another_queue(queue: conveyor.SyncQueue, other: conveyor.SyncQueue) -> None:
    (job_id,) = killed(queue, "send_email", {"to": "ada@example.com"})
    result = run("replay", queue.name, job_id, "--to", other.name)
    assert result.exit_code == 0, result.output
    assert f"Replayed 1 dead job to queue {other.name!r}." in result.stdout
    copy = other.get_job(job_id)
    assert copy is not None and copy.state is conveyor.JobState.WAITING
    assert copy.payload == {"to": "ada@example.com"}
    assert queue.get_job(job_id) is None

    bad = run("replay", queue.name, "--all", "--to", "not a queue name!")
    assert bad.exit_code == 2

    (again,) = killed(queue, "send_email", 2)  # --to its own queue is a plain replay
    assert run("replay", queue.name, again, "--to", queue.name).exit_code == 0
    job = queue.get_job(again)
    assert job is not None and job.state is conveyor.JobState.WAITING


def test_replay_of_a_corrupted_job_says_why_and_leaves_it_dead(
    queue: conveyor.SyncQueue, server_url: str
) -> None:
    job_id, _ = killed(queue, "send_email", 1, 2)
    client = redis.Redis.from_url(server_url)
    client.hdel(queue.keys.job(job_id), "band")
    result = run("replay", queue.name, "--all", "--yes")
    assert result.exit_code == 1
    assert "Replayed 1 dead job." in result.stdout
    assert "1 dead job refused, left dead:" in result.stderr
    assert f"  {job_id}: band must be an integer in " in result.stderr
    assert "Traceback" not in result.output
    assert client.zscore(queue.keys.key("dead"), job_id) is not None
    assert dead_ids(queue) == {job_id}
    refused = invoke(dlq, "replay", queue.name, job_id, "--json")
    assert refused.exit_code == 1
    assert list(json.loads(refused.stdout)["refused"]) == [job_id]
    client.close()


async def test_replay_to_a_partitioned_and_to_a_new_queue_is_served_and_listed(
    server_url: str, queue_name: str
) -> None:
    source = conveyor.SyncQueue(queue_name, url=server_url)
    sharded = conveyor.Queue(f"{queue_name}-sharded", url=server_url, partitions=3)
    fresh = conveyor.Queue(f"{queue_name}-fresh", url=server_url)  # never used before
    try:
        await sharded.counts()  # declares its 3 partitions
        keyed = source.enqueue("send_email", {"n": 0}, partition_key="tenant-7")
        plain = [source.enqueue("send_email", {"n": n}) for n in range(1, 5)]
        for job in [keyed, *plain]:
            assert source.dead_letters.kill(job.id)

        to_sharded = run("replay", queue_name, "--name", "send_email", "--to", sharded.name,
                         "--yes")  # fmt: skip
        assert to_sharded.exit_code == 0, to_sharded.output
        assert "Replayed 5 dead jobs" in to_sharded.stdout
        for job in [keyed, *plain]:  # each on the partition its key (or id) maps to
            copy = await sharded.get_job(job.id)
            assert copy is not None and copy.state is conveyor.JobState.WAITING
            home = partition_for("tenant-7" if job is keyed else job.id, 3)
            assert copy.queue == f"{sharded.name}~{home}"
        assert (await sharded.counts()).waiting == 5

        (last,) = killed(source, "send_email", {"n": 5})
        to_fresh = run("replay", queue_name, last, "--to", fresh.name)
        assert to_fresh.exit_code == 0, to_fresh.output
        listed = [q["queue"] for q in invoke_json(main, "status")["queues"]]
        assert sharded.name in listed and fresh.name in listed

        for target, n in ((sharded, 5), (fresh, 1)):
            worker = conveyor.Worker(target.name, url=server_url, options=WORKER_TEST_OPTIONS)

            @worker.handler
            async def send_email(ctx: conveyor.JobContext, payload: Any) -> Any:
                return payload

            async with RunningWorker(worker):
                await wait_for(lambda t=target, n=n: _completed(t, n))
        status = {q["queue"]: q for q in invoke_json(main, "status")["queues"]}
        assert status[sharded.name]["completed"] == 5 and status[fresh.name]["completed"] == 1
    finally:
        source.obliterate(force=True)
        source.close()
        for q in (sharded, fresh):
            await q.obliterate(force=True)
            await q.close()


async def _completed(queue: conveyor.Queue, n: int) -> bool:
    return (await queue.counts()).completed == n


def test_drop_older_than_and_all(queue: conveyor.SyncQueue) -> None:
    first, second, third = killed(queue, "send_email", 1, 2, 3)

    young = run_json("drop", queue.name, "--older-than", "1h", "--yes")
    assert (young["matched"], young["moved"]) == (0, 0)
    assert run("drop", queue.name, "--older-than", "soon").exit_code == 2
    assert run("drop", queue.name).exit_code == 2  # says which jobs
    both = run("drop", queue.name, first, "--all")
    assert both.exit_code == 2 and "not several" in both.output

    one = run("drop", queue.name, first)  # one id: no question
    assert one.exit_code == 0 and "Dropped 1 dead job." in one.stdout
    declined = run("drop", queue.name, "--older-than", "0s", input="n\n")
    assert declined.exit_code == 1 and "Drop 2 dead jobs" in declined.output
    assert dead_ids(queue) == {second, third}

    dropped = run("drop", queue.name, "--all", "--yes")
    assert dropped.exit_code == 0, dropped.output
    assert "Dropped 2 dead jobs." in dropped.stdout
    assert queue.counts().dead == 0 and queue.get_job(second) is None


def test_export_then_import_round_trip(queue: conveyor.SyncQueue, tmp_path: Path) -> None:
    ids = killed(queue, "send_email", {"n": 1}, {"n": 2}, {"n": 3})
    backup = tmp_path / "dead.jsonl"
    exported = run("export", queue.name, str(backup))
    assert exported.exit_code == 0, exported.output
    assert "Exported 3 dead jobs" in exported.stdout
    assert len(backup.read_text().splitlines()) == 3

    assert run("drop", queue.name, "--all", "--yes").exit_code == 0
    assert queue.counts().dead == 0
    imported = run("import", queue.name, str(backup))
    assert imported.exit_code == 0, imported.output
    assert "Imported 3 dead jobs" in imported.stdout
    assert dead_ids(queue) == set(ids)
    job = queue.get_job(ids[1])
    assert job is not None and job.payload == {"n": 2}

    again = run_json("import", queue.name, str(backup))
    assert (again["imported"], again["skipped"]) == (0, 3)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not json\n")
    refused = run("import", queue.name, str(garbage))
    assert refused.exit_code == 1 and "1 bad record, nothing imported" in refused.stderr
    assert "line 1: not valid JSON: JSON is malformed" in refused.stderr


def test_export_refuses_to_overwrite_without_force(
    queue: conveyor.SyncQueue, tmp_path: Path
) -> None:
    killed(queue, "send_email", {"n": 1})
    backup = tmp_path / "dead.jsonl"
    backup.write_text("precious\n")
    refused = run("export", queue.name, str(backup))
    assert refused.exit_code == 1
    assert refused.stderr.strip() == f"Error: {backup} exists; pass --force to overwrite it"
    assert backup.read_text() == "precious\n"
    with pytest.raises(FileExistsError):
        queue.dead_letters.export(backup)
    assert backup.read_text() == "precious\n"

    forced = run("export", queue.name, str(backup), "--force")
    assert forced.exit_code == 0, forced.output
    assert "Exported 1 dead job" in forced.stdout
    assert len(backup.read_text().splitlines()) == 1 and "precious" not in backup.read_text()
    nowhere = run("export", queue.name, str(tmp_path / "no-such-dir" / "dead.jsonl"))
    assert nowhere.exit_code == 1 and "Traceback" not in nowhere.output
    assert nowhere.stderr.startswith("Error: cannot write ")


def test_kill(queue: conveyor.SyncQueue) -> None:
    job = queue.enqueue("send_email", 1, delay=60)
    result = run("kill", queue.name, job.id)
    assert result.exit_code == 0, result.output
    dead = queue.get_job(job.id)
    assert dead is not None and dead.dead_reason is conveyor.DeadReason.KILLED

    again = run("kill", queue.name, job.id)
    assert again.exit_code == 1
    assert "cannot kill" in again.stderr and "only waiting or delayed" in again.stderr

    unknown = run("kill", queue.name, "no-such-job")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == f"Error: no job 'no-such-job' in queue {queue.name!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["list", "q"],
        ["show", "q", "some-id"],
        ["replay", "q", "--all", "--yes"],
        ["drop", "q", "--all", "--yes"],
        ["kill", "q", "some-id"],
    ],
    ids=lambda args: args[0],
)
def test_an_unreachable_server_is_one_line_and_exit_1(args: list[str], server_url: str) -> None:
    result = run(*args, "--url", UNREACHABLE)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot reach the Redis/Valkey server at redis://127.0.0.1:1")
    assert "Traceback" not in result.output
