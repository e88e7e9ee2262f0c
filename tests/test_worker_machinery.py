"""The worker's hot-path pieces on their own (no server)."""

from __future__ import annotations

import asyncio

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


def test_the_worker_modules_import_each_other_without_a_loop() -> None:
    """Imports under ``TYPE_CHECKING`` count too: a loop hidden there is still a loop."""
    import ast
    from pathlib import Path

    import conveyor.worker

    folder = Path(conveyor.worker.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        prefix = "conveyor.worker."
        imports[path.stem] = {n[len(prefix) :] for n in names if n.startswith(prefix)}

    def loop_from(start: str, at: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(imports.get(at, set()) & imports.keys()):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = loop_from(start, nxt, [*path, nxt])
                if found:
                    return found
        return None

    loops = [found for name in imports if (found := loop_from(name, name, [name]))]
    assert not loops, " -> ".join(loops[0])
