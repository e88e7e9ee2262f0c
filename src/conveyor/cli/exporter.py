"""The ``conveyor metrics`` command: serve Prometheus metrics for every queue."""

from __future__ import annotations

import os

import click

from conveyor import defaults
from conveyor.prometheus import make_exporter

__all__ = ["metrics"]


def _old_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The token, else the one under the variable's old name (with a deprecation notice)."""
    old = os.environ.get(defaults.METRICS_TOKEN_ENV_OLD)
    if value is None and old:
        click.echo(f"warning: {defaults.METRICS_TOKEN_ENV_OLD} is deprecated; "
                   f"set {defaults.METRICS_TOKEN_ENV} instead", err=True)  # fmt: skip
        return old
    return value


@click.command()
@click.option("--url", default=None, metavar="URL",
              help="Server URL. [default: $CONVEYOR_URL, else the embedded server]")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token.")  # fmt: skip
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar=defaults.METRICS_TOKEN_ENV, default=None, callback=_old_token,
              help="Require 'Authorization: Bearer TOKEN'. "
                   f"[env: {defaults.METRICS_TOKEN_ENV}]")  # fmt: skip
@click.option("--queue", "-q", "queues", multiple=True, help="Only these queues (repeatable).")
def metrics(url: str | None, host: str, port: int, token: str | None,
            queues: tuple[str, ...]) -> None:  # fmt: skip
    """Serve /metrics for Prometheus: jobs per state, totals, ages, processing times."""
    server = make_exporter(url, host=host, port=port, token=token, queues=queues)
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"serving Prometheus metrics on http://{shown}:{server.port}/metrics"
        + (" (token required)" if token else ""),
        err=True,
    )
    server.run()
