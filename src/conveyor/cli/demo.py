"""The ``conveyor demo`` command: watch jobs flow, retry and land in the dead-letter set."""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.cli import demo_app
from conveyor.cli.common import url_option

__all__ = ["demo"]


@click.command()
@click.option("--jobs", type=click.IntRange(6, 5000), default=40, show_default=True,
              help="How many jobs to enqueue (3 of them end dead on purpose).")  # fmt: skip
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Workers serving the queue, in this process.")  # fmt: skip
@url_option
def demo(jobs: int, workers: int, url: str | None) -> None:
    """Run a small web app's jobs on a throwaway queue and show them live.

    Emails, thumbnails and flaky webhooks complete (some after a retry); a poison job, a
    declined card and a job nobody handles end in the dead-letter set. The queue is
    deleted at the end. Uses the embedded server unless --url or $CONVEYOR_URL is set.
    """
    console = Console()
    summary = demo_app.run(jobs, workers, url=url, console=console)
    console.line()
    console.print(_summary_table(summary))
    if not summary.finished:
        raise click.ClickException("the demo did not finish in time (is the server slow?)")


def _summary_table(summary: demo_app.DemoSummary) -> Table:
    table = Table(title=f"Summary ({summary.seconds:.1f}s, queue {summary.queue} removed)",
                  title_justify="left", show_header=False, box=None)  # fmt: skip
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("completed", f"[green]{summary.completed}[/] of {summary.total} jobs")
    table.add_row("retried", f"[yellow]{summary.retried}[/] jobs needed more than one attempt "
                             f"({summary.recovered} then completed)")  # fmt: skip
    table.add_row("dead", f"[red]{len(summary.dead)}[/] jobs in the dead-letter set:")
    for job in summary.dead:
        table.add_row("", f"[red]{escape(job.name)}[/] ({job.reason}): {escape(job.error)}")
    return table
