"""The ``conveyor status`` command: job counts per queue, and whether the server is safe."""

from __future__ import annotations

import time
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from conveyor import connection, ops, partitions
from conveyor.cli.common import connect, json_option, queue_argument, url_option
from conveyor.cli.render import echo_json
from conveyor.display import duration
from conveyor.health import ServerSafety, server_safety
from conveyor.metrics import QueueMetrics
from conveyor.states import STATES
from conveyor.transport import SyncTransport

__all__ = ["status"]

#: The states counted per queue, in lifecycle order.
_STATES = [info.name for info in STATES]
#: The states the compact table (for narrow terminals) shows: what is still to be done.
_COMPACT_STATES = [info.name for info in STATES if info.outstanding]


@click.command()
@queue_argument(many=True)
@url_option
@json_option
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
def status(
    queues: tuple[str, ...], url: str | None, as_json: bool, watch: bool, interval: float
) -> None:
    """Show jobs per state, throughput, oldest waiting age, DLQ depth and workers of each QUEUE.

    Also checks that the server will not lose jobs: its eviction policy and persistence.
    With --watch the view refreshes in place (Ctrl-C to leave).
    """
    with connect(url) as transport:
        server_url = connection.redact(transport.url)
        if watch:
            _watch(transport, queues, server_url, interval)
            return
        snapshots = _snapshots(transport, queues)
        safety = transport.run(server_safety())
    if as_json:
        echo_json({"server": _server_builtins(server_url, safety), "queues": [
            {"queue": m.queue, **msgspec.to_builtins(m.counts),
             "completed_last_minute": m.completed_last_minute(),
             "completed_total": m.completed_total,
             "failed_total": m.failed_total, "dead_total": m.dead_total,
             "oldest_waiting_age": m.oldest_waiting_age, "oldest_dead_age": m.oldest_dead_age,
             "workers_alive": [w.id for w in m.workers], "partitions": m.partitions,
             "abandoned_threads": sum(w.abandoned_threads for w in m.workers)}
            for m in snapshots
        ]})  # fmt: skip
        return
    console = Console()
    console.print(_view(snapshots, server_url, safety))


def _snapshots(transport: SyncTransport, queues: tuple[str, ...]) -> list[QueueMetrics]:
    names = list(queues) or transport.run(ops.known_queues())
    return transport.run(partitions.metrics_of(names, window=15 * 60))


def _watch(
    transport: SyncTransport, queues: tuple[str, ...], server_url: str, interval: float
) -> None:
    safety = transport.run(server_safety())
    with Live(_view(_snapshots(transport, queues), server_url, safety), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_view(_snapshots(transport, queues), server_url, safety), refresh=True)
        except KeyboardInterrupt:
            pass


def _view(snapshots: list[QueueMetrics], server_url: str, safety: ServerSafety) -> Group:
    parts: list[Any] = []
    if snapshots:
        parts.append(_Fitting(_counts_table(snapshots), _compact_table(snapshots)))
    else:
        parts.append("No queues yet: enqueue a job or start a worker to create one.")
    parts += [
        f"[bold red]warning:[/] worker {escape(w.id)} ({escape(m.queue)}) has "
        f"{w.abandoned_threads} handler threads hung past their timeout"
        for m in snapshots for w in m.workers if w.abandoned_threads
    ]  # fmt: skip
    parts.append(_safety_table(server_url, safety))
    parts += [f"[bold red]warning:[/] {escape(p)}" for p in safety.problems()]
    return Group(*parts)


def _server_builtins(url: str, safety: ServerSafety) -> dict[str, Any]:
    return {
        "url": url,
        "version": safety.version,
        "maxmemory_policy": safety.maxmemory_policy,
        "aof_enabled": safety.aof_enabled,
        "problems": safety.problems(),
    }


class _Fitting:
    """The first of its tables that fits the terminal's width, else the last one."""

    def __init__(self, *choices: RenderableType) -> None:
        self.choices = choices

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(10_000)  # a measurement is capped at the width
        for choice in self.choices[:-1]:
            if Measurement.get(console, unbounded, choice).maximum <= options.max_width:
                yield choice
                return
        yield self.choices[-1]


def _queue_label(m: QueueMetrics, *, paused: bool = False) -> str:
    label = escape(m.queue)
    if m.partitions > 1:
        label += f" [dim]({m.partitions} partitions)[/]"
    if paused and m.counts.paused:
        label += " [yellow]paused[/]"
    return label


def _compact_table(snapshots: list[QueueMetrics]) -> Table:
    """The counts for a narrow terminal: pending states only, paused beside the name."""
    table = Table(
        title="Queues",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("queue", style="bold", overflow="fold", min_width=12)
    for state in _COMPACT_STATES:
        table.add_column(state, justify="right", no_wrap=True,
                         style="red" if state == "dead" else None)  # fmt: skip
    table.add_column("workers", justify="right", no_wrap=True)
    table.add_column("done/min", justify="right", no_wrap=True)
    table.add_column("oldest\nwait", justify="right", no_wrap=True)
    for m in snapshots:
        numbers = [str(getattr(m.counts, state)) for state in _COMPACT_STATES]
        table.add_row(_queue_label(m, paused=True), *numbers, str(len(m.workers)),
                      str(m.completed_last_minute()), duration(m.oldest_waiting_age))  # fmt: skip
    return table


def _counts_table(snapshots: list[QueueMetrics]) -> Table:
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue", style="bold")
    for state in _STATES:
        table.add_column(state, justify="right", style="red" if state == "dead" else None)
    table.add_column("paused")
    table.add_column("workers", justify="right")
    table.add_column("done/min", justify="right")
    table.add_column("oldest wait", justify="right")
    table.add_column("oldest dead", justify="right")
    for m in snapshots:
        c = m.counts
        numbers = [str(getattr(c, state)) for state in _STATES]
        paused = "[yellow]paused[/]" if c.paused else "no"
        table.add_row(
            _queue_label(m), *numbers, paused, str(len(m.workers)), str(m.completed_last_minute()),
            duration(m.oldest_waiting_age), duration(m.oldest_dead_age),
        )  # fmt: skip
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
