"""The worker's hot-path pieces on their own (no server)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.worker.deadlines import Deadlines
from conveyor.worker.fetcher import InFlight
from conveyor.worker.slots import Slots


async def _sleeper(cancelled_at: list[float]) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled_at.append(loop.time())
        raise


async def test_a_deadline_cancels_its_task_at_the_deadline_and_not_before() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    cancelled_at: list[float] = []
    task = asyncio.create_task(_sleeper(cancelled_at))
    await asyncio.sleep(0)
    entry = deadlines.start(task, 0.05)
    due = loop.time() + 0.05
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and entry.expired
    assert cancelled_at[0] >= due - 1e-6  # the loop's clock: never early


async def test_a_finished_job_is_not_cancelled_and_others_keep_their_deadlines() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    cancelled_at: list[float] = []
    early = asyncio.create_task(_sleeper(cancelled_at))
    spared = asyncio.create_task(_sleeper(cancelled_at))
    late = asyncio.create_task(_sleeper(cancelled_at))
    await asyncio.sleep(0)
    first = deadlines.start(early, 0.02)
    kept = deadlines.start(spared, 0.02)
    last = deadlines.start(late, 0.06)  # another timeout length: its own FIFO
    deadlines.finish(kept)
    await asyncio.gather(early, late, return_exceptions=True)
    assert first.expired and last.expired and not kept.expired
    assert not spared.done()
    spared.cancel()
    await asyncio.gather(spared, return_exceptions=True)
    assert len(cancelled_at) == 3  # early, late, and the test's own cancel of spared


async def test_finished_entries_do_not_pile_up_behind_a_long_running_job() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    task = asyncio.current_task()
    assert task is not None
    long_running = deadlines.start(task, 300)
    for _ in range(1000):
        deadlines.finish(deadlines.start(task, 300))
    assert len(deadlines._fifos[300]) < 200
    deadlines.finish(long_running)
    for seconds in range(1, 100):  # each job its own timeout
        deadlines.finish(deadlines.start(task, seconds))
    assert not deadlines._fifos


async def test_slots_wake_a_taker_only_once_enough_are_free() -> None:
    slots = Slots(8)
    assert await slots.take(8, 2) == 8
    taker = asyncio.create_task(slots.take(8, 3))
    slots.give()
    slots.give()
    await asyncio.sleep(0)
    assert not taker.done() and len(slots._waiters) == 1
    slots.give()
    assert await taker == 3


async def test_acknowledgements_wait_for_the_fetches_already_in_flight_only() -> None:
    loop = asyncio.get_running_loop()
    in_flight = InFlight()
    first: asyncio.Future[None] = loop.create_future()
    in_flight.add(first)
    waiter = asyncio.create_task(in_flight.passed())
    for _ in range(3):  # the waiter lets a woken fetcher go first, then looks
        await asyncio.sleep(0)
    later: asyncio.Future[None] = loop.create_future()
    in_flight.add(later)
    await asyncio.sleep(0)
    assert not waiter.done()
    first.set_result(None)
    await asyncio.wait_for(waiter, 5)  # not held up by the later fetch
    later.set_result(None)
    await asyncio.sleep(0)
    assert not in_flight._calls


async def test_an_unanswered_fetch_holds_acknowledgements_back_for_a_bounded_time() -> None:
    in_flight = InFlight()
    stuck: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    in_flight.add(stuck)
    await asyncio.wait_for(in_flight.passed(), 10)  # returns by its own bound
    stuck.cancel()


def test_the_worker_modules_read_no_private_fields_of_other_objects() -> None:
    """A piece that needs another's state asks through a public name (``os._exit`` aside),
    even within one module (tests/test_architecture.py checks across modules)."""
    import ast
    from pathlib import Path

    import conveyor.worker

    found = []
    for path in sorted(Path(conveyor.worker.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or not isinstance(node.value, ast.Name):
                continue
            if node.value.id not in ("self", "cls", "os"):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, found


def test_held_locks_let_go_only_of_the_attempt_still_held() -> None:
    from conveyor.worker.held import HeldLocks
    from conveyor.worker.settler import Done

    held = HeldLocks(["q", "r"])
    held.take("q", "a", "t1")
    held.take("q", "b", "t2")
    assert not held.let_go("q", "a", "t0")  # an older attempt: the lock stays held
    assert not held.let_go("other", "a", "t1")  # a queue not served
    snapshot = held.snapshot()
    assert snapshot == {"q": {"a": "t1", "b": "t2"}, "r": {}}
    assert held.let_go("q", "a", "t1")
    assert not held.let_go("q", "a", "t1")  # once
    assert snapshot["q"] == {"a": "t1", "b": "t2"}  # a copy, untouched by later changes
    assert held.snapshot() == {"q": {"b": "t2"}, "r": {}}
    held.take("q", "c", "t3")
    held.let_go_all("q", [Done("b", "t2", b"", 0), Done("c", "t0", b"", 0)])  # c: older
    held.let_go_all("other", [Done("c", "t3", b"", 0)])
    assert held.snapshot() == {"q": {"c": "t3"}, "r": {}}


def test_held_locks_can_be_snapshot_from_a_thread_while_the_loop_changes_them() -> None:
    import threading

    from conveyor.worker.held import HeldLocks

    held = HeldLocks(["q"])
    done = threading.Event()
    seen: list[int] = []

    def renew() -> None:  # what the lock keeper's thread does
        while not done.is_set():
            seen.append(len(held.snapshot()["q"]))

    thread = threading.Thread(target=renew)
    thread.start()
    try:
        for n in range(20_000):
            held.take("q", str(n), "t")
            if n >= 10:
                assert held.let_go("q", str(n - 10), "t")
    finally:
        done.set()
        thread.join(30)
    assert seen and max(seen) <= 11
    assert held.snapshot()["q"] == {str(n): "t" for n in range(19_990, 20_000)}


def test_the_outage_backoff_doubles_with_jitter_up_to_the_most_and_starts_over() -> None:
    from conveyor import defaults
    from conveyor.worker.outage import FIRST_PAUSE, Outage

    outage = Outage()
    pauses = [outage.pause() for _ in range(12)]
    for n, pause in enumerate(pauses, start=1):
        full = min(defaults.RECONNECT_BACKOFF_MAX, FIRST_PAUSE * 2**n)
        assert full / 2 <= pause <= full
    outage.recovered()
    assert outage.pause() <= 2 * FIRST_PAUSE


async def test_until_reachable_retries_through_an_outage_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import conveyor
    from conveyor.worker import outage as outage_module

    monkeypatch.setattr(outage_module, "FIRST_PAUSE", 0.001)
    tries: list[int] = []

    async def send() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise conveyor.ServerUnavailable("connection refused")
        return "answered"

    outage = outage_module.Outage()
    answer = await outage_module.until_reachable(send, outage, "record job %s", "j1")
    assert answer == "answered" and len(tries) == 3
    retried = [r.getMessage() for r in caplog.records]
    assert retried == ["could not record job j1, retrying: connection refused"] * 2

    async def broken() -> str:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await outage_module.until_reachable(broken, outage, "record job %s", "j2")
