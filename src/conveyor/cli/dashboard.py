"""The ``conveyor dashboard`` command: serve the web dashboard with uvicorn."""

from __future__ import annotations

import click

from conveyor import defaults
from conveyor.cli.common import url_option
from conveyor.serving import Server, is_loopback

__all__ = ["dashboard"]


def _basic_auth(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise click.BadParameter("expected USER:PASSWORD", ctx=ctx, param=param)
    return user, password


@click.command()
@url_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback needs --token or --basic-auth.",
)
@click.option(
    "--port",
    default=9809,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--token",
    envvar=defaults.DASHBOARD_TOKEN_ENV,
    default=None,
    help="Require this token (Bearer header, or the login form). "
    f"[env: {defaults.DASHBOARD_TOKEN_ENV}]",
)
@click.option(
    "--basic-auth",
    envvar=defaults.DASHBOARD_BASIC_AUTH_ENV,
    default=None,
    metavar="USER:PASSWORD",
    callback=_basic_auth,
    help=f"Require HTTP basic auth. [env: {defaults.DASHBOARD_BASIC_AUTH_ENV}]",
)
@click.option("--read-only", is_flag=True, help="Hide every action and refuse them.")
@click.option("--queue", "-q", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    help="The path prefix a reverse proxy serves the dashboard under.",
)
@click.option("--access-log", is_flag=True, help="Log every request (live views poll often).")
def dashboard(url: str | None, host: str, port: int, token: str | None,
              basic_auth: tuple[str, str] | None, read_only: bool, queues: tuple[str, ...],
              root_path: str, access_log: bool) -> None:  # fmt: skip
    """Serve the web dashboard: queues, jobs, workers, and the dead-letter queue to operate.

    It listens on loopback by default; on any other address it requires --token or
    --basic-auth.
    """
    if not token and basic_auth is None and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve the dashboard on {host} without authentication: "
            f"pass --token (or {defaults.DASHBOARD_TOKEN_ENV}) or --basic-auth"
        )
    try:
        from conveyor.dashboard import create_app  # jinja2 and the templates only when serving

        app = create_app(url, queues=queues or None, read_only=read_only, token=token,
                         basic_auth=basic_auth)  # fmt: skip
    except ValueError as exc:  # an invalid queue name
        raise click.UsageError(str(exc)) from None
    server = Server(app, host, port, root_path=root_path, access_log=access_log)
    bound = server.port
    shown = f"[{host}]" if ":" in host else host
    notes = [n for n, on in (("token or basic auth required", token or basic_auth),
                             ("read-only", read_only)) if on]  # fmt: skip
    click.echo(
        f"serving the Conveyor dashboard on http://{shown}:{bound}{root_path}/"
        + (f" ({', '.join(notes)})" if notes else ""),
        err=True,
    )
    server.run()
