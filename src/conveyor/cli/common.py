"""What the CLI commands share: the ``--url``/``--json`` options, queue arguments, connecting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from conveyor import connection, defaults
from conveyor.keys import validate_queue_name
from conveyor.sync_queue import SyncQueue
from conveyor.transport import SyncTransport

__all__ = ["connect", "json_option", "open_queue", "queue_argument", "url_option"]

F = TypeVar("F", bound=Callable[..., Any])

url_option = click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Server URL (redis://, rediss://, unix://). "
    "[default: $CONVEYOR_URL, else the embedded server]",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _queue_names(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    names = (value,) if isinstance(value, str) else value
    for name in names:
        try:
            validate_queue_name(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def queue_argument(*, many: bool = False) -> Callable[[F], F]:
    """The ``QUEUE`` argument (``QUEUE...`` with ``many``), validated before connecting."""
    if many:
        return click.argument("queues", metavar="[QUEUE]...", nargs=-1, callback=_queue_names)
    return click.argument("queue", callback=_queue_names)


#: ``--priority``, as enqueue and schedule add take it.
priority_option = click.option(
    "--priority",
    type=click.IntRange(defaults.PRIORITY_MIN, defaults.PRIORITY_MAX),
    default=defaults.PRIORITY,
    show_default=True,
    help="Higher runs first.",
)


@contextmanager
def connect(url: str | None) -> Iterator[SyncTransport]:
    """A connection for reading: unlike a queue, it does not register the names it reads."""
    resolved = connection.resolve_url(url)
    transport = SyncTransport(connection.sync_client(resolved), resolved)
    try:
        yield transport
    finally:
        transport.close()


@contextmanager
def open_queue(name: str, url: str | None) -> Iterator[SyncQueue]:
    """The sync face of queue ``name``, closed afterwards."""
    with SyncQueue(name, url=url) as queue:
        yield queue
