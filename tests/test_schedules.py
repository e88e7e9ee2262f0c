"""Schedules: next ticks, exactly one job per tick with workers racing, missed ticks."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time

import pytest
import redis

import conveyor
from conveyor import JobContext, Schedule, schedules
from conveyor.transport import AsyncTransport
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for


def test_next_ticks_for_intervals_and_cron_in_a_time_zone() -> None:
    every = Schedule(id="tick", name="tick", every=60)
    assert every.next_after(120.0) == 180.0 and every.next_after(121.5) == 180.0
    daily = Schedule(id="report", name="report", cron="0 9 * * *", timezone="Europe/Paris")
    winter = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    nxt = dt.datetime.fromtimestamp(daily.next_after(winter), dt.timezone.utc)
    assert (nxt.day, nxt.hour, nxt.minute) == (11, 8, 0)  # 09:00 in Paris is 08:00 UTC
    runs = daily.next_runs(3, after=winter)
    assert [b - a for a, b in itertools.pairwise(runs)] == [86400.0, 86400.0]
    assert daily.job_id(runs[0]) == f"schedule:report:{round(runs[0] * 1000)}"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"cron": "* * * * *", "every": 5}, {"cron": "not cron"}, {"every": 0},
     {"every": 5, "timezone": "Mars/Olympus"}],
)  # fmt: skip
def test_bad_schedules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Schedule(id="s", name="n", **kwargs)  # type: ignore[arg-type]


async def test_upsert_list_replace_and_remove(queue: conveyor.Queue) -> None:
    first = await queue.schedule(Schedule(id="digest", name="send_digest", every=3600))
    assert first > time.time()
    await queue.schedule(Schedule(id="digest", name="send_digest", cron="0 * * * *"))
    (entry,) = await queue.schedules()
    assert entry.schedule.cron == "0 * * * *" and entry.next_run is not None
    assert await queue.unschedule("digest")
    assert not await queue.unschedule("digest")
    assert await queue.schedules() == []


def _make_due(url: str, queue: conveyor.Queue, schedule_id: str, seconds_ago: float) -> None:
    raw = redis.Redis.from_url(url)
    raw.zadd(queue.keys.key("schedule_due"), {schedule_id: (time.time() - seconds_ago) * 1000})
    raw.close()


async def test_missed_ticks_make_one_catch_up_job_or_none(
    queue: conveyor.Queue, server_url: str
) -> None:
    await queue.schedule(Schedule(id="minutely", name="work", every=60))
    await queue.schedule(Schedule(id="skip", name="work", every=60, catch_up=False))
    _make_due(server_url, queue, "minutely", 600)  # ten ticks missed
    _make_due(server_url, queue, "skip", 600)
    transport = AsyncTransport(conveyor.connection.async_client(server_url), server_url)
    made = await transport.run(schedules.fire_due(queue.keys, queue.options))
    await transport.close()
    assert made == 1
    (job,) = await queue.list_jobs("waiting")
    assert job.options["schedule"] == "minutely"
    for entry in await queue.schedules():
        assert entry.next_run is not None and entry.next_run > time.time()


async def test_racing_workers_make_exactly_one_job_per_tick(
    queue: conveyor.Queue, server_url: str
) -> None:
    await queue.schedule(Schedule(id="due-now", name="work", every=3600))
    _make_due(server_url, queue, "due-now", 1)
    transports = [
        AsyncTransport(conveyor.connection.async_client(server_url), server_url) for _ in range(5)
    ]
    made = await asyncio.gather(
        *(t.run(schedules.fire_due(queue.keys, queue.options)) for t in transports)
    )
    for t in transports:
        await t.close()
    assert sum(made) == 1 and (await queue.counts()).waiting == 1


async def test_workers_drive_an_interval_schedule(queue: conveyor.Queue, server_url: str) -> None:
    ticks: list[float] = []
    workers = []
    for _ in range(3):  # three workers race for every tick
        worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)

        @worker.handler
        async def beat(ctx: JobContext, payload: None) -> None:
            ticks.append(float(ctx.id.rsplit(":", 1)[1]) / 1000)

        workers.append(worker)
    await queue.schedule(Schedule(id="heartbeat", name="beat", every=1))
    async with RunningWorker(workers[0]), RunningWorker(workers[1]), RunningWorker(workers[2]):
        await wait_for(lambda: len(ticks) >= 3)
        await queue.unschedule("heartbeat")
    assert len(ticks) == len(set(ticks))  # one job per tick
    ordered = sorted(ticks)
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(ordered))


def test_the_schedule_commands(queue: conveyor.Queue) -> None:
    import json

    from click.testing import CliRunner

    from conveyor.cli import main

    runner = CliRunner()
    added = runner.invoke(main, ["schedule", "add", queue.name, "nightly", "cleanup",
                                 '{"days": 30}', "--cron", "0 3 * * *", "--tz",
                                 "Europe/Paris", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["next_run"] > time.time()
    listed = runner.invoke(main, ["schedule", "list", queue.name, "--json"])
    (entry,) = json.loads(listed.output)
    assert entry["cron"] == "0 3 * * *" and entry["payload"] == {"days": 30}
    assert len(entry["next_runs"]) == 3
    bad = runner.invoke(main, ["schedule", "add", queue.name, "x", "job", "--cron", "nope"])
    assert bad.exit_code == 2 and "invalid cron" in bad.output
    assert runner.invoke(main, ["schedule", "remove", queue.name, "nightly"]).exit_code == 0
    gone = runner.invoke(main, ["schedule", "remove", queue.name, "nightly"])
    assert gone.exit_code == 1 and "no schedule" in gone.output
