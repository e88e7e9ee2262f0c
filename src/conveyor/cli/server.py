"""The ``conveyor server`` commands: start, stop and inspect the embedded Valkey server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.embedded import (
    ServerInfo,
    default_data_dir,
    ensure_server,
    server_status,
    stop_server,
)
from conveyor.errors import EmbeddedServerError

__all__ = ["server"]

_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder of the server. [default: $CONVEYOR_DATA_DIR, else ~/.local/share/conveyor]",
)


@click.group()
def server() -> None:
    """Manage the embedded Valkey server used when no CONVEYOR_URL is set."""


@server.command()
@_data_dir_option
def start(data_dir: Path | None) -> None:
    """Start the server of the data folder, or report the one already running."""
    try:
        info = ensure_server(data_dir or default_data_dir())
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from exc
    Console().print(
        f"[green]Valkey {escape(info.version or '?')} is running[/] (pid {info.pid}) "
        f"at {escape(info.url)}",
        soft_wrap=True,
    )


@server.command()
@_data_dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the server of the data folder; its data stays on disk."""
    folder = data_dir or default_data_dir()
    try:
        stopped = stop_server(folder)
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from exc
    message = "Stopped the Valkey server" if stopped else "No Valkey server was running"
    Console().print(f"{message} of {escape(str(folder))}", soft_wrap=True)


@server.command()
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Show whether the server runs, its pid, version, persistence and memory.

    Exits with status 1 when the server is not running.
    """
    try:
        info = server_status(data_dir or default_data_dir())
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        fields = dataclasses.asdict(info)
        fields.update(data_dir=str(info.data_dir), socket_path=str(info.socket_path))
        click.echo(json.dumps(fields, indent=2))
    else:
        Console().print(_status_table(info))
    if not info.running:
        raise SystemExit(1)


def _status_table(info: ServerInfo) -> Table:
    if info.running:
        state = "[green]running[/]"
    elif info.pid is not None:
        state = f"[yellow]not answering[/] (pid {info.pid} is alive)"
    else:
        state = "[red]not running[/]"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("state", state)
    table.add_row("url", escape(info.url))
    table.add_row("data dir", escape(str(info.data_dir)))
    if info.running:
        aof = "on" if info.aof_enabled else "[red]off[/]"
        table.add_row("pid", str(info.pid))
        table.add_row("version", escape(info.version or "?"))
        table.add_row("append-only file", aof)
        table.add_row("memory used", escape(info.used_memory_human or "?"))
    return table
