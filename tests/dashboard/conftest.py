"""Dashboard test fixtures: test clients of fresh apps, and queues holding a known workload."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor import JobContext
from conveyor.dashboard import create_app
from conveyor.retry import Immediate
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, wait_for

#: A test client that looks like a browser on the same machine.
LOCAL: dict[str, Any] = {"base_url": "http://127.0.0.1", "client": ("127.0.0.1", 50000)}

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(server_url: str, queue_name: str) -> Iterator[MakeClient]:
    """Make a test client of a new app (by default showing only this test's queue)."""
    with ExitStack() as stack:

        def make(**options: Any) -> TestClient:
            options.setdefault("queues", [queue_name])
            client_options = {**LOCAL, **options.pop("client_options", {})}
            app = create_app(server_url, **options)
            return stack.enter_context(TestClient(app, **client_options))

        yield make


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def csrf(client: TestClient, page: str = "/") -> str:
    """The CSRF token of the client's session (a page visit sets it)."""
    if client.cookies.get("conveyor_csrf") is None:
        client.get(page)
    token = client.cookies.get("conveyor_csrf")
    assert token
    return token


def failing_worker(queue_name: str, url: str) -> conveyor.Worker:
    """A worker whose ``boom`` handler always fails and ``ok`` handler echoes its payload."""
    worker = conveyor.Worker(queue_name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def boom(ctx: JobContext, payload: Any) -> None:
        ctx.log("about to fail")
        raise ValueError(f"cannot handle {payload!r}")

    @worker.handler
    async def ok(ctx: JobContext, payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("fail"):
            raise KeyError("fail")
        ctx.progress({"done": 1})
        return payload

    return worker


def run_worker_until(queue_name: str, url: str, condition: Callable[[], bool]) -> None:
    """Run :func:`failing_worker` until ``condition()`` holds.

    It runs in a thread of its own, with its own event loop: the caller's thread may have
    one running already (Playwright's sync API does).
    """
    errors: list[BaseException] = []

    async def main() -> None:
        async with RunningWorker(failing_worker(queue_name, url)):
            await wait_for(condition, timeout=30)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"worker-{queue_name}")
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]
    assert not thread.is_alive(), "the worker did not stop within 60 s"


def make_dead(
    queue: conveyor.SyncQueue, url: str, payloads: list[Any], attempts: int = 2
) -> list[str]:
    """Jobs that failed ``attempts`` times and died, with their history; returns their ids."""
    before = queue.counts().dead
    jobs = queue.enqueue_many(
        [conveyor.JobSpec("boom", p, attempts=attempts, backoff=Immediate()) for p in payloads]
    )
    run_worker_until(queue.name, url, lambda: queue.counts().dead == before + len(payloads))
    return [job.id for job in jobs]
