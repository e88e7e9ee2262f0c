"""The ``conveyor events`` command: tail a queue's state changes as they happen."""

from __future__ import annotations

import click
import msgspec
from rich.console import Console
from rich.markup import escape

from conveyor.cli.common import open_queue, queue_argument, url_option
from conveyor.events import Event
from conveyor.keys import PARTITION_SEPARATOR

__all__ = ["events"]


@click.command()
@queue_argument()
@url_option
@click.option("--from", "last_id", default="$", metavar="ID",
              help="Resume after this event id ('0': oldest kept; default: new).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many events.")  # fmt: skip
def events(queue: str, url: str | None, last_id: str, as_json: bool, limit: int | None) -> None:
    """Print the events of QUEUE as they happen (Ctrl-C to stop).

    Each line carries the event's id: pass it to --from to resume without missing any.
    """
    console = Console(highlight=False)
    seen = 0
    with open_queue(queue, url) as q:
        try:
            for event in q.events(last_id=last_id, block=1.0):
                _show(console, event, as_json)
                seen += 1
                if limit is not None and seen >= limit:
                    return
        except KeyboardInterrupt:
            pass


def _show(console: Console, event: Event, as_json: bool) -> None:
    if as_json:
        click.echo(msgspec.json.encode(event).decode())
        return
    extra = " ".join(f"{k}={v}" for k, v in event.fields.items())
    where = f"[dim]{escape(event.queue)}[/] " if PARTITION_SEPARATOR in event.queue else ""
    console.print(
        f"{event.id}  {where}[bold]{event.event:<10}[/] {escape(event.job_id)} {escape(extra)}"
    )
