"""The ``conveyor pause``, ``resume`` and ``drain`` commands: manage a queue from the shell."""

from __future__ import annotations

import click

from conveyor.cli.common import open_queue, queue_argument, url_option

__all__ = ["drain", "pause", "resume"]


@click.command()
@queue_argument()
@url_option
def pause(queue: str, url: str | None) -> None:
    """Stop workers from starting new jobs of QUEUE (running jobs finish; nothing is lost)."""
    with open_queue(queue, url) as q:
        q.pause()
    click.echo(f"Paused queue {queue!r}.")


@click.command()
@queue_argument()
@url_option
def resume(queue: str, url: str | None) -> None:
    """Let workers start jobs of QUEUE again."""
    with open_queue(queue, url) as q:
        q.resume()
    click.echo(f"Resumed queue {queue!r}.")


@click.command()
@queue_argument()
@url_option
def drain(queue: str, url: str | None) -> None:
    """Remove every waiting and delayed job of QUEUE (active, completed and dead stay)."""
    with open_queue(queue, url) as q:
        removed = q.drain()
    click.echo(f"Removed {removed} waiting/delayed job{'' if removed == 1 else 's'} "
               f"from queue {queue!r}.")  # fmt: skip
