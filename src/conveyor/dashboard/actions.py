"""The state-changing form posts: pause and resume a queue, replay and drop dead jobs.

Every one is a POST checked by :func:`~conveyor.dashboard.auth.check_post` (read-only mode,
CSRF) and answers with a redirect to the page it came from. A bulk action on everything
matching a filter first shows a confirmation stating how many jobs it would touch.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.dashboard import present
from conveyor.dashboard.auth import check_post
from conveyor.dashboard.context import Dashboard
from conveyor.dashboard.params import dead_filter, edited_payload, form_ids
from conveyor.dlq_ops import BulkResult, DeadFilter
from conveyor.queue import Queue

VERBS = {"replay": "replayed", "drop": "dropped"}


async def bulk(
    queue: Queue,
    verb: str,
    *,
    ids: list[str] | None = None,
    where: DeadFilter | None = None,
    dry_run: bool = False,
) -> BulkResult:
    """Replay or drop dead jobs: the given ids, or all matching ``where``."""
    if verb == "replay":
        return await queue.dead_letters.replay(ids, where=where, dry_run=dry_run)
    return await queue.dead_letters.drop(ids, where=where, dry_run=dry_run)


class Actions:
    """The form posts of one dashboard."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def routes(self) -> list[Route]:
        return [
            Route("/queues/{queue}/pause", self.pause, methods=["POST"], name="pause"),
            Route("/queues/{queue}/resume", self.resume, methods=["POST"], name="resume"),
            Route("/queues/{queue}/dlq/replay", self.replay, methods=["POST"], name="dlq_replay"),
            Route("/queues/{queue}/dlq/drop", self.drop, methods=["POST"], name="dlq_drop"),
        ]

    async def _form(self, request: Request) -> tuple[Queue, FormData]:
        settings = self.dash.settings
        await check_post(request, settings.auth, read_only=settings.read_only)
        queue = await self.dash.backend.queue(request.path_params["queue"])
        return queue, await request.form()

    def _back(self, request: Request, form: FormData, name: str) -> Response:
        if form.get("back") == "overview":
            target = self.dash.path(request, "overview")
        else:
            target = self.dash.path(request, "queue", queue=name)
        return RedirectResponse(target, status_code=303)

    async def pause(self, request: Request) -> Response:
        queue, form = await self._form(request)
        await queue.pause()
        return self._back(request, form, queue.name)

    async def resume(self, request: Request) -> Response:
        queue, form = await self._form(request)
        await queue.resume()
        return self._back(request, form, queue.name)

    async def replay(self, request: Request) -> Response:
        return await self._dead(request, "replay")

    async def drop(self, request: Request) -> Response:
        return await self._dead(request, "drop")

    async def _dead(self, request: Request, verb: str) -> Response:
        queue, form = await self._form(request)
        filters = present.filter_params(form)
        if form.get("scope") == "matching":
            where = dead_filter(filters)
            if form.get("confirm") != "yes":
                preview = await bulk(queue, verb, where=where, dry_run=True)
                return self.dash.render(request, "confirm.html", queue=queue.name, verb=verb,
                                        matched=preview.matched, filters=filters)  # fmt: skip
            result = await bulk(queue, verb, where=where)
        else:
            ids = form_ids(form)
            if not ids:
                return self._to_dlq(request, queue.name, filters, "none", 0)
            edited = form.get("payload")
            if verb == "replay" and isinstance(edited, str):
                result = await queue.dead_letters.replay(ids[:1], payload=edited_payload(edited))
            else:
                result = await bulk(queue, verb, ids=ids)
            if form.get("back") == "job" and verb == "replay":
                target = self.dash.path(request, "job", queue=queue.name, job_id=ids[0])
                return RedirectResponse(target, status_code=303)
        return self._to_dlq(request, queue.name, filters, VERBS[verb], result.moved)

    def _to_dlq(
        self, request: Request, name: str, filters: dict[str, str], done: str, count: int
    ) -> Response:
        query = {**filters, "done": done, "count": count}
        return RedirectResponse(self.dash.path(request, "dlq", query, queue=name), status_code=303)
