"""The HTML pages: overview, a queue's jobs, one job, a dead-letter set, workers, login."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.dashboard import present
from conveyor.dashboard.auth import authenticate, route_path, same_secret, set_session
from conveyor.dashboard.backend import CHART_WINDOW
from conveyor.dashboard.chart import throughput_svg
from conveyor.dashboard.context import Dashboard
from conveyor.dashboard.params import (
    dead_filter,
    int_param,
    job_name_param,
    limit_param,
    state_param,
)
from conveyor.dashboard.reads import JobsPage
from conveyor.job import Job, JobState
from conveyor.metrics import QueueMetrics


async def read_jobs(
    dash: Dashboard, request: Request, name: str, state: JobState, limit: int, job_name: str
) -> JobsPage:
    """The page of jobs a request's ``cursor`` asks for (400 if it is not a cursor)."""
    cursor = request.query_params.get("cursor", "")
    try:
        return await dash.backend.jobs_page(name, state, cursor, limit, job_name)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


class Pages:
    """The GET pages of one dashboard."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def routes(self) -> list[Route]:
        return [
            Route("/", self.overview, name="overview"),
            Route("/charts", self.charts, name="charts"),
            Route("/workers", self.workers, name="workers"),
            Route("/login", self.login, methods=["GET", "POST"], name="login"),
            Route("/queues/{queue}", self.queue, name="queue"),
            Route("/queues/{queue}/rows", self.queue_rows, name="queue_rows"),
            Route("/queues/{queue}/dlq", self.dlq, name="dlq"),
            Route("/queues/{queue}/dlq/rows", self.dlq_rows, name="dlq_rows"),
            Route("/queues/{queue}/jobs/{job_id:path}", self.job, name="job"),
        ]

    async def overview(self, request: Request) -> Response:
        snapshots = await self.dash.backend.all_metrics(CHART_WINDOW)
        return self.dash.render(request, "overview.html", snapshots=snapshots,
                                charts=self._charts(snapshots))  # fmt: skip

    async def charts(self, request: Request) -> Response:
        snapshots = await self.dash.backend.all_metrics(CHART_WINDOW)
        return self.dash.render(request, "_charts.html", charts=self._charts(snapshots))

    @staticmethod
    def _charts(snapshots: list[QueueMetrics]) -> list[dict[str, object]]:
        return [
            {"queue": m.queue, "svg": throughput_svg(m.minutes, f"{m.queue} throughput"),
             "completed": sum(m.per_minute("completed")), "failed": sum(m.per_minute("failed"))}
            for m in snapshots
        ]  # fmt: skip

    async def workers(self, request: Request) -> Response:
        workers = await self.dash.backend.workers()
        return self.dash.render(request, "workers.html", workers=workers)

    async def queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        queue = await self.dash.backend.queue(name)
        wanted = request.query_params.get("id", "").strip()
        missing = ""
        if wanted:
            if await queue.get_job(wanted) is not None:
                return RedirectResponse(self.dash.path(request, "job", queue=name, job_id=wanted),
                                        status_code=303)  # fmt: skip
            missing = wanted
        context = await self._rows_context(request, name)
        counts = await queue.counts()
        schedules = await queue.schedules()
        return self.dash.render(request, "queue.html", counts=counts, missing=missing,
                                schedules=schedules, **context)  # fmt: skip

    async def queue_rows(self, request: Request) -> Response:
        context = await self._rows_context(request, request.path_params["queue"])
        return self.dash.render(request, "_job_rows.html", **context)

    async def _rows_context(self, request: Request, name: str) -> dict[str, Any]:
        state = state_param(request)
        limit = limit_param(request)
        job_name = job_name_param(request)
        page = await read_jobs(self.dash, request, name, state, limit, job_name)
        partitions = len(await self.dash.backend.parts(name))
        return {"queue": name, "state": state.value, "page": page, "cursor": page.start,
                "limit": limit, "job_name": job_name, "partitions": partitions}  # fmt: skip

    async def job(self, request: Request) -> Response:
        name, job_id = request.path_params["queue"], request.path_params["job_id"]
        job, events = await self.dash.backend.job(name, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} in queue {name!r}")
        return self.dash.render(request, "job.html", queue=name, job=job, events=events)

    async def dlq(self, request: Request) -> Response:
        context = await self._dead_context(request)
        counts = await (await self.dash.backend.queue(context["queue"])).counts()
        done = request.query_params.get("done", "")
        count = int_param(request, "count", 0)
        return self.dash.render(request, "dlq.html", counts=counts, done=done, count=count,
                                **context)  # fmt: skip

    async def dlq_rows(self, request: Request) -> Response:
        return self.dash.render(request, "_dead_rows.html", **await self._dead_context(request))

    async def _dead_context(self, request: Request) -> dict[str, Any]:
        name = request.path_params["queue"]
        queue = await self.dash.backend.queue(name)
        params = present.filter_params(request.query_params)
        cursor = int_param(request, "cursor", 0)
        limit = limit_param(request)
        error = ""
        jobs: list[Job] = []
        next_cursor: int | None = None
        try:
            where = dead_filter(params)
        except HTTPException as exc:  # shown above the table, not as an error page
            error = exc.detail
        else:
            page = await queue.dead_letters.list(where, cursor=cursor, limit=limit)
            jobs, next_cursor = page.jobs, page.cursor
        partitions = len(await self.dash.backend.parts(name))
        return {"queue": name, "filters": params, "jobs": jobs, "cursor": cursor,
                "next_cursor": next_cursor, "limit": limit, "filter_error": error,
                "partitions": partitions}  # fmt: skip

    async def login(self, request: Request) -> Response:
        auth = self.dash.settings.auth
        given, next_path = "", "/"
        if request.method == "POST":
            form = await request.form()
            token, wanted = form.get("token"), form.get("next")
            given = token if isinstance(token, str) else ""
            if isinstance(wanted, str) and wanted.startswith("/") and "//" not in wanted \
                    and "\\" not in wanted:  # fmt: skip
                next_path = wanted
        home = request.scope.get("root_path", "") + next_path
        if not auth.required or authenticate(auth, request) is not None:
            return RedirectResponse(home, status_code=303)
        if given and auth.token and same_secret(given, auth.token):
            response = RedirectResponse(home, status_code=303)
            set_session(response, auth, request)
            return response
        return self.login_page(request, failed=bool(given), status=401 if given else 200)

    def login_page(self, request: Request, failed: bool = False, status: int = 401) -> Response:
        """The login form (also the answer to any page request without credentials)."""
        next_path = route_path(request.scope)
        if next_path == "/login":
            next_path = "/"
        elif request.url.query:
            next_path += "?" + request.url.query
        return self.dash.render(request, "login.html", status=status, failed=failed,
                                token_login=bool(self.dash.settings.auth.token),
                                next_path=next_path)  # fmt: skip
