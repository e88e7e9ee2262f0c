"""What one dashboard app holds: settings, connection, templates, and how it links and renders.

Nothing here is module-level: each :func:`~conveyor.dashboard.create_app` makes its own
:class:`Dashboard`, so two apps in one process never share a connection, a cookie or a
setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Router

from conveyor.dashboard import present
from conveyor.dashboard.auth import AuthSettings, csrf_token, set_csrf
from conveyor.dashboard.backend import Backend
from conveyor.job import DeadReason
from conveyor.states import STATES


@dataclass(frozen=True)
class Settings:
    """How a dashboard was configured."""

    url: str | None
    queues: tuple[str, ...] | None
    read_only: bool
    auth: AuthSettings
    refresh: float = 5.0  # seconds between live refreshes in the browser


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=present.age, ago=present.ago, when=present.when,
                       pretty=present.pretty, partition=present.partition)  # fmt: skip
    env.globals.update(states=[info.name for info in STATES],
                       state_info={info.name: info for info in STATES},
                       reasons=[r.value for r in DeadReason])  # fmt: skip
    return env


class Dashboard:
    """One app's state, shared by its pages, actions and API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backend = Backend(settings.url, settings.queues)
        self.env = _environment()
        self.router: Router | None = None  # set once the app's routes exist

    def path(self, request: Request, name: str, query: dict[str, Any] | None = None,
             **params: str) -> str:  # fmt: skip
        """A link to the route ``name``, under whatever prefix the app is mounted at."""
        assert self.router is not None
        quoted = {key: quote(value, safe="") for key, value in params.items()}
        root: str = request.scope.get("root_path", "")
        link = root + str(self.router.url_path_for(name, **quoted))
        pairs = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return link + ("?" + urlencode(pairs) if pairs else "")

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:  # fmt: skip
        """A page, with the helpers every template uses and the CSRF cookie set."""
        token, new = csrf_token(self.settings.auth, request)

        def url(name: str, query: dict[str, Any] | None = None, **params: str) -> str:
            return self.path(request, name, query, **params)

        def static(file: str) -> str:
            return self.path(request, "static", path=file)

        html = self.env.get_template(template).render(
            url=url, static=static, csrf_token=token, read_only=self.settings.read_only,
            refresh_ms=round(self.settings.refresh * 1000), request=request,
            auth_required=self.settings.auth.required, **context,
        )  # fmt: skip
        response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
        if new:
            set_csrf(response, token, request)
        return response
