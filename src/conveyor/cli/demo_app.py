"""The workload behind ``conveyor demo``: a small web app's jobs flowing, retrying and dying.

Two workers in this process serve a fresh ``demo-<random>`` queue: welcome emails (async),
thumbnails (sync, CPU-bound), webhooks that fail once then succeed, and three jobs that end
in the dead-letter set (a poison import, a declined card, a job nobody handles). The queue
is obliterated at the end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from conveyor import connection
from conveyor.errors import PermanentError
from conveyor.job import Job, JobState
from conveyor.ops import Counts, JobSpec, QueueOptions
from conveyor.queue import Queue
from conveyor.retry import Fixed
from conveyor.states import STATES
from conveyor.worker import JobContext, Worker, WorkerOptions
from conveyor.worker.handlers import Handler, make_handler

__all__ = ["DeadJob", "DemoSummary", "run", "run_demo"]

#: Jobs that always end dead: a poison job, a permanent error, and a name nobody handles.
DEAD_BY_DESIGN = 3
RETRY = Fixed(0.3)
WAVES = 8
WAVE_PAUSE = 0.5
POLL = 0.1


@dataclass(frozen=True)
class DeadJob:
    """A job the demo left in the dead-letter set, and why."""

    id: str
    name: str
    reason: str
    error: str


@dataclass(frozen=True)
class DemoSummary:
    """How the demo's jobs ended."""

    queue: str
    total: int
    completed: int
    retried: int  # jobs that needed more than one attempt, however they ended
    recovered: int  # completed jobs among them
    dead: list[DeadJob]
    seconds: float
    finished: bool  # False when the deadline passed first


class _App:
    """The demo web app's handlers; they note what they do for the live view."""

    def __init__(self) -> None:
        self.recent: collections.deque[str] = collections.deque(maxlen=5)
        self.log: collections.deque[str] = collections.deque(maxlen=5)
        self.random = random.Random()

    async def send_welcome_email(self, ctx: JobContext, payload: dict[str, Any]) -> str:
        await asyncio.sleep(self.random.uniform(0.05, 0.25))
        self.recent.append(f"[green]sent[/] welcome email to {escape(payload['to'])}")
        return f"<{uuid.uuid4().hex[:12]}@mail.example.com>"

    def make_thumbnail(self, ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
        deadline = time.perf_counter() + self.random.uniform(0.02, 0.08)
        digest = hashlib.sha256(payload["image"].encode())
        while time.perf_counter() < deadline:  # stands in for resizing pixels
            digest = hashlib.sha256(digest.digest())
        self.recent.append(f"[green]made[/] {payload['size']}px thumbnail of {payload['image']}")
        return {"thumbnail": f"thumbs/{digest.hexdigest()[:16]}.webp", "size": payload["size"]}

    async def deliver_webhook(self, ctx: JobContext, payload: dict[str, Any]) -> int:
        await asyncio.sleep(self.random.uniform(0.01, 0.05))
        if ctx.attempt == 1:  # the partner's endpoint blips; the retry goes through
            raise ConnectionError(f"connection reset by {payload['url']}")
        self.recent.append(f"[green]delivered[/] webhook for order {payload['order']} "
                           f"on attempt {ctx.attempt}")  # fmt: skip
        return 200

    def import_contacts(self, ctx: JobContext, payload: dict[str, Any]) -> None:
        raise ValueError(f"{payload['file']} row 3: 'N/A' is not an email address")  # poison

    async def charge_card(self, ctx: JobContext, payload: dict[str, Any]) -> None:
        raise PermanentError("card declined: insufficient funds (retrying will not help)")

    def handlers(self) -> list[Handler]:
        return [
            make_handler(self.send_welcome_email),
            make_handler(self.make_thumbnail),
            make_handler(self.deliver_webhook, backoff=RETRY),
            make_handler(self.import_contacts, backoff=RETRY),
            make_handler(self.charge_card),
        ]


def workload(jobs: int) -> list[JobSpec]:
    """The jobs of the demo, in enqueue order: ``jobs - 3`` that succeed, 3 that die."""
    regular = max(3, jobs - DEAD_BY_DESIGN)
    webhooks = max(1, regular * 15 // 100)
    thumbnails = max(1, regular * 35 // 100)
    emails = regular - webhooks - thumbnails
    specs = [JobSpec("send_welcome_email", {"to": f"user{n}@example.com", "template": "welcome"})
             for n in range(emails)]  # fmt: skip
    specs += [JobSpec("make_thumbnail", {"image": f"uploads/photo-{n}.jpg", "size": 256})
              for n in range(thumbnails)]  # fmt: skip
    specs += [JobSpec("deliver_webhook", {"url": "https://hooks.example.com/orders",
                                          "event": "order.paid", "order": 1000 + n})
              for n in range(webhooks)]  # fmt: skip
    random.Random(7).shuffle(specs)
    doomed = [
        JobSpec("import_contacts", {"file": "contacts.csv"}, attempts=3),
        JobSpec("charge_card", {"order": 1999, "amount_cents": 4200}),
        JobSpec("send_sms", {"to": "+15550100", "text": "Your code is 1234"}),  # no handler
    ]
    for index, spec in enumerate(doomed):  # spread them through the flow
        specs.insert(len(specs) * (index + 1) // 4, spec)
    return specs


def run(
    jobs: int = 40, workers: int = 2, url: str | None = None, console: Console | None = None
) -> DemoSummary:
    """Run the demo to its end (blocking) and return how its jobs ended."""
    return asyncio.run(run_demo(jobs, workers, url=url, console=console))


async def run_demo(
    jobs: int = 40,
    workers: int = 2,
    *,
    url: str | None = None,
    console: Console | None = None,
    deadline: float = 60.0,
) -> DemoSummary:
    """Run the demo on ``url`` (default: ``$CONVEYOR_URL``, else the embedded server)."""
    console = console or Console()
    url = url or await asyncio.to_thread(connection.resolve_url)
    name = f"demo-{uuid.uuid4().hex[:8]}"
    specs = workload(jobs)
    options = QueueOptions(completed_keep_count=max(1000, len(specs)))
    app = _App()
    # No grace for unknown job names: the demo's job that nobody handles dies at once.
    worker_options = WorkerOptions(concurrency=3, idle_block=0.5, shutdown_grace=5.0,
                                   unknown_job_grace=0.0)  # fmt: skip
    pool = [Worker(name, handlers=app.handlers(), url=url, options=worker_options,
                   queue_options=options) for _ in range(workers)]  # fmt: skip
    started = time.monotonic()
    async with Queue(name, url=url, options=options) as queue:
        tasks = [asyncio.create_task(w.serve()) for w in pool]
        try:
            view = _View(name, workers, len(specs), app, started)
            finished = await _watch(queue, specs, tasks, view, console, started + deadline)
            await _stop(pool, tasks)
            summary = await _summarise(queue, len(specs), time.monotonic() - started, finished)
        finally:
            await _stop(pool, tasks)
            await queue.obliterate(force=True)
    return summary


async def _watch(
    queue: Queue,
    specs: list[JobSpec],
    tasks: list[asyncio.Task[None]],
    view: _View,
    console: Console,
    deadline: float,
) -> bool:
    counts = await queue.counts()  # connects first: concurrent first calls would race
    producer = asyncio.create_task(_produce(queue, specs))
    live = Live(view.render(counts), console=console, refresh_per_second=10)
    with _worker_log_in(view.app.log), live:
        while True:
            for task in [producer, *tasks]:
                error = task.exception() if task.done() else None
                if error is not None:  # a worker could not start, or an enqueue failed
                    raise error
            counts = await queue.counts()
            live.update(view.render(counts))
            if producer.done() and counts.completed + counts.dead >= len(specs):
                return True
            if time.monotonic() > deadline:
                producer.cancel()
                return False
            await asyncio.sleep(POLL)


async def _produce(queue: Queue, specs: list[JobSpec]) -> None:
    size = -(-len(specs) // WAVES)
    for start in range(0, len(specs), size):
        if start:
            await asyncio.sleep(WAVE_PAUSE)
        await queue.enqueue_many(specs[start : start + size])


async def _stop(pool: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    for w in pool:
        w.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _all(queue: Queue, state: JobState) -> list[Job]:
    found: list[Job] = []
    while page := await queue.list_jobs(state, offset=len(found), limit=500):
        found += page
    return found


async def _summarise(queue: Queue, total: int, seconds: float, finished: bool) -> DemoSummary:
    completed = await _all(queue, JobState.COMPLETED)
    dead = await _all(queue, JobState.DEAD)
    return DemoSummary(
        queue=queue.name,
        total=total,
        completed=len(completed),
        retried=sum(1 for job in completed + dead if job.attempt > 1),
        recovered=sum(1 for job in completed if job.attempt > 1),
        dead=[_dead(job) for job in dead],
        seconds=seconds,
        finished=finished,
    )


def _dead(job: Job) -> DeadJob:
    error = f"{job.error.type}: {job.error.message}" if job.error else ""
    return DeadJob(job.id, job.name, job.dead_reason.value if job.dead_reason else "?", error)


class _Feed(logging.Handler):
    """Shows the workers' log (retries, dead jobs) in the live view instead of on stderr."""

    _STYLES = {logging.ERROR: "red", logging.WARNING: "yellow", logging.INFO: "dim"}

    def __init__(self, recent: collections.deque[str]) -> None:
        super().__init__(logging.INFO)
        self.recent = recent

    def emit(self, record: logging.LogRecord) -> None:
        style = self._STYLES.get(record.levelno, "red")
        self.recent.append(f"[{style}]{escape(record.getMessage())}[/]")


@contextlib.contextmanager
def _worker_log_in(recent: collections.deque[str]) -> Iterator[None]:
    logger = logging.getLogger("conveyor")
    saved = logger.level, logger.propagate
    feed = _Feed(recent)
    logger.addHandler(feed)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the live view owns the terminal while it runs
    try:
        yield
    finally:
        logger.removeHandler(feed)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _View:
    """The live picture: counts per state, a progress bar and the latest handler notes."""

    def __init__(self, queue: str, workers: int, total: int, app: _App, started: float) -> None:
        self.queue = queue
        self.workers = workers
        self.total = total
        self.app = app
        self.started = started

    def render(self, counts: Counts) -> RenderableType:
        elapsed = time.monotonic() - self.started
        done = counts.completed + counts.dead
        table = Table(
            title=f"Conveyor demo: queue [bold]{self.queue}[/], {counts.workers} of "
            f"{self.workers} workers up, {elapsed:4.1f}s",
            title_justify="left",
        )
        shown = [info for info in STATES if info.state is not JobState.CANCELLED]  # none here
        for info in shown:
            table.add_column(info.name, justify="right", style=info.style, min_width=9)
        table.add_row(*(str(getattr(counts, info.name)) for info in shown))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=self.total, completed=done, width=44),
                    f"{done}/{self.total} finished")  # fmt: skip
        return Group(table, bar, _lines("handlers", self.app.recent),
                     _lines("worker log", self.app.log))  # fmt: skip


def _lines(title: str, lines: collections.deque[str]) -> Table:
    grid = Table.grid(padding=(0, 0, 0, 2), pad_edge=True)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    grid.title, grid.title_justify, grid.title_style = f"[bold]{title}[/]", "left", ""
    for line in list(lines) or ["(nothing yet)"]:
        grid.add_row(line)
    return grid
