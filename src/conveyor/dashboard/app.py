"""Builds a dashboard app: its routes, access rules, error pages and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from conveyor.dashboard.actions import Actions
from conveyor.dashboard.api import JSON, Api
from conveyor.dashboard.auth import AuthSettings, Guard, route_path
from conveyor.dashboard.backend import UnknownQueue
from conveyor.dashboard.context import Dashboard, Settings
from conveyor.dashboard.pages import Pages
from conveyor.errors import ConveyorError, JobStateError, PayloadError, ServerUnavailable


def create_app(
    url: str | None = None,
    *,
    queues: Sequence[str] | None = None,
    read_only: bool = False,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    allow_remote: bool = False,
    refresh: float = 5.0,
    csrf_secret: str | None = None,
) -> Starlette:
    """A Starlette app serving the dashboard; mount it under any path of your own app.

    ``url`` is the server (else ``CONVEYOR_URL``, else the embedded server); ``queues``
    limits it to those queues (default: every known queue). ``token`` and/or
    ``basic_auth=(user, password)`` require credentials on every request. Without either,
    it answers only loopback clients, unless ``allow_remote`` (your app authenticates).
    ``read_only`` hides every action and refuses them. The browser refreshes live views
    every ``refresh`` seconds while the tab is visible. CSRF tokens are signed with a key
    derived from ``csrf_secret``, else from the credentials, else made per process: give
    the same ``csrf_secret`` to every process serving one dashboard without credentials.
    """
    if basic_auth is not None and not all(basic_auth):
        raise ValueError("basic_auth needs a non-empty user and password")
    settings = Settings(
        url=url, queues=tuple(queues) if queues else None, read_only=read_only,
        auth=AuthSettings(token=token or None, basic_auth=basic_auth, allow_remote=allow_remote,
                          csrf_secret=csrf_secret),
        refresh=refresh,
    )  # fmt: skip
    dash = Dashboard(settings)
    pages = Pages(dash)
    static = StaticFiles(packages=[("conveyor.dashboard", "static")])
    routes = [*pages.routes(), *Actions(dash).routes(), *Api(dash).routes(),
              Mount("/static", app=static, name="static")]  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dash.backend.close()

    def error(request: Request, status: int, message: str) -> Response:
        path = route_path(request.scope)
        if path == "/api" or path.startswith("/api/"):
            return JSON({"error": message}, status_code=status)
        return dash.render(request, "error.html", status=status, message=message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = error(request, exc.status_code, exc.detail)
        response.headers.update(exc.headers or {})
        return response

    async def unknown_queue(request: Request, exc: Exception) -> Response:
        return error(request, 404, f"no queue named {exc}")

    async def conveyor_error(request: Request, exc: Exception) -> Response:
        status = 500
        if isinstance(exc, ServerUnavailable):
            status = 503
        elif isinstance(exc, JobStateError):
            status = 409
        elif isinstance(exc, PayloadError):
            status = 400
        return error(request, status, " ".join(str(exc).split()))

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, settings=settings.auth, login_page=pages.login_page)],
        exception_handlers={HTTPException: http_error, UnknownQueue: unknown_queue,
                            ConveyorError: conveyor_error},
        lifespan=lifespan,
    )  # fmt: skip
    dash.router = app.router
    app.state.dashboard = dash
    return app
