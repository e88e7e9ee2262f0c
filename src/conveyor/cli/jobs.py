"""The ``conveyor jobs`` and ``conveyor job`` commands: list the jobs of a queue, show one."""

from __future__ import annotations

import click
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from conveyor import partitions
from conveyor.cli.common import connect, json_option, queue_argument, url_option
from conveyor.cli.render import echo_json, job_error, timestamp
from conveyor.display import ago, job_builtins
from conveyor.job import Job, JobState
from conveyor.states import STATE_INFO
from conveyor.stored import describe

__all__ = ["job", "jobs"]


def _style(state: JobState) -> str:
    return STATE_INFO[state].style


@click.command()
@queue_argument()
@click.option(
    "--state",
    type=click.Choice([s.value for s in JobState]),
    default=None,
    help="Only this state. [default: every state]",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most jobs shown (per state).")  # fmt: skip
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Jobs skipped (per state).")
@url_option
@json_option
def jobs(
    queue: str, state: str | None, limit: int, offset: int, url: str | None, as_json: bool
) -> None:
    """List the jobs of QUEUE; finished jobs newest first."""
    states = [JobState(state)] if state else list(JobState)
    with connect(url) as transport:
        parts = transport.run(partitions.parts_of(queue))
        found = [
            item
            for s in states
            for item in transport.run(partitions.list_jobs(parts, s, offset, limit))
        ]
    if as_json:
        echo_json([job_builtins(item) for item in found])
        return
    if not found:
        click.echo(f"No {state or ''} jobs in queue {queue!r}.".replace("  ", " "))
        return
    Console().print(_jobs_text(found), soft_wrap=True)


_COLUMNS = ("id", "name", "state", "try", "created")


def _pad(column: int, value: str, width: int) -> str:
    return value.rjust(width) if column >= 3 else value.ljust(width)  # numbers, ages: right


def _jobs_text(found: list[Job]) -> Text:
    """Aligned columns, one line per job, and the error of a failed job on a line below."""
    rows = [
        (item.id, item.name, item.state.value, f"{item.attempt}/{item.max_attempts}",
         ago(item.created_at))
        for item in found
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    out = Text(
        "  ".join(_pad(i, h, w) for i, (h, w) in enumerate(zip(_COLUMNS, widths, strict=True))),
        style="bold",
    )
    for item, row in zip(found, rows, strict=True):
        out.append("\n")
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            out.append("  " if i else "")
            out.append(_pad(i, value, width), style=_style(item.state) if i == 2 else "")
        error = job_error(item)
        if error:
            out.append(f"\n  └─ {error}", style="red")
        if item.problems:
            out.append(f"\n  └─ malformed: {describe(item.problems)}", style="red")
    return out


@click.command()
@queue_argument()
@click.argument("job_id", metavar="ID")
@url_option
@json_option
def job(queue: str, job_id: str, url: str | None, as_json: bool) -> None:
    """Show everything about one job: payload, state, result, errors, history.

    Exits with status 1 when there is no such job.
    """
    with connect(url) as transport:
        parts = transport.run(partitions.parts_of(queue))
        found = transport.run(partitions.find_job(parts, job_id))
    if found is None:
        raise click.ClickException(f"no job {job_id!r} in queue {queue!r}")
    if as_json:
        echo_json(job_builtins(found))
    else:
        Console().print(_job_view(found))


def _job_view(item: Job) -> RenderableType:
    data = job_builtins(item)
    payload = Panel(JSON.from_data(data["payload"]), title="payload", title_align="left")
    parts: list[RenderableType] = [_facts(item), payload]
    if item.raw_progress is not None:
        parts.append(Panel(JSON.from_data(data["progress"]), title="progress", title_align="left"))
    if item.raw_result is not None:
        parts.append(Panel(JSON.from_data(data["result"]), title="result", title_align="left"))
    if item.logs:
        shown = item.logs[-50:]
        title = f"log (last {len(shown)} of {len(item.logs)} lines)"
        parts.append(Panel(Text("\n".join(shown)), title=title, title_align="left"))
    if item.error is not None:
        error = Text(f"{item.error.type}: {item.error.message}", style="bold red")
        if item.error.traceback:
            error.append("\n\n" + item.error.traceback.rstrip(), style="default")
        parts.append(Panel(error, title="last error", title_align="left", border_style="red"))
    if item.history:
        parts.append(_history_table(item))
    return Group(*parts)


def _facts(item: Job) -> Table:
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    style = _style(item.state)
    facts.add_row("id", escape(item.id))
    facts.add_row("queue", escape(item.queue))
    facts.add_row("name", escape(item.name))
    facts.add_row("state", f"[{style}]{item.state.value}[/]")
    if item.dead_reason is not None:
        facts.add_row("dead reason", f"[red]{item.dead_reason.value}[/]")
    facts.add_row("attempt", f"{item.attempt} of {item.max_attempts}")
    facts.add_row("priority", str(item.priority))
    if item.timeout is not None:
        facts.add_row("timeout", f"{item.timeout:g}s")
    if item.stalls:
        facts.add_row("stalls", str(item.stalls))
    for label, when in [("created", item.created_at), ("due", item.due_at),
                        ("started", item.started_at), ("finished", item.finished_at)]:  # fmt: skip
        if when:
            facts.add_row(label, timestamp(when))
    if item.options:
        facts.add_row("options", JSON.from_data(item.options))
    for problem in item.problems:  # malformed stored fields, read as their defaults
        facts.add_row("[red]malformed[/]", f"[red]{escape(problem)}[/]")
    return facts


def _history_table(item: Job) -> Table:
    table = Table(title="failed attempts", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("worker", overflow="fold")
    table.add_column("started", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    for attempt in item.history:
        took = attempt.ended_at - attempt.started_at
        table.add_row(
            str(attempt.attempt), attempt.cause.value,
            escape(f"{attempt.error.type}: {attempt.error.message}"), escape(attempt.worker),
            timestamp(attempt.started_at), f"{took:.3f}s",
        )  # fmt: skip
    return table
