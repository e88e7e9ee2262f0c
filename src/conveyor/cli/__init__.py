"""The ``conveyor`` command line: one group, with each command in its own small module.

Conveyor's errors (an unreachable server, an unsafe one, a busy queue) end any command with
one clear line and exit status 1, never a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from conveyor import __version__
from conveyor.cli.dashboard import dashboard
from conveyor.cli.demo import demo
from conveyor.cli.dlq import dlq
from conveyor.cli.enqueue import enqueue
from conveyor.cli.events import events
from conveyor.cli.exporter import metrics
from conveyor.cli.jobs import job, jobs
from conveyor.cli.manage import drain, pause, resume
from conveyor.cli.schedule import schedule
from conveyor.cli.server import server
from conveyor.cli.status import status
from conveyor.cli.worker import worker
from conveyor.errors import ConveyorError

__all__ = ["main"]


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            raise click.ClickException(" ".join(str(exc).split())) from exc


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="conveyor")
def main() -> None:
    """Conveyor: background jobs on Redis/Valkey, with an operable dead-letter queue.

    Commands find the server at --url, else $CONVEYOR_URL, else the embedded server.
    """


_COMMANDS = (worker, enqueue, status, jobs, job, events, pause, resume, drain, dlq, schedule,
             metrics, dashboard, server, demo)  # fmt: skip
for _command in _COMMANDS:
    main.add_command(_command)
