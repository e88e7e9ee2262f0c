"""The ``conveyor dlq`` commands: list, show, replay, drop, export, import and kill dead jobs.

Each command is a thin shell over ``SyncQueue(...).dead_letters``. Bulk replays and drops
first count what they would touch (a dry run), ask before acting, then act on those ids.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import msgspec
from rich import box
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from conveyor import dlq_ops
from conveyor.cli.common import json_option, open_queue, queue_argument, url_option
from conveyor.cli.render import echo_json, timestamp
from conveyor.display import job_builtins
from conveyor.dlq_ops import BulkResult, DeadFilter
from conveyor.durations import parse_duration
from conveyor.errors import ConveyorError, DeadImportError, JobStateError
from conveyor.job import DeadReason, Job, JobState
from conveyor.keys import validate_queue_name
from conveyor.sync_queue import SyncQueue

__all__ = ["dlq"]

F = TypeVar("F", bound=Callable[..., Any])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class _Command(click.Command):
    """A dlq command: API refusals are usage errors, Conveyor errors one line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValueError as exc:  # conflicting selections, a bad rate, a too-large payload
            raise click.UsageError(_one_line(exc), ctx=ctx) from None
        except ConveyorError as exc:  # the server is unreachable, a job in the wrong state
            raise click.ClickException(_one_line(exc)) from None


class _Group(click.Group):
    command_class = _Command


@click.group(cls=_Group)
def dlq() -> None:
    """Operate a queue's dead-letter set: inspect, replay, drop, back up dead jobs."""


# --- parsing times and selections ------------------------------------------------------

_seconds = parse_duration


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An option's duration (``30m``, ``2h``, ``7d``) in seconds."""
    if value is None:
        return None
    seconds = _seconds(value.strip())
    if seconds is None:
        raise click.BadParameter(f"{value!r} is not a duration like 30m, 2h or 7d", ctx, param)
    return seconds


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An option's point in time as Unix seconds: an ISO datetime, or a duration ago (``2h``)."""
    if value is None:
        return None
    ago = _seconds(value.strip())
    if ago is not None:
        return time.time() - ago
    try:  # naive datetimes are local time, as the CLI shows them
        return dt.datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", value.strip())).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO datetime nor a duration like 2h", ctx, param
        ) from None


_FILTERS = (
    click.option("--reason", type=click.Choice([r.value for r in DeadReason]),
                 help="Only jobs dead for this reason."),
    click.option("--name", default=None, help="Only jobs with this handler name."),
    click.option("--error-type", default=None, metavar="TYPE",
                 help="Only jobs whose last error has this type (e.g. KeyError)."),
    click.option("--since", callback=_when, metavar="ISO|DURATION",
                 help="Only jobs that died at or after this time (ISO, or 2h for 2 hours ago)."),
    click.option("--until", callback=_when, metavar="ISO|DURATION",
                 help="Only jobs that died at or before this time (ISO, or 2h ago)."),
)  # fmt: skip


def _filter_options(command: F) -> F:
    """Add the filter options to ``command``; it receives them as one ``where`` argument."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {
            key: kwargs.pop(key) for key in ("reason", "name", "error_type", "since", "until")
        }
        kwargs["where"] = (
            DeadFilter(**values) if any(v is not None for v in values.values()) else None
        )
        return command(**kwargs)

    for option in reversed(_FILTERS):
        wrapper = option(wrapper)
    return cast(F, wrapper)


def _older_than(where: DeadFilter | None, older_than: float | None) -> DeadFilter | None:
    """``where`` narrowed to jobs dead for at least ``older_than`` seconds."""
    if older_than is None:
        return where
    until = time.time() - older_than
    if where is None:
        return DeadFilter(until=until)
    return DeadFilter(where.reason, where.name, where.error_type, where.since,
                      min(until, where.until) if where.until else until)  # fmt: skip


def _selection(job_id: str | None, where: DeadFilter | None, everything: bool) -> None:
    """Refuse anything but exactly one of: an ID, filters, ``--all``."""
    given = sum([job_id is not None, where is not None, everything])
    if given == 0:
        raise click.UsageError("say which dead jobs: an ID, filters (--reason, --name, ...) "
                               "or --all")  # fmt: skip
    if given > 1:
        raise click.UsageError("give one of: an ID, filters, or --all (not several)")


def _target_queue(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            validate_queue_name(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        return dlq_ops.check_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _dead_job(queue: SyncQueue, job_id: str) -> Job:
    found = queue.get_job(job_id)
    if found is None:
        raise click.ClickException(f"no job {job_id!r} in queue {queue.name!r}")
    if found.state is not JobState.DEAD:
        raise click.ClickException(
            f"job {job_id!r} of queue {queue.name!r} is {found.state.value}, not dead"
        )
    return found


def _count(n: int) -> str:
    return f"{n} dead job{'' if n == 1 else 's'}"


# --- list and show ---------------------------------------------------------------------


@dlq.command("list")
@queue_argument()
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most jobs shown.")  # fmt: skip
@click.option("--cursor", type=click.IntRange(min=0), default=0,
              help="Where to continue (printed after a page that has more).")  # fmt: skip
@url_option
@json_option
def list_(
    queue: str, where: DeadFilter | None, limit: int, cursor: int, url: str | None, as_json: bool
) -> None:
    """List the dead jobs of QUEUE, newest first."""
    with open_queue(queue, url) as q:
        page = q.dead_letters.list(where, cursor=cursor, limit=limit)
    if as_json:
        echo_json({"jobs": [job_builtins(j) for j in page.jobs], "cursor": page.cursor})
        return
    if page.jobs:
        console = Console()
        console.print(_dead_table(page.jobs, console.width))
    else:
        click.echo(f"No dead jobs{' match' if where else ''} in queue {queue!r}.")
    if page.cursor is not None:
        click.echo(f"More: conveyor dlq list {queue} --cursor {page.cursor}")


def _error_text(job: Job, width: int) -> str:
    if job.error is None:
        return ""
    text = " ".join(f"{job.error.type}: {job.error.message}".split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _dead_table(jobs: list[Job], width: int) -> Table:
    """One row per job; the error (last) gets what room the other columns leave."""
    headers = ("id", "name", "reason", "attempts", "died at")
    rows = [
        (job.id, job.name, job.dead_reason.value if job.dead_reason else "",
         f"{job.attempt}/{job.max_attempts}", timestamp(job.finished_at))
        for job in jobs
    ]  # fmt: skip
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    room = max(12, width - sum(widths) - 3 * len(widths))  # 3: the gap between two columns
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=widths[0])  # ids are never cut
    table.add_column("name", no_wrap=True)
    table.add_column("reason", no_wrap=True, style="red")
    table.add_column("attempts", no_wrap=True, justify="right")
    table.add_column("died at", no_wrap=True)
    table.add_column("error", no_wrap=True)
    for job, row in zip(jobs, rows, strict=True):
        table.add_row(*map(escape, row), escape(_error_text(job, room)))
    return table


@dlq.command()
@queue_argument()
@click.argument("job_id", metavar="ID")
@url_option
@json_option
def show(queue: str, job_id: str, url: str | None, as_json: bool) -> None:
    """Show one dead job of QUEUE: payload, last error, and every failed attempt."""
    with open_queue(queue, url) as q:
        job = _dead_job(q, job_id)
    if as_json:
        echo_json(job_builtins(job))
    else:
        Console().print(_dead_view(job))


def _dead_view(job: Job) -> RenderableType:
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("id", escape(job.id))
    facts.add_row("queue", escape(job.queue))
    facts.add_row("name", escape(job.name))
    facts.add_row("reason", f"[red]{job.dead_reason.value if job.dead_reason else ''}[/]")
    if job.error is not None:
        facts.add_row("last error", Text(f"{job.error.type}: {job.error.message}", style="red"))
    facts.add_row("attempts", f"{job.attempt} of {job.max_attempts}")
    times = [("created", job.created_at), ("first failure", job.first_failed_at),
             ("last failure", job.last_failed_at), ("died", job.finished_at)]  # fmt: skip
    for label, at in times:
        if at:
            facts.add_row(label, timestamp(at))
    facts.add_row("replays", str(job.replays))
    if job.stalls:
        facts.add_row("stalls", str(job.stalls))
    payload = job_builtins(job)["payload"]
    parts: list[RenderableType] = [
        facts, Panel(JSON.from_data(payload), title="payload", title_align="left"),
    ]  # fmt: skip
    if job.error is not None and (not job.history or job.history[-1].error != job.error):
        parts.append(Panel(_error_body(job.error.type, job.error.message, job.error.traceback),
                           title="last error", title_align="left", border_style="red"))  # fmt: skip
    for attempt in job.history:
        took = attempt.ended_at - attempt.started_at
        title = (f"attempt {attempt.attempt} · {attempt.cause.value} · "
                 f"worker {escape(attempt.worker)}")  # fmt: skip
        when = (f"{timestamp(attempt.started_at)} → {timestamp(attempt.ended_at)} "
                f"({took:.3f}s)")  # fmt: skip
        body = _error_body(attempt.error.type, attempt.error.message, attempt.error.traceback)
        parts.append(Panel(body, title=title, subtitle=when, title_align="left"))
    return Group(*parts)


def _error_body(kind: str, message: str, traceback: str) -> Text:
    body = Text(f"{kind}: {message}", style="bold red")
    if traceback:
        body.append("\n\n" + traceback.rstrip(), style="default")
    return body


# --- replay and drop -------------------------------------------------------------------


def _in_batches(
    ids: Sequence[str], apply: Callable[[list[str]], BulkResult], verb: str, rate: float | None
) -> BulkResult:
    """Apply a bulk operation to ``ids`` batch by batch, at most ``rate`` a second, with a bar."""
    size = dlq_ops.BATCH if rate is None else max(1, min(dlq_ops.BATCH, int(rate)))
    moved, done, refused = 0, list[str](), dict[str, str]()
    columns = (TextColumn(verb), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(verb, total=len(ids))
        started = time.monotonic()
        for start in range(0, len(ids), size):
            ahead = start / rate - (time.monotonic() - started) if rate else 0
            if ahead > 0:
                time.sleep(ahead)  # keep to the rate, so the workers are not flooded
            batch = list(ids[start : start + size])
            result = apply(batch)
            moved += result.moved
            done += result.ids
            refused.update(result.refused)
            progress.advance(task, len(batch))
    return BulkResult(len(ids), moved, done, refused=refused)


def _confirm(preview: BulkResult, question: str, yes: bool) -> None:
    """Ask before a bulk change, saying how many jobs it touches (abort on no)."""
    if preview.matched and not yes:
        click.confirm(question.format(_count(preview.matched)), abort=True, err=True)


def _report(result: BulkResult, as_json: bool, template: str) -> None:
    """Print a bulk result; ``template`` says what was (or would be) done to ``{}``.

    Jobs a replay refused (fields a worker could not run) are listed on stderr, and the
    command exits 1.
    """
    if as_json:
        echo_json(result)
    else:
        done = result.matched if result.dry_run else result.moved
        ending = ":" if result.dry_run and result.ids else "."
        click.echo(template.format(_count(done)) + ending)
        if result.dry_run:
            for job_id in result.ids:
                click.echo(job_id)
        elif result.matched > result.moved + len(result.refused):
            gone = result.matched - result.moved - len(result.refused)
            click.echo(f"{gone} of them were no longer dead.")
    if result.refused:
        click.echo(f"{_count(len(result.refused))} refused, left dead:", err=True)
        for job_id, why in result.refused.items():
            click.echo(f"  {job_id}: {why}", err=True)
        click.get_current_context().exit(1)


@dlq.command()
@queue_argument()
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all", "everything", is_flag=True, help="Every dead job of the queue.")
@_filter_options
@click.option("--rate", type=float, default=None, metavar="N", callback=_rate,
              help="Replay at most N jobs a second, not to flood the workers.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would be replayed; change nothing.")
@click.option("--to", metavar="QUEUE", default=None, callback=_target_queue,
              help="Enqueue the jobs on this other queue instead.")  # fmt: skip
@click.option("--payload", "payload_json", metavar="JSON", default=None,
              help="Replay the one job ID with this payload ('-' reads stdin).")  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk replay.")
@url_option
@json_option
def replay(
    queue: str, job_id: str | None, everything: bool, where: DeadFilter | None,
    rate: float | None, dry_run: bool, to: str | None, payload_json: str | None, yes: bool,
    url: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Move dead jobs of QUEUE back to waiting, with a fresh attempt budget.

    Give one ID, filters, or --all. A replayed job keeps its id and history; replaying a
    job twice makes one job. Bulk replays say how many jobs match and ask first (--yes
    skips the question).
    """
    _selection(job_id, where, everything)
    payload = None if payload_json is None else _decode_payload(payload_json, job_id, to)
    to = None if to == queue else to  # replaying to its own queue is a plain replay
    onto = f" to queue {to!r}" if to else ""
    with open_queue(queue, url) as q:
        dead = q.dead_letters
        if job_id is not None:
            _dead_job(q, job_id)
        if job_id is not None and payload_json is not None and not dry_run:
            result = dead.replay([job_id], payload=payload)
        else:
            ids = None if job_id is None else [job_id]
            result = dead.replay(ids, where=where, all=everything, dry_run=True)
            if not dry_run:
                _confirm(result, f"Replay {{}} of queue {queue!r}{onto}?", yes or bool(ids))
                result = _in_batches(result.ids, lambda batch: dead.replay(batch, rate=rate,
                                     to=to), "Replaying", rate)  # fmt: skip
    _report(result, as_json, ("Would replay {}" if dry_run else "Replayed {}") + onto)


def _decode_payload(text: str, job_id: str | None, to: str | None) -> Any:
    if job_id is None:
        raise click.UsageError("--payload edits one job: give exactly one ID")
    if to is not None:
        raise click.UsageError("--payload cannot be combined with --to")
    try:
        return msgspec.json.decode(sys.stdin.read() if text == "-" else text)
    except msgspec.DecodeError as exc:
        raise click.UsageError(f"--payload is not valid JSON: {exc}") from None


@dlq.command()
@queue_argument()
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all", "everything", is_flag=True, help="Every dead job of the queue.")
@_filter_options
@click.option("--older-than", callback=_duration, metavar="DURATION",
              help="Only jobs dead for at least this long (30m, 2h, 7d).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would be dropped; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk drop.")
@url_option
@json_option
def drop(
    queue: str, job_id: str | None, everything: bool, where: DeadFilter | None,
    older_than: float | None, dry_run: bool, yes: bool, url: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Delete dead jobs of QUEUE for good: one ID, filters, --older-than, or --all.

    Bulk drops say how many jobs match and ask first (--yes skips the question);
    `conveyor dlq export` makes a backup.
    """
    where = _older_than(where, older_than)
    _selection(job_id, where, everything)
    with open_queue(queue, url) as q:
        dead = q.dead_letters
        if job_id is not None:
            _dead_job(q, job_id)
        ids = None if job_id is None else [job_id]
        result = dead.drop(ids, where=where, all=everything, dry_run=True)
        if not dry_run:
            _confirm(result, f"Drop {{}} of queue {queue!r} for good?", yes or bool(ids))
            result = _in_batches(result.ids, dead.drop, "Dropping", None)
    _report(result, as_json, "Would drop {}" if dry_run else "Dropped {}")


# --- export, import, kill --------------------------------------------------------------


@dlq.command("export")
@queue_argument()
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@_filter_options
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@url_option
@json_option
def export_(
    queue: str, file: Path, where: DeadFilter | None, force: bool, url: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Write the dead jobs of QUEUE to FILE as JSON lines (a backup before dropping).

    An existing FILE is left alone unless --force is given.
    """
    if file.exists() and not force:
        raise click.ClickException(f"{file} exists; pass --force to overwrite it")
    with open_queue(queue, url) as q:
        try:
            written = q.dead_letters.export(file, where, overwrite=force)
        except FileExistsError:  # created since the check above
            raise click.ClickException(f"{file} exists; pass --force to overwrite it") from None
        except OSError as exc:
            raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
    if as_json:
        echo_json({"exported": written, "file": str(file)})
    else:
        click.echo(f"Exported {_count(written)} of queue {queue!r} to {file}.")


@dlq.command("import")
@queue_argument()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@url_option
@json_option
def import_(queue: str, file: Path, url: str | None, as_json: bool) -> None:
    """Read dead jobs written by `conveyor dlq export` from FILE back into QUEUE.

    Every record is checked first (types, ids, payload size, times, priority, attempts):
    if any is bad, the bad lines are listed and nothing is imported. The jobs are then
    written in batches - up to 500 jobs of one partition, each batch all or nothing - and
    a job whose id is already there is skipped, so an interrupted import can be run again.
    """
    try:
        with file.open("rb") as lines:
            total = sum(1 for line in lines if line.strip())
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    with open_queue(queue, url) as q:
        try:
            imported = q.dead_letters.import_(file)
        except DeadImportError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json({"imported": imported, "skipped": total - imported, "file": str(file)})
        return
    skipped = f" ({total - imported} already there)" if total > imported else ""
    click.echo(f"Imported {_count(imported)} into queue {queue!r}{skipped}.")


@dlq.command()
@queue_argument()
@click.argument("job_id", metavar="ID")
@url_option
def kill(queue: str, job_id: str, url: str | None) -> None:
    """Send a waiting or delayed job of QUEUE to the dead-letter set (reason: killed)."""
    with open_queue(queue, url) as q:
        try:
            killed = q.dead_letters.kill(job_id)
        except JobStateError as exc:
            raise click.ClickException(
                f"cannot kill: {_one_line(exc)}; only waiting or delayed jobs can be killed"
            ) from None
    if not killed:
        raise click.ClickException(f"no job {job_id!r} in queue {queue!r}")
    click.echo(f"Killed job {job_id} of queue {queue!r}.")
