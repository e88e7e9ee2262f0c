"""The ``conveyor schedule`` commands: list, add (or replace) and remove schedules."""

from __future__ import annotations

import re
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor import codec
from conveyor.cli.common import (
    json_option,
    open_queue,
    priority_option,
    queue_argument,
    url_option,
)
from conveyor.cli.render import echo_json, timestamp
from conveyor.schedules import Schedule, describe

__all__ = ["schedule"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)?$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if not match:
        raise click.BadParameter("use a number of seconds or 30s, 5m, 2h, 1d", ctx, param)
    return float(match.group(1)) * _UNITS[match.group(2)]


@click.group()
def schedule() -> None:
    """Cron-like and repeating jobs, fired by the queue's workers."""


@schedule.command("list")
@queue_argument()
@url_option
@json_option
@click.option("--next", "upcoming", default=3, show_default=True, help="Next runs to show.")
def list_schedules(queue: str, url: str | None, as_json: bool, upcoming: int) -> None:
    """List the schedules of QUEUE with their next run times."""
    with open_queue(queue, url) as q:
        entries = q.schedules()
    if as_json:
        echo_json([{**describe(e), "next_runs": e.schedule.next_runs(upcoming)} for e in entries])
        return
    table = Table(title=f"Schedules of {queue}", title_justify="left")
    for column in ("id", "job", "when", "time zone", "next runs"):
        table.add_column(column)
    for e in entries:
        s = e.schedule
        when = s.cron if s.cron is not None else f"every {s.every:g}s"
        runs = ", ".join(timestamp(t) for t in s.next_runs(upcoming))
        table.add_row(escape(s.id), escape(s.name), escape(when or ""), s.timezone, runs)
    Console().print(table if entries else f"Queue {queue!r} has no schedules.")


@schedule.command("add")
@queue_argument()
@click.argument("schedule_id")
@click.argument("job_name")
@click.argument("payload", metavar="[PAYLOAD_JSON]", required=False, default="{}")
@click.option("--cron", default=None, help='A cron expression, e.g. "*/5 * * * *".')
@click.option("--every", default=None, callback=_seconds, help="An interval: 30s, 5m, 2h.")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="Time zone of --cron.")
@priority_option
@click.option("--no-catch-up", is_flag=True, help="Skip ticks missed while no worker ran.")
@url_option
@json_option
def add(queue: str, schedule_id: str, job_name: str, payload: str, cron: str | None,
        every: float | None, timezone: str, priority: int, no_catch_up: bool,
        url: str | None, as_json: bool) -> None:  # fmt: skip
    """Create or replace schedule SCHEDULE_ID on QUEUE, making JOB_NAME jobs with PAYLOAD_JSON
    ({} if left out). --cron takes five fields (minute hour day month weekday) or an alias
    such as @daily."""
    try:
        data: Any = codec.decode(payload)
        spec = Schedule(id=schedule_id, name=job_name, payload=data, cron=cron, every=every,
                        timezone=timezone, priority=priority, catch_up=not no_catch_up)  # fmt: skip
    except ValueError as exc:  # PayloadError is one too
        raise click.UsageError(" ".join(str(exc).split())) from None
    with open_queue(queue, url) as q:
        try:
            next_run = q.schedule(spec)
        except ValueError as exc:  # the payload is over this queue's limit
            raise click.UsageError(" ".join(str(exc).split())) from None
    if as_json:
        echo_json({"id": schedule_id, "next_run": next_run})
    else:
        click.echo(f"schedule {schedule_id} saved; next run {timestamp(next_run)}")


@schedule.command("remove")
@queue_argument()
@click.argument("schedule_id")
@url_option
def remove(queue: str, schedule_id: str, url: str | None) -> None:
    """Remove schedule SCHEDULE_ID from QUEUE."""
    with open_queue(queue, url) as q:
        removed = q.unschedule(schedule_id)
    if not removed:
        raise click.ClickException(f"queue {queue!r} has no schedule {schedule_id!r}")
    click.echo(f"schedule {schedule_id} removed")
