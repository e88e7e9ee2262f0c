"""The ``conveyor status`` command: job counts per queue, and whether the server is safe."""

from __future__ import annotations

from typing import Any

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor import connection, ops
from conveyor.cli.common import connect, json_option, queue_argument, url_option
from conveyor.cli.render import echo_json
from conveyor.health import ServerSafety, server_safety
from conveyor.keys import QueueKeys
from conveyor.ops import Counts

__all__ = ["status"]

_STATES = ("waiting", "delayed", "active", "completed", "dead")


@click.command()
@queue_argument(many=True)
@url_option
@json_option
def status(queues: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Show jobs per state, pause flag and live workers of each QUEUE (default: all).

    Also checks that the server will not lose jobs: its eviction policy and persistence.
    """
    with connect(url) as transport:
        names = list(queues) or transport.run(ops.known_queues())
        counts = {name: transport.run(ops.counts(QueueKeys(name))) for name in names}
        safety = transport.run(server_safety())
        server_url = connection.redact(transport.url)
    if as_json:
        echo_json({"server": _server_builtins(server_url, safety), "queues": [
            {"queue": name, **msgspec.to_builtins(c)} for name, c in counts.items()
        ]})  # fmt: skip
        return
    console = Console()
    if counts:
        console.print(_counts_table(counts))
    else:
        console.print("No queues yet: enqueue a job or start a worker to create one.")
    console.print(_safety_table(server_url, safety))
    for problem in safety.problems():
        console.print(f"[bold red]warning:[/] {escape(problem)}", soft_wrap=True)


def _server_builtins(url: str, safety: ServerSafety) -> dict[str, Any]:
    return {
        "url": url,
        "version": safety.version,
        "maxmemory_policy": safety.maxmemory_policy,
        "aof_enabled": safety.aof_enabled,
        "problems": safety.problems(),
    }


def _counts_table(counts: dict[str, Counts]) -> Table:
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue", style="bold")
    for state in _STATES:
        table.add_column(state, justify="right", style="red" if state == "dead" else None)
    table.add_column("paused")
    table.add_column("workers", justify="right")
    for name, c in counts.items():
        numbers = [str(getattr(c, state)) for state in _STATES]
        paused = "[yellow]paused[/]" if c.paused else "no"
        table.add_row(escape(name), *numbers, paused, str(c.workers))
    return table


def _safety_table(url: str, safety: ServerSafety) -> Table:
    table = Table(title="Server", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("url", escape(url))
    table.add_row("version", escape(safety.version or "unknown"))
    if safety.maxmemory_policy is None:
        policy = "[yellow]unknown[/] (CONFIG GET is not allowed)"
    elif safety.may_evict:
        policy = f"[red]{escape(safety.maxmemory_policy)}[/]"
    else:
        policy = f"[green]{escape(safety.maxmemory_policy)}[/]"
    table.add_row("maxmemory-policy", policy)
    aof = {True: "[green]on[/]", False: "[red]off[/]", None: "[yellow]unknown[/]"}
    table.add_row("append-only file", aof[safety.aof_enabled])
    return table
