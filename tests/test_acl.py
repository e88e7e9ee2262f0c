"""The ACL rules of ``docs/acl.md``, applied as written to a private server.

A worker runs the whole lifecycle under exactly the worker rules; a producer is refused
every worker transition before anything changes; the dashboard user reads and changes
nothing. A drift check keeps the documented worker rules in step with the commands the
code and the scripts send.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import conveyor
from conveyor.keys import QUEUE_KEYS, QueueKeys
from conveyor.lua import script
from conveyor.transport import SyncTransport
from conveyor.worker import calls
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for
from tests.servers import ServerProcess, local_cluster, valkey

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "acl.md"
PASSWORD = uuid.uuid4().hex
ACL_ERROR = "NOPERM|ACL failure|[Nn]o permissions"
#: What every user needs besides on a cluster: redis-py reads the slot map and the commands.
CLUSTER_EXTRAS = "+cluster|slots +cluster|shards +command"
WORKER_TRANSITIONS = ("fetch", "complete", "fail", "release", "extend_locks", "recover_stalled",
                      "finish_cancelled", "rate_limited")  # fmt: skip


def documented_rules() -> dict[str, list[str]]:
    """Each ``ACL SETUSER`` line of the doc, by user name, as arguments."""
    rules = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("ACL SETUSER "):
            args = shlex.split(line.replace(">change-me", f">{PASSWORD}"))
            rules[args[2]] = args
    return rules


def allowed_commands(rule: list[str]) -> set[str]:
    return {arg[1:].upper() for arg in rule if arg.startswith("+") and not arg.startswith("+@")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with valkey(tmp_path_factory.mktemp("acl")) as running:
        with running.client() as admin:
            for rule in documented_rules().values():
                admin.execute_command(*rule)
        yield running


def url_for(server: ServerProcess, user: str) -> str:
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_doc_has_the_three_users() -> None:
    assert set(documented_rules()) == {"conveyor-worker", "conveyor-producer", "conveyor-dashboard"}


def test_the_worker_rules_allow_every_command_conveyor_sends() -> None:
    source = REPO / "src" / "conveyor"
    scripts = {
        name.upper()
        for path in (source / "lua").rglob("*.lua")
        for name in re.findall(r"redis\.p?call\('(\w+)'", path.read_text())
    }
    direct = {
        " ".join(words.split('", "')).upper()
        for path in source.rglob("*.py")
        for words in re.findall(r'Command\(\(\s*"([A-Z]+(?:", "[A-Z]+)?)"', path.read_text())
    }
    direct = {"CONFIG|GET" if name == "CONFIG GET" else name.split()[0] for name in direct}
    sent = scripts | direct | {"EVALSHA", "SCRIPT|LOAD", "XREAD", "PING"}
    worker = allowed_commands(documented_rules()["conveyor-worker"])
    assert sent - worker == set(), "docs/acl.md: the worker rules miss commands Conveyor sends"
    producer = allowed_commands(documented_rules()["conveyor-producer"])
    assert worker - producer == {"BLPOP", "ZPOPMIN", "LREM", "SREM", "INFO", "CONFIG|GET"}


def test_active_is_the_only_queue_key_the_producer_pattern_leaves_out() -> None:
    assert [name for name in QUEUE_KEYS.values() if name.startswith("a")] == ["active"]
    assert "%RW~conveyor:{*}:[^a]*" in documented_rules()["conveyor-producer"]
    for name in WORKER_TRANSITIONS:  # so a producer is refused each of them up front
        assert "active" in script(name).key_names, name


def _lock_deadline(server: ServerProcess, queue_name: str, job_id: str) -> float:
    with server.client() as admin:
        return float(admin.zscore(QueueKeys(queue_name).key("active"), job_id) or 0)


async def test_a_worker_runs_the_whole_lifecycle_under_the_worker_rules(
    server: ServerProcess, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recoveries: list[str] = []  # each stalled-job check that got its reply
    parse_recovered = calls.parse_recovered

    def counted(queue: str, reply: Any) -> list[calls.Claim]:
        recoveries.append(queue)
        return parse_recovered(queue, reply)

    monkeypatch.setattr(calls, "parse_recovered", counted)
    release = asyncio.Event()
    ran: list[str] = []
    options = conveyor.WorkerOptions(
        concurrency=4, lock_ttl=2.0, lock_renew_interval=0.3, stall_check_interval=0.3,
        idle_block=0.5, shutdown_grace=0.2,
    )  # fmt: skip
    worker = conveyor.Worker(queue_name, url=url_for(server, "conveyor-worker"), options=options)

    @worker.handler
    async def ok(ctx: conveyor.JobContext, payload: str) -> str:
        ran.append(payload)
        return payload

    @worker.handler
    async def broken(ctx: conveyor.JobContext, payload: str) -> None:
        raise ValueError(payload)

    @worker.handler
    async def hold(ctx: conveyor.JobContext, payload: str) -> None:
        await release.wait()  # still running at shutdown: handed back with `release`

    producer_url = url_for(server, "conveyor-producer")
    async with conveyor.Queue(queue_name, url=producer_url) as queue:
        now = await queue.enqueue("ok", "now", durable=conveyor.Durable())
        later = await queue.enqueue("ok", "later", delay=0.3)
        dead = await queue.enqueue("broken", "boom", attempts=2, backoff=conveyor.Immediate())
        held = await queue.enqueue("hold", "held")
        async with RunningWorker(worker):
            await wait_for(lambda: sorted(ran) == ["later", "now"])
            await wait_for(lambda: _state(queue, dead.id, conveyor.JobState.DEAD))
            await wait_for(lambda: _state(queue, held.id, conveyor.JobState.ACTIVE))
            # Lock renewals and stalled-job checks run under the rules too.
            renewed = _lock_deadline(server, queue_name, held.id)
            await wait_for(lambda: _lock_deadline(server, queue_name, held.id) > renewed)
            checks = len(recoveries)
            await wait_for(lambda: len(recoveries) >= checks + 2)
        assert await _state(queue, held.id, conveyor.JobState.WAITING)  # handed back
        for job in (now, later):
            assert await _state(queue, job.id, conveyor.JobState.COMPLETED)


async def _state(queue: conveyor.Queue, job_id: str, state: conveyor.JobState) -> bool:
    job = await queue.get_job(job_id)
    return job is not None and job.state is state


def test_a_producer_cannot_do_a_workers_job(server: ServerProcess, queue_name: str) -> None:
    keys = QueueKeys(queue_name)
    options = conveyor.QueueOptions()
    producer_url, worker_url = (
        url_for(server, "conveyor-producer"),
        url_for(server, "conveyor-worker"),
    )
    with conveyor.SyncQueue(queue_name, url=producer_url) as queue:
        waiting = queue.enqueue("ok", 1)
        taken = queue.enqueue("ok", 2)
    as_worker = SyncTransport(redis.Redis.from_url(worker_url), worker_url)
    as_producer = SyncTransport(redis.Redis.from_url(producer_url), producer_url)
    try:
        fetch = calls.fetch(
            keys, options, 1, "w1", "w1.0", 60_000, names=["ok"], unknown_job_grace=60.0
        )
        with pytest.raises(redis.ResponseError, match=ACL_ERROR):
            as_producer.execute([fetch])
        (reply,) = as_worker.execute([fetch])  # the worker takes one job: the oldest
        (claim,) = calls.parse_fetch(queue_name, reply).claims
        assert claim.id == waiting.id
        # Even with the lock token in hand, the producer cannot settle or keep the job.
        for call in (
            calls.complete(keys, options, [(claim.id, claim.token, b'"forged"', 0)]),
            calls.release(keys, options, [(claim.id, claim.token)]),
            calls.extend_locks(keys, 60_000, "w1", 60_000, b"{}", [(claim.id, claim.token)]),
            calls.recover_stalled(keys, options, 10, "p", "p.0", 1000),
        ):
            with pytest.raises(redis.ResponseError, match=ACL_ERROR):
                as_producer.execute([call])
        with conveyor.SyncQueue(queue_name, url=producer_url) as queue:
            job = queue.get_job(claim.id)
            assert job is not None and job.state is conveyor.JobState.ACTIVE
            other = queue.get_job(taken.id)
            assert other is not None and other.state is conveyor.JobState.WAITING
    finally:
        as_worker.close()
        as_producer.close()


def test_partitioned_queues_work_under_the_rules(server: ServerProcess, queue_name: str) -> None:
    # An operator declares the partitions; producers and dashboards only read the count.
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-worker"), partitions=3) as q:
        q.counts()
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-producer")) as queue:
        jobs = queue.enqueue_many(
            [conveyor.JobSpec("ok", n, partition_key=str(n)) for n in range(6)]
        )
        assert len({job.queue for job in jobs}) > 1
        declaring = conveyor.SyncQueue(
            f"{queue_name}-new", url=url_for(server, "conveyor-producer"), partitions=2
        )
        with declaring, pytest.raises(redis.ResponseError, match=ACL_ERROR):
            declaring.enqueue("ok", 1)
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-dashboard")) as board:
        assert board.counts().waiting == 6
        assert board.get_job(jobs[0].id) is not None


def test_a_producer_says_so_when_it_may_not_record_partitions_again(
    server: ServerProcess, queue_name: str
) -> None:
    operator = conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-worker"), partitions=2)
    with operator, conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-producer")) as q:
        operator.counts()  # declares the partitions
        q.enqueue("ok", 1)
        operator.obliterate()
        with pytest.raises(conveyor.ConveyorError, match="declare the queue again"):
            q.enqueue("ok", 2, partition_key="k")
        # The refused producer left the partition unmarked: the operator's enqueue into the
        # same partition records the count again, then the producer's enqueues work.
        operator.enqueue("ok", 3, partition_key="k")
        q.enqueue_many([("ok", 4), ("ok", 5)])
        assert operator.counts().waiting == 4


async def test_a_producer_cannot_start_a_worker(server: ServerProcess, queue_name: str) -> None:
    worker = conveyor.Worker(queue_name, url=url_for(server, "conveyor-producer"),
                             options=WORKER_TEST_OPTIONS)  # fmt: skip
    with pytest.raises(redis.ResponseError, match=ACL_ERROR):
        await asyncio.wait_for(worker.serve(), 30)


def test_the_dashboard_reads_and_changes_nothing(server: ServerProcess, queue_name: str) -> None:
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-producer")) as queue:
        job = queue.enqueue("ok", 1)
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-dashboard")) as board:
        assert board.counts().waiting == 1
        assert [j.id for j in board.list_jobs("waiting")] == [job.id]
        assert board.get_job(job.id) is not None
        for change in (lambda: board.enqueue("ok", 2), board.pause, board.drain,
                       lambda: board.remove(job.id)):  # fmt: skip
            with pytest.raises(redis.ResponseError, match=ACL_ERROR):
                change()
        counts = board.counts()
        assert (counts.waiting, counts.paused) == (1, False)


async def test_on_a_cluster_the_rules_need_only_the_slot_map_commands(
    tmp_path: Path, queue_name: str
) -> None:
    extras = CLUSTER_EXTRAS.split()
    ran: list[int] = []
    with local_cluster(tmp_path / "cluster") as cluster:
        for node in cluster.nodes:
            with node.client() as admin:
                for rule in documented_rules().values():
                    admin.execute_command(*rule, *extras)
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in cluster.nodes)

        def url(user: str) -> str:
            return f"redis+cluster://{user}:{PASSWORD}@{hosts}"

        worker = conveyor.Worker(
            queue_name, url=url("conveyor-worker"), options=WORKER_TEST_OPTIONS
        )

        @worker.handler
        async def ok(ctx: conveyor.JobContext, payload: int) -> None:
            ran.append(payload)

        async with (
            conveyor.Queue(queue_name, url=url("conveyor-producer")) as queue,
            conveyor.Queue(queue_name, url=url("conveyor-dashboard")) as board,
            RunningWorker(worker),
        ):
            await queue.enqueue("ok", 1)
            await wait_for(lambda: ran == [1])
            assert (await board.counts()).completed == 1
            with pytest.raises(redis.ResponseError, match=ACL_ERROR):
                await board.enqueue("ok", 2)


def test_no_user_may_eval_and_the_dashboard_may_not_load_a_script(server: ServerProcess) -> None:
    for user in documented_rules():
        client = redis.Redis.from_url(url_for(server, user))
        with client, pytest.raises(redis.ResponseError, match=ACL_ERROR):
            client.eval("return 1", 0)
    board = redis.Redis.from_url(url_for(server, "conveyor-dashboard"))
    with board, pytest.raises(redis.ResponseError, match=ACL_ERROR):
        board.script_load("return redis.call('TIME')")


def test_a_producers_own_lua_is_held_to_its_rules_but_may_rewrite_jobs(
    server: ServerProcess, queue_name: str
) -> None:
    # What docs/acl.md says a producer can still do, and what it cannot do even in Lua.
    keys = QueueKeys(queue_name)
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-producer")) as queue:
        job = queue.enqueue("ok", 1)
    with redis.Redis.from_url(url_for(server, "conveyor-producer")) as producer:
        take = producer.script_load("return redis.call('ZADD', KEYS[1], 0, ARGV[1])")
        with pytest.raises(redis.ResponseError, match=ACL_ERROR):
            producer.evalsha(take, 1, keys.key("active"), job.id)
        rewrite = producer.script_load("return redis.call('HSET', KEYS[1], 'payload', ARGV[1])")
        producer.evalsha(rewrite, 1, keys.job(job.id), "2")
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-dashboard")) as board:
        rewritten = board.get_job(job.id)
        assert rewritten is not None and rewritten.payload == 2
        assert rewritten.state is conveyor.JobState.WAITING  # and it was not taken


def test_the_dashboard_reads_again_once_any_caller_reloaded_the_scripts(
    server: ServerProcess, queue_name: str
) -> None:
    with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-producer")) as queue:
        queue.enqueue("ok", 1)
        with server.client() as admin:
            admin.script_flush()  # as a restart or a failover would
        with conveyor.SyncQueue(queue_name, url=url_for(server, "conveyor-dashboard")) as board:
            with pytest.raises(redis.ResponseError, match="script\\|load"):
                board.counts()  # it may not load the script it needs
            queue.enqueue("ok", 2)  # one call meets NOSCRIPT and loads every script
            assert board.counts().waiting == 2
            assert len(board.list_jobs("waiting")) == 2
            assert board.dead_letters.list().jobs == []
