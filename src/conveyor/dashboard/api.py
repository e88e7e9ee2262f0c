"""The JSON API under ``/api``: what the pages show, for scripts and the live refresh.

Documented in docs/dashboard.md. Reads are GETs; actions are POSTs with a JSON body, which
need ``Authorization: Bearer`` or the CSRF header of a page's session.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.dashboard import present
from conveyor.dashboard.actions import bulk
from conveyor.dashboard.auth import check_post
from conveyor.dashboard.context import Dashboard
from conveyor.dashboard.pages import read_jobs
from conveyor.dashboard.params import (
    body_ids,
    dead_filter,
    flag,
    int_param,
    job_name_param,
    limit_param,
    state_param,
)
from conveyor.dlq_ops import BulkResult
from conveyor.queue import Queue

#: Seconds of per-minute throughput ``/api/queues/{queue}`` returns by default, and at most.
SERIES_WINDOW = 3 * 3600
MAX_SERIES_WINDOW = 6 * 3600


class JSON(Response):
    """A JSON response encoded by msgspec, never cached."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200) -> None:
        super().__init__(content, status_code, headers={"cache-control": "no-store"})

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def bulk_builtins(result: BulkResult) -> dict[str, Any]:
    return {"matched": result.matched, "moved": result.moved, "ids": result.ids,
            "dry_run": result.dry_run}  # fmt: skip


class Api:
    """The JSON endpoints of one dashboard."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            Route("/api/queues", self.queues, name="api_queues"),
            Route("/api/workers", self.workers, name="api_workers"),
            Route("/api/queues/{queue}", self.queue, name="api_queue"),
            Route("/api/queues/{queue}/jobs", self.jobs, name="api_jobs"),
            Route("/api/queues/{queue}/jobs/{job_id:path}", self.job, name="api_job"),
            Route("/api/queues/{queue}/dlq", self.dlq, name="api_dlq"),
            Route("/api/queues/{queue}/dlq/replay", self.replay, methods=post, name="api_replay"),
            Route("/api/queues/{queue}/dlq/drop", self.drop, methods=post, name="api_drop"),
            Route("/api/queues/{queue}/pause", self.pause, methods=post, name="api_pause"),
            Route("/api/queues/{queue}/resume", self.resume, methods=post, name="api_resume"),
        ]

    async def _queue(self, request: Request) -> Queue:
        return await self.dash.backend.queue(request.path_params["queue"])

    async def queues(self, request: Request) -> Response:
        snapshots = await self.dash.backend.all_metrics(60.0)
        return JSON({"queues": [present.queue_summary(m) for m in snapshots]})

    async def workers(self, request: Request) -> Response:
        workers = await self.dash.backend.workers()
        return JSON({"workers": [present.worker_builtins(w) for w in workers]})

    async def queue(self, request: Request) -> Response:
        queue = await self._queue(request)
        window = int_param(request, "window", SERIES_WINDOW, MAX_SERIES_WINDOW) or 60
        snapshot = await self.dash.backend.metrics(queue.name, float(window))
        return JSON(present.queue_summary(snapshot, series=True))

    async def jobs(self, request: Request) -> Response:
        queue = await self._queue(request)
        limit = limit_param(request)
        job_name = job_name_param(request)
        page = await read_jobs(self.dash, request, queue.name, state_param(request), limit,
                               job_name)  # fmt: skip
        return JSON({"jobs": [present.job_summary(j) for j in page.jobs],
                     "next_cursor": page.cursor})  # fmt: skip

    async def job(self, request: Request) -> Response:
        queue = await self._queue(request)
        job, events = await self.dash.backend.job(queue.name, request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such job")
        return JSON({**present.job_builtins(job),
                     "events": [present.event_builtins(e) for e in events]})  # fmt: skip

    async def dlq(self, request: Request) -> Response:
        queue = await self._queue(request)
        where = dead_filter(request.query_params)
        limit = limit_param(request)
        page = await queue.dead_letters.list(where, cursor=int_param(request, "cursor", 0),
                                             limit=limit)  # fmt: skip
        return JSON({"jobs": [present.job_summary(j) for j in page.jobs],
                     "next_cursor": page.cursor})  # fmt: skip

    async def _body(self, request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind.lower() != "application/json":
            raise HTTPException(400, "the body must be a JSON object "
                                     f"(Content-Type: application/json, not {kind})")  # fmt: skip
        settings = self.dash.settings
        await check_post(request, settings.auth, read_only=settings.read_only)
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise HTTPException(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    async def replay(self, request: Request) -> Response:
        return await self._dead(request, "replay")

    async def drop(self, request: Request) -> Response:
        return await self._dead(request, "drop")

    async def _dead(self, request: Request, verb: str) -> Response:
        body = await self._body(request)
        queue = await self._queue(request)
        ids, raw_filter = body.get("ids"), body.get("filter")
        everything, dry_run = flag(body, "all"), flag(body, "dry_run")
        if sum([ids is not None, raw_filter is not None, everything]) != 1:
            raise HTTPException(400, 'give exactly one of "ids", "filter" or "all": true')
        ids = body_ids(body)
        if raw_filter is not None and not isinstance(raw_filter, dict):
            raise HTTPException(400, '"filter" must be an object')
        if "payload" in body:
            if verb != "replay" or ids is None or len(ids) != 1 or dry_run:
                raise HTTPException(400, '"payload" replays exactly one job: "ids": [id]')
            result = await queue.dead_letters.replay(ids, payload=body["payload"])
            return JSON(bulk_builtins(result))
        where = dead_filter(raw_filter or {})
        chosen = where if ids is None else None
        result = await bulk(queue, verb, ids=ids, where=chosen, dry_run=dry_run)
        return JSON(bulk_builtins(result))

    async def pause(self, request: Request) -> Response:
        await self._body(request)
        queue = await self._queue(request)
        await queue.pause()
        return JSON({"queue": queue.name, "paused": True})

    async def resume(self, request: Request) -> Response:
        await self._body(request)
        queue = await self._queue(request)
        await queue.resume()
        return JSON({"queue": queue.name, "paused": False})
