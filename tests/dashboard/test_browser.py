"""End to end in a real headless browser: Playwright drives Debian's Chromium against
dashboards served by uvicorn on loopback, over the real test server with a known workload.

Three dashboards are mounted in one host app, as a user would: ``/open`` (no auth, on
loopback), ``/secure`` (token) and ``/ro`` (read-only). Screenshots of the main pages go to
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

import conveyor
from conveyor import JobState
from conveyor.dashboard import create_app
from tests.conftest import missing
from tests.dashboard.conftest import run_worker_until

#: Debian's Chromium (``$CONVEYOR_TEST_CHROMIUM`` names another).
CHROMIUM = Path(os.environ.get("CONVEYOR_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
TOKEN = "e2e-token"

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect, sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Skipped without Chromium, except in CI: there it is a failure (like the TLS tests).
    if not CHROMIUM.exists():
        missing("the browser tests need Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


class Site:
    """The host app on a loopback port, in a background thread."""

    def __init__(self, app: Starlette) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Site:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            self.thread.join(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        assert not self.thread.is_alive(), "the dashboard server did not stop within 15 s"


@pytest.fixture
def site(server_url: str, sync_queue: conveyor.SyncQueue) -> Iterator[Site]:
    shown = [sync_queue.name]
    apps = {
        "/open": create_app(server_url, queues=shown, refresh=0.5),
        "/secure": create_app(server_url, queues=shown, token=TOKEN),
        "/ro": create_app(server_url, queues=shown, read_only=True),
    }

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:  # closes the dashboards' connections
            for dashboard in apps.values():
                await stack.enter_async_context(dashboard.router.lifespan_context(dashboard))
            yield

    host = Starlette(routes=[Mount(prefix, app=app) for prefix, app in apps.items()],
                     lifespan=lifespan)  # fmt: skip
    with Site(host) as running:
        yield running


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def cell(page: Page, queue: str, field: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] [data-field="{field}"]')


def test_overview_shows_the_counts_and_refreshes_live(
    page: Page, site: Site, sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    sync_queue.enqueue_many([("ok", {"n": i}) for i in range(2)])
    run_worker_until(sync_queue.name, server_url, lambda: sync_queue.counts().completed == 2)
    sync_queue.enqueue_many([("ok", {"n": i}) for i in range(3)])
    sync_queue.enqueue_many([conveyor.JobSpec("ok", i, delay=3600) for i in range(2)])
    sync_queue.dead_letters.kill(sync_queue.enqueue("ok", "never").id)

    page.goto(f"{site.base}/open/")
    name = sync_queue.name
    for field, value in [("counts.waiting", "3"), ("counts.delayed", "2"), ("counts.active", "0"),
                         ("counts.completed", "2"), ("counts.dead", "1")]:  # fmt: skip
        expect(cell(page, name, field)).to_have_text(value)
    expect(cell(page, name, "paused")).to_have_text("running")
    expect(page.locator("svg.chart")).to_have_count(1)
    expect(page.locator("figure.card")).to_contain_text("2 completed")
    shot(page, "overview")

    sync_queue.enqueue("ok", "late")  # the page refreshes its counts by itself
    expect(cell(page, name, "counts.waiting")).to_have_text("4")
    page.click(f'tr[data-queue="{name}"] a >> text="{name}"')
    expect(page.locator("#jobs tbody tr")).to_have_count(4)
    shot(page, "queue")


def test_a_dead_jobs_history_then_replay_until_it_completes(
    page: Page, site: Site, sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    spec = conveyor.JobSpec("ok", {"fail": True}, attempts=2, backoff=conveyor.Immediate())
    (failed,) = sync_queue.enqueue_many([spec])
    run_worker_until(sync_queue.name, server_url, lambda: sync_queue.counts().dead == 1)
    killed = sync_queue.enqueue("ok", {"n": 1})
    sync_queue.dead_letters.kill(killed.id)

    page.goto(f"{site.base}/open/queues/{sync_queue.name}/dlq")
    expect(page.locator("#dead-jobs tbody tr")).to_have_count(2)
    shot(page, "dlq")
    page.check(f'input[name="ids"][value="{killed.id}"]')
    page.click("#replay-selected")
    expect(page.locator("#notice")).to_have_text(re.compile("Replayed 1 job"))
    expect(page.locator("#dead-jobs tbody tr")).to_have_count(1)

    page.click(f"text={failed.id}")
    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    expect(page.locator("#history")).to_contain_text("KeyError")
    page.locator("#history summary").first.click()
    expect(page.locator("#history pre").first).to_contain_text("Traceback")
    expect(page.locator("#timeline")).to_contain_text("added")
    expect(page.locator("#timeline li").last).to_contain_text("dead")
    shot(page, "job-dead")

    page.fill("#edited-payload", '{"fail": false, "fixed": "by hand"}')
    page.click("#replay-edited")
    expect(page.locator("#job-state")).to_have_text("waiting")

    done = threading.Event()
    worker = threading.Thread(target=run_worker_until, args=(sync_queue.name, server_url,
                              done.is_set))  # fmt: skip
    worker.start()
    try:
        expect(page.locator("#job-state")).to_have_text("waiting")
        for _ in range(100):
            job = sync_queue.get_job(failed.id)
            if job is not None and job.state is JobState.COMPLETED:
                break
            page.wait_for_timeout(100)
        page.goto(f"{site.base}/open/workers")
        expect(page.locator("#workers tbody tr")).to_have_count(1)
        shot(page, "workers")
    finally:
        done.set()
        worker.join(30)
        assert not worker.is_alive(), "the worker did not stop within 30 s"
    page.goto(f"{site.base}/open/queues/{sync_queue.name}/jobs/{failed.id}")
    expect(page.locator("#job-state")).to_have_text("completed")
    expect(page.locator("#result")).to_contain_text("by hand")
    assert sync_queue.counts().completed == 2


def test_bulk_drop_asks_with_the_count_first(
    page: Page, site: Site, sync_queue: conveyor.SyncQueue
) -> None:
    for name in ["x"] * 5 + ["y"] * 2:
        sync_queue.dead_letters.kill(sync_queue.enqueue(name, None).id)
    page.goto(f"{site.base}/open/queues/{sync_queue.name}/dlq")
    page.fill('#filters input[name="name"]', "x")
    page.click('#filters button[type="submit"]')
    expect(page.locator("#dead-jobs tbody tr")).to_have_count(5)
    page.click("#drop-matching")
    expect(page.locator("#confirm-title")).to_have_text("Drop 5 dead jobs?")
    shot(page, "confirm-drop")
    assert sync_queue.counts().dead == 7
    page.click("#confirm")
    expect(page.locator("#notice")).to_have_text("Dropped 5 jobs.")
    assert sync_queue.counts().dead == 2

    page.goto(f"{site.base}/open/queues/{sync_queue.name}/dlq")
    page.check("[data-select-all]")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#drop-selected")
    expect(page.locator("#notice")).to_have_text("Dropped 2 jobs.")
    assert sync_queue.counts().dead == 0


def test_pause_and_resume(page: Page, site: Site, sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.enqueue("ok", None)
    page.goto(f"{site.base}/open/queues/{sync_queue.name}")
    page.click("#pause")
    expect(page.locator(".title-row [data-field=paused]")).to_have_text("paused")
    assert sync_queue.counts().paused
    page.click("#resume")
    expect(page.locator(".title-row [data-field=paused]")).to_have_text("running")
    assert not sync_queue.counts().paused


def test_auth_and_read_only(page: Page, site: Site, sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.dead_letters.kill(sync_queue.enqueue("ok", None).id)
    assert page.request.get(f"{site.base}/secure/api/queues").status == 401
    response = page.goto(f"{site.base}/secure/queues/{sync_queue.name}")
    assert response is not None and response.status == 401
    shot(page, "login")
    page.fill("#token", TOKEN)
    page.click('button[type="submit"]')
    expect(page.locator("h1")).to_have_text(sync_queue.name)
    assert page.request.get(f"{site.base}/secure/api/queues").status == 200  # the cookie

    for path in ("", "/dlq"):
        page.goto(f"{site.base}/ro/queues/{sync_queue.name}{path}")
        expect(page.locator("#read-only")).to_be_visible()
        expect(page.locator('form[method="post"], #pause, #replay-selected')).to_have_count(0)
    page.click("#dead-jobs a.mono")
    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.locator("#dead-actions, #replay, #drop")).to_have_count(0)


def test_a_script_payload_is_shown_as_text(
    page: Page, site: Site, sync_queue: conveyor.SyncQueue
) -> None:
    evil = "<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>"
    job = sync_queue.enqueue(evil, {"html": evil}, id="<b>bold</b>")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{site.base}/open/queues/{sync_queue.name}")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody")).to_contain_text("<script>window.pwned = 1</script>")
    page.click("#jobs a.mono")
    expect(page.locator("#job-id")).to_have_text(job.id)
    expect(page.locator("#payload")).to_contain_text(evil)
    assert page.evaluate("window.pwned") is None and not dialogs
    assert page.locator("#payload script, #payload img, b").count() == 0
    shot(page, "job-escaped")


@pytest.fixture
def partitioned(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    """The test's queue, declared with 4 partitions (before the site's face reads it)."""
    q = conveyor.SyncQueue(queue_name, url=server_url, partitions=4)
    q.counts()
    yield q
    q.obliterate(force=True)
    q.close()


def test_a_partitioned_queue_reads_as_one(
    page: Page, partitioned: conveyor.SyncQueue, site: Site
) -> None:
    jobs = [partitioned.enqueue("ok", {"n": n}) for n in range(12)]
    for job in jobs[:3]:
        partitioned.dead_letters.kill(job.id)
    name = partitioned.name

    page.goto(f"{site.base}/open/")
    expect(page.locator(f'tr[data-queue="{name}"]')).to_contain_text("4 partitions")
    expect(cell(page, name, "counts.waiting")).to_have_text("9")
    expect(cell(page, name, "counts.dead")).to_have_text("3")
    expect(page.locator(f'tr[data-queue^="{name}~"]')).to_have_count(0)

    page.goto(f"{site.base}/open/queues/{name}?limit=4")
    expect(page.locator("#partitions")).to_have_text("4 partitions")
    expect(page.locator("#jobs tbody tr")).to_have_count(4)
    first = page.locator("#jobs tbody tr").first.get_attribute("data-job")
    page.click("#next-page")
    expect(page.locator("#jobs tbody tr")).to_have_count(4)
    second = page.locator("#jobs tbody tr").first.get_attribute("data-job")
    assert second != first
    fragment = page.locator("#jobs tbody").get_attribute("data-fragment")
    assert fragment is not None and "." in fragment  # the live refresh keeps the cursor
    refreshed = page.request.get(site.base + fragment)
    assert refreshed.status == 200 and f'data-job="{second}"' in refreshed.text()
    shot(page, "queue-partitioned")

    page.click(f'#jobs a:text("{second}")')
    expect(page.locator("#partition")).to_have_text(re.compile(rf"^{re.escape(name)}~\d$"))
    expect(page.locator("#timeline")).to_contain_text("added")

    page.goto(f"{site.base}/open/queues/{name}/dlq")
    expect(page.locator("#dead-jobs tbody tr")).to_have_count(3)
    page.check("[data-select-all]")
    page.click("#replay-selected")
    expect(page.locator("#notice")).to_have_text(re.compile("Replayed 3 jobs"))
    assert partitioned.counts().dead == 0 and partitioned.counts().waiting == 12
