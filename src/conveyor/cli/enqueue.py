"""The ``conveyor enqueue`` command: add one job from the shell."""

from __future__ import annotations

import sys
from typing import Any

import click
import msgspec

from conveyor.cli.common import (
    json_option,
    open_queue,
    priority_option,
    queue_argument,
    url_option,
)
from conveyor.cli.render import echo_json
from conveyor.display import job_builtins

__all__ = ["enqueue"]


def _payload(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return {}  # no payload: an empty object (not null), as the help says
    text = sys.stdin.read() if value == "-" else value
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", ctx=ctx, param=param) from None


@click.command()
@queue_argument()
@click.argument("name")
@click.argument("payload", metavar="[PAYLOAD_JSON]", required=False, callback=_payload)
@click.option("--id", "job_id", default=None, help="Job id; enqueuing an existing id is a no-op.")
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Run after S seconds.")
@priority_option
@click.option("--attempts", type=click.IntRange(min=1), default=None, help="Most attempts.")
@click.option(
    "--partition-key",
    default=None,
    help="On a partitioned queue: jobs with the same key go to one partition, in order.",
)
@url_option
@json_option
def enqueue(
    queue: str,
    name: str,
    payload: Any,
    job_id: str | None,
    delay: float | None,
    priority: int,
    attempts: int | None,
    partition_key: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Add a job NAME to QUEUE with a JSON payload ('-' reads it from stdin); print its id.

    Without PAYLOAD_JSON the payload is {} (an empty object). A value out of range (an
    empty or too long id or name, a delay over ten years, a payload over the limit) is
    refused with one line, and nothing is stored.
    """
    with open_queue(queue, url) as q:
        try:
            job = q.enqueue(
                name, payload, id=job_id, delay=delay, priority=priority, attempts=attempts,
                partition_key=partition_key,
            )  # fmt: skip
        except ValueError as exc:  # a refused value or payload (PayloadError is one too)
            raise click.UsageError(" ".join(str(exc).split())) from None
    if as_json:
        echo_json(job_builtins(job))
    else:
        click.echo(job.id)
