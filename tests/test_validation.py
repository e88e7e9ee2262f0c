"""Every value a producer hands to Conveyor is checked once, at the boundary.

Each bad value is written as its reproduction: it is refused with one clear ``ValueError``
(or ``PayloadError``) naming the option, and the queue has stored nothing. A Hypothesis
property test then throws random option values at ``enqueue``: each either is refused with
nothing stored, or makes a job that a worker runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conveyor
from conveyor import (
    Dedup,
    Durable,
    Exponential,
    Fixed,
    JobSpec,
    Limits,
    PayloadError,
    QueueOptions,
    RetryLater,
    Schedule,
    codec,
    defaults,
)
from conveyor.cli import main
from conveyor.job import AttemptCause
from conveyor.keys import QueueKeys, validate_queue_name
from conveyor.retry import Failure, backoff_from_json, decide
from tests.cli_runner import invoke
from tests.conftest import WORKER_TEST_OPTIONS, Face, RunningWorker, wait_for

pytestmark = pytest.mark.timeout(60)

NAN, INF = float("nan"), float("inf")
LONG_NAME = "n" * (defaults.MAX_NAME_CHARS + 1)
LONG_KEY = "k" * (defaults.MAX_KEY_CHARS + 1)


def stored_job_keys(server_url: str, queue: str) -> set[bytes]:
    """Every job hash of ``queue`` on the server."""
    raw = redis.Redis.from_url(server_url)
    try:
        return set(raw.scan_iter(match=QueueKeys(queue).job("*"), count=1000))
    finally:
        raw.close()


async def assert_nothing_stored(face: Face, server_url: str) -> None:
    counts = await face.counts()
    assert (counts.waiting, counts.delayed, counts.active, counts.completed, counts.dead,
            counts.cancelled) == (0, 0, 0, 0, 0, 0)  # fmt: skip
    assert stored_job_keys(server_url, face.name) == set()


# --- enqueue options ------------------------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"priority": 1.5}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": 5000}, "priority"),
    ({"attempts": 2.5}, "attempts"),
    ({"attempts": INF}, "attempts"),
    ({"attempts": 0}, "attempts"),
    ({"attempts": True}, "attempts"),
    ({"delay": -5}, "delay"),
    ({"delay": NAN}, "delay"),
    ({"delay": INF}, "delay"),
    ({"delay": 1e300}, "delay"),
    ({"run_at": -1}, "run_at"),
    ({"run_at": NAN}, "run_at"),
    ({"run_at": 1e300}, "run_at"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": INF}, "timeout"),
    ({"retention": -1}, "retention"),
    ({"retention": NAN}, "retention"),
    ({"id": ""}, "id"),
    ({"id": "x" * (defaults.MAX_ID_CHARS + 1)}, "id"),
    ({"id": "a\nb"}, "id"),
    ({"id": 7}, "id"),
    ({"group": LONG_KEY}, "group"),
    ({"group": ""}, "group"),
    ({"group": "t\x00"}, "group"),
    ({"partition_key": LONG_KEY}, "partition_key"),
    ({"backoff": {"type": "fixed", "seconds": 1}}, "backoff"),
    ({"dedup": "key"}, "dedup"),
    ({"durable": True}, "durable"),
]


@pytest.mark.parametrize(("options", "named"), BAD_OPTIONS, ids=lambda v: repr(v)[:40])
async def test_a_bad_enqueue_option_is_refused_and_nothing_is_stored(
    face: Face, server_url: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        await face.enqueue("ok", {"n": 1}, **options)
    assert "\n" not in str(refused.value)
    spec_options = {k: v for k, v in options.items() if k != "durable"}
    with pytest.raises(ValueError, match=named):
        await face.enqueue_many([("ok", 1), JobSpec("ok", 2, **spec_options)],
                                durable=options.get("durable"))  # fmt: skip
    await assert_nothing_stored(face, server_url)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "1-200 characters"),
        (LONG_NAME, "1-200 characters"),
        ("send\nemail", "control"),
        ("x\x1b[31m", "control"),
        (None, "must be a string"),
    ],
)
async def test_a_bad_job_name_is_refused_on_every_path(
    face: Face, server_url: str, name: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=f"job name .*{message}"):
        await face.enqueue(name, 1)  # the short way, without options
    with pytest.raises(ValueError, match=f"job name .*{message}"):
        await face.enqueue(name, 1, priority=2)  # through a JobSpec
    with pytest.raises(ValueError, match="job name"):
        await face.enqueue_many([("ok", 1), (name, 2)])  # the bulk fast path
    await assert_nothing_stored(face, server_url)


@pytest.mark.parametrize(
    "make",
    [lambda: Dedup("", 10), lambda: Dedup(LONG_KEY, 10), lambda: Dedup("k", 0),
     lambda: Dedup("k", NAN), lambda: Dedup("k", 10, debounce=1)],  # type: ignore[arg-type]
    ids=["empty-key", "long-key", "zero-window", "nan-window", "int-debounce"],
)  # fmt: skip
def test_a_bad_dedup_is_refused_when_made(make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=r"dedup|Dedup"):
        make()


@pytest.mark.parametrize(
    "options",
    [
        {"replicas": -1},
        {"replicas": 1.5},
        {"replicas": 10**6},
        {"timeout": 0},
        {"timeout": NAN},
        {"aof_local": 1},
    ],
)
def test_a_bad_durable_is_refused_when_made(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Durable"):
        Durable(**options)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": 1.5},
        {"group_concurrency": True},
        {"rate": (0, 1.0)},
        {"rate": (10, 0)},
        {"rate": (10, NAN)},
        {"rate": (1.5, 1)},
        {"group_rate": (10,)},
        {"group_rate": "10/s"},
    ],
)
def test_bad_limits_are_refused_when_made(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Limits(**options)


async def test_set_limits_refuses_anything_but_limits(face: Face) -> None:
    with pytest.raises(ValueError, match="Limits"):
        await face.set_limits({"concurrency": 0})
    assert await face.limits() == Limits()


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"timeout": 0},
        {"timeout": NAN},
        {"max_payload_bytes": 0},
        {"completed_keep_age": -1},
        {"dead_keep_count": -1},
        {"backoff": "fixed"},
        {"dead_letter_queue": "dlq\n"},
    ],
)
def test_bad_queue_options_are_refused_when_made(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        QueueOptions(**options)


async def test_set_priority_and_reschedule_refuse_bad_values(face: Face) -> None:
    job = await face.enqueue("ok", 1)
    for priority in (1.5, True, INF, 10**6):
        with pytest.raises(ValueError, match="priority"):
            await face.set_priority(job.id, priority)
    for delay in (-5, NAN, INF, 1e300):
        with pytest.raises(ValueError, match="delay"):
            await face.reschedule(job.id, delay)
    stored = await face.get_job(job.id)
    assert (stored.state, stored.priority) == (conveyor.JobState.WAITING, 0)


# --- backoffs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: Fixed(NAN), lambda: Fixed(-100), lambda: Fixed(INF), lambda: Fixed(1, jitter=-1),
     lambda: Fixed(True), lambda: Exponential(factor=1e308), lambda: Exponential(factor=0.5),
     lambda: Exponential(base=-1), lambda: Exponential(cap=NAN), lambda: Exponential(jitter=2)],
    ids=["fixed-nan", "fixed-negative", "fixed-inf", "negative-jitter", "fixed-bool",
         "factor-1e308", "factor-below-1", "negative-base", "nan-cap", "jitter-2"],
)  # fmt: skip
def test_a_backoff_that_could_not_settle_is_refused_when_made(make: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=r"Fixed\.|Exponential\."):
        make()


def test_a_stored_backoff_is_checked_like_a_new_one() -> None:
    with pytest.raises(ValueError, match=r"Fixed\.seconds"):
        backoff_from_json({"type": "fixed", "seconds": -100})
    with pytest.raises(ValueError, match=r"Exponential\.factor"):
        JobSpec("replayed", meta={"backoff": {"type": "exponential", "factor": 1e308}})


def test_every_backoff_delay_is_a_storable_number_of_seconds() -> None:
    steep = Exponential(base=1, factor=defaults.MAX_BACKOFF_FACTOR, cap=60, jitter=0)
    assert steep.delay(10**6) == 60  # no OverflowError however many attempts
    for asked in (INF, -INF, NAN, -5, 1e300):
        failure = Failure(attempt=1, max_attempts=3, cause=AttemptCause.ERROR,
                          error=RetryLater(asked))  # fmt: skip
        delay = decide(failure).delay
        assert 0 <= delay <= defaults.MAX_SECONDS and not math.isnan(delay)
        plain = Failure(attempt=1, max_attempts=3, cause=AttemptCause.ERROR)
        by_function = decide(plain, lambda attempt, error, job, asked=asked: asked)
        assert 0 <= by_function.delay <= defaults.MAX_SECONDS


# --- payloads -------------------------------------------------------------------------

NOT_JSON = [
    (NAN, "NaN"),
    ({"a": [1, INF]}, r"payload\['a'\]\[1\] is inf"),
    ({1, 2}, "set"),
    (frozenset({1}), "frozenset"),
    (b"raw", "bytes"),
    ({"when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}, "datetime"),
    (dt.date(2026, 1, 1), "date"),
    (decimal.Decimal("1.5"), "Decimal"),
    (uuid.UUID(int=7), "UUID"),
    ({1: "x"}, "int key"),
    ({"nested": {2.5: "x"}}, "float key"),
    (object(), "not JSON"),
]


@pytest.mark.parametrize(("payload", "message"), NOT_JSON, ids=lambda v: type(v).__name__)
async def test_a_payload_that_is_not_json_is_refused_not_converted(
    face: Face, server_url: str, payload: Any, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        await face.enqueue("ok", payload)
    with pytest.raises(PayloadError, match=message):
        await face.enqueue("ok", payload, priority=1)
    with pytest.raises(PayloadError, match=message):
        await face.enqueue_many([("ok", 1), ("ok", payload)])
    await assert_nothing_stored(face, server_url)


async def test_tuples_are_json_arrays_and_come_back_as_lists(face: Face) -> None:
    job = await face.enqueue("ok", {"point": (1, 2), "path": [(0, 0), (1, 1)]})
    assert (await face.get_job(job.id)).payload == {"point": [1, 2], "path": [[0, 0], [1, 1]]}


def test_results_are_strict_json_too() -> None:
    with pytest.raises(PayloadError, match="result is a set"):
        codec.encode({3, 4}, what="result")
    assert codec.encode({"ok": True, "n": 1.5, "big": 2**70, "s": "é"}) == (
        b'{"ok":true,"n":1.5,"big":1180591620717411303424,"s":"\xc3\xa9"}'
    )


# --- queue names and schedules --------------------------------------------------------


@pytest.mark.parametrize("name", ["q\n", "q\r", "q ", "", "q~1~2", "q" * 201, "é"])
def test_a_queue_name_must_match_as_a_whole(name: str) -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        validate_queue_name(name)
    with pytest.raises(ValueError, match="invalid queue name"):
        conveyor.SyncQueue(name)


@pytest.mark.parametrize("cron", ["* * * * * *", "* * * * * * *", "0 0 * * * 0 2026", "* * * *"])
def test_a_cron_with_seconds_or_year_fields_is_refused(cron: str) -> None:
    with pytest.raises(ValueError, match="five fields"):
        Schedule(id="s", name="job", cron=cron)


def test_five_field_crons_and_aliases_are_accepted() -> None:
    for cron in ("*/5 * * * *", "0 3 * * mon-fri", "@daily", "@hourly"):
        assert Schedule(id="s", name="job", cron=cron).cron == cron


@pytest.mark.parametrize(
    "options",
    [
        {"every": 0},
        {"every": 0.01},
        {"every": NAN},
        {"every": 1e300},
        {"id": ""},
        {"id": "s" * (defaults.MAX_SCHEDULE_ID_CHARS + 1)},
        {"name": "a\nb"},
        {"priority": 1.5},
        {"attempts": 0},
        {"timeout": 0},
        {"payload": {1, 2}},
        {"catch_up": "no"},
        {"timezone": "Mars/Olympus"},
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_bad_schedule_is_refused_when_defined(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Schedule(**{"id": "s", "name": "job", "every": 60, **options})


async def test_a_schedule_payload_over_the_queue_limit_is_refused(
    server_url: str, queue_name: str
) -> None:
    queue = conveyor.Queue(queue_name, url=server_url,
                           options=QueueOptions(max_payload_bytes=100))  # fmt: skip
    try:
        with pytest.raises(PayloadError, match="over the limit"):
            await queue.schedule(Schedule(id="s", name="job", every=60, payload="x" * 200))
        assert await queue.schedules() == []
    finally:
        await queue.obliterate(force=True)
        await queue.close()


async def test_a_stored_schedule_that_fails_the_checks_is_skipped(
    queue: conveyor.Queue, server_url: str
) -> None:
    """A 7-field cron stored by an older version neither fires every second nor breaks."""
    await queue.schedule(Schedule(id="good", name="job", every=3600))
    raw = redis.Redis.from_url(server_url)
    keys = QueueKeys(queue.name)
    bad = {"id": "bad", "name": "job", "cron": "* * * * * * *", "timezone": "UTC"}
    raw.hset(keys.key("schedules"), "bad", msgspec.json.encode(bad))
    raw.zadd(keys.key("schedule_due"), {"bad": 0})
    raw.close()
    assert [entry.schedule.id for entry in await queue.schedules()] == ["good"]
    worker = conveyor.Worker(queue.name, url=server_url, options=WORKER_TEST_OPTIONS)
    worker.handler(name="job")(lambda ctx, payload: None)
    async with RunningWorker(worker):
        redis_async = redis.asyncio.Redis.from_url(server_url)
        try:
            await wait_for(lambda: _not_due(redis_async, keys, "bad"))
        finally:
            await redis_async.aclose()
    assert (await queue.counts()).waiting == 0  # the bad one never fired


async def _not_due(raw: Any, keys: QueueKeys, schedule_id: str) -> bool:
    return await raw.zscore(keys.key("schedule_due"), schedule_id) is None


# --- the command line -----------------------------------------------------------------


def test_cli_enqueue_without_a_payload_enqueues_an_empty_object(
    sync_queue: conveyor.SyncQueue,
) -> None:
    result = invoke(main, "enqueue", sync_queue.name, "ping")
    assert result.exit_code == 0, result.output
    job = sync_queue.get_job(result.stdout.strip())
    assert job is not None and job.payload == {}


@pytest.mark.parametrize(
    "args",
    [
        ("--delay", "inf"),
        ("--delay", "nan"),
        ("--delay", "1e300"),
        ("--id", ""),
        ("--id", "x" * 201),
        ("--attempts", str(10**30)),
        ("--partition-key", "k" * 1001),
    ],
    ids=lambda v: " ".join(v)[:30],
)
def test_cli_enqueue_refuses_bad_values_in_one_line(
    sync_queue: conveyor.SyncQueue, server_url: str, args: tuple[str, ...]
) -> None:
    result = invoke(main, "enqueue", sync_queue.name, "ping", "{}", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is not None
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    assert stored_job_keys(server_url, sync_queue.name) == set()


def test_cli_enqueue_refuses_a_bad_name_and_a_payload_with_nan(
    sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    for args in (("bad\nname", "{}"), ("ok", '{"x": NaN}'), ("ok", "[1e999]")):
        result = invoke(main, "enqueue", sync_queue.name, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert stored_job_keys(server_url, sync_queue.name) == set()


def test_cli_schedule_add_refuses_bad_crons_and_intervals(sync_queue: conveyor.SyncQueue) -> None:
    name = sync_queue.name
    for args in (("--cron", "* * * * * * *"), ("--cron", "*/5 * * * * *"),
                 ("--every", "99999999999d"), ("--every", "0"),
                 ("--cron", "* * * * *", "--priority", "5000")):  # fmt: skip
        result = invoke(main, "schedule", "add", name, "s", "job", *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "Error:" in result.output
    assert sync_queue.schedules() == []
    added = invoke(main, "schedule", "add", name, "s", "job", "--cron", "0 3 * * *")
    assert added.exit_code == 0, added.output
    (entry,) = sync_queue.schedules()
    assert entry.schedule.payload == {}  # left out: an empty object, as for enqueue


# --- the property: refused with nothing stored, or run by a worker -------------------

_NUMBERS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([0, 1, 2, -1, 0.5, 1.5, 1e300, 10**6]),
)
_TEXTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "a\nb", "x" * 1001, "ok-key"]),
    st.integers(),
)
_WORDS = st.text(alphabet="abcdefgh-_:.é", min_size=1, max_size=12)


def _either(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly values in range (so that many jobs are made and run), often anything."""
    return st.one_of(good, good, good, good, bad)


_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "priority": _either(st.integers(-1000, 1000), _NUMBERS),
        "attempts": _either(st.integers(1, 5), _NUMBERS),
        "delay": _either(st.floats(0, 60), _NUMBERS),
        "run_at": _either(st.floats(0, 4e9), _NUMBERS),
        "timeout": _either(st.floats(1, 60), _NUMBERS),
        "retention": _either(st.floats(0, 600), _NUMBERS),
        "id": _either(_WORDS, _TEXTS),
        "group": _either(_WORDS, _TEXTS),
        "partition_key": _either(_WORDS, _TEXTS),
        "backoff": st.sampled_from([None, conveyor.Immediate(), Fixed(0.1), Exponential()]),
        "dedup": _either(st.tuples(_WORDS, st.floats(0.5, 60)), st.tuples(_TEXTS, _NUMBERS)),
    },
)
_PAYLOADS = _either(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    st.one_of(
        st.floats(),
        st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
        st.sampled_from([{1, 2}, b"x", (1, 2), [NAN], {"ok": [1, INF]}, 2**70]),
    ),
)
_NAMES = st.sampled_from(["ok", "ok", "ok", "ünï", "ünï", "ünï", "", "a\nb", "x" * 201, 7])


def test_the_enqueue_boundary_holds_for_any_values(server_url: str, queue_name: str) -> None:
    queue = conveyor.SyncQueue(queue_name, url=server_url)
    accepted: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(name=_NAMES, payload=_PAYLOADS, options=_OPTIONS)
    def enqueue_once(name: str, payload: Any, options: dict[str, Any]) -> None:
        if "dedup" in options:
            key, window = options["dedup"]
            try:
                options["dedup"] = Dedup(key, window)
            except ValueError:
                return  # refused when made: nothing to enqueue
        before = stored_job_keys(server_url, queue_name)
        try:
            job = queue.enqueue(name, payload, **options)
        except (ValueError, PayloadError) as exc:
            assert "\n" not in str(exc).split(":", 1)[0]
            assert stored_job_keys(server_url, queue_name) == before
            return
        accepted.add(job.id)

    try:
        enqueue_once()
        assert accepted, "no example was accepted: the strategies are too harsh"
        for job_id in accepted:
            queue.reschedule(job_id, 0)  # delayed and debounced ones too: run them now
        asyncio.run(_run_all(queue_name, server_url, accepted))
    finally:
        queue.obliterate(force=True)
        queue.close()


async def _run_all(queue_name: str, server_url: str, accepted: set[str]) -> None:
    ran: set[str] = set()
    worker = conveyor.Worker(queue_name, url=server_url, options=WORKER_TEST_OPTIONS)

    async def record(ctx: conveyor.JobContext, payload: Any) -> None:
        ran.add(ctx.id)

    for name in ("ok", "ünï"):
        worker.handler(name=name)(record)
    async with RunningWorker(worker):
        await wait_for(lambda: accepted <= ran, timeout=30)


@pytest.mark.parametrize("count", [1.5, True, 0, 2000])
async def test_a_bad_partition_count_is_refused_and_nothing_is_stored(
    server_url: str, queue_name: str, count: Any
) -> None:
    queue = conveyor.Queue(queue_name, url=server_url, partitions=count)
    try:
        with pytest.raises(ValueError, match=r"partitions must be an integer in 1\.\.1024"):
            await queue.enqueue("ok", 1)
        raw = redis.Redis.from_url(server_url)
        try:
            assert raw.hget(conveyor.keys.PARTITIONS, queue_name) is None
        finally:
            raw.close()
    finally:
        await queue.close()


async def test_years_of_missed_ticks_are_caught_up_at_once(
    queue: conveyor.Queue, server_url: str
) -> None:
    """The shortest interval, no worker for ten years: one job, without counting 315M ticks."""
    from conveyor import schedules
    from conveyor.transport import AsyncTransport

    await queue.schedule(Schedule(id="every-second", name="work", every=defaults.MIN_EVERY))
    raw = redis.Redis.from_url(server_url)
    long_ago_ms = round((time.time() - defaults.MAX_SECONDS) * 1000)
    raw.zadd(QueueKeys(queue.name).key("schedule_due"), {"every-second": long_ago_ms})
    raw.close()
    transport = AsyncTransport(conveyor.connection.async_client(server_url), server_url)
    try:
        started = time.monotonic()
        made = await transport.run(schedules.fire_due(queue.keys, queue.options))
        assert time.monotonic() - started < 10
    finally:
        await transport.close()
    assert made == 1 and (await queue.counts()).waiting == 1
