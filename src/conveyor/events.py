"""The event stream of a queue: every state change, written by the script that made it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from conveyor.keys import QueueKeys
from conveyor.ops import Command, Op


class Event(msgspec.Struct, frozen=True):
    """One state change. ``id`` is the stream id: resume from it to miss nothing.

    ``queue`` is the queue (for a partitioned queue, the partition) that wrote it.
    """

    id: str
    event: str
    job_id: str
    fields: dict[str, str]
    queue: str = ""

    @property
    def timestamp(self) -> float:
        """When the server recorded it (Unix time)."""
        return int(self.id.split("-", 1)[0]) / 1000


def parse_event(raw_id: bytes, raw_fields: dict[bytes, bytes] | list[bytes], queue: str) -> Event:
    """An event from its stream entry."""
    if isinstance(raw_fields, list):
        raw_fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
    fields = {k.decode(): v.decode(errors="replace") for k, v in raw_fields.items()}
    return Event(raw_id.decode(), fields.pop("event", ""), fields.pop("job", ""), fields, queue)


def read_events(
    keys: QueueKeys, last_id: str, *, block: float | None, count: int = 500
) -> Op[list[Event]]:
    """Events after ``last_id`` ("$" = only new ones, "0" = from the oldest kept)."""
    (events,) = yield from read_streams([keys], [last_id], block=block, count=count)
    return events


def read_streams(
    queues: Sequence[QueueKeys], last_ids: Sequence[str], *, block: float | None, count: int = 500
) -> Op[list[list[Event]]]:
    """Each queue's events after its ``last_id``, in one ``XREAD`` (so: keys of one server)."""
    args: list[Any] = ["XREAD", "COUNT", count]
    if block is not None:
        args += ["BLOCK", max(1, round(block * 1000))]
    streams = [keys.key("events") for keys in queues]
    (reply,) = yield [Command((*args, "STREAMS", *streams, *last_ids))]
    if not reply:
        by_stream: dict[bytes, Any] = {}
    elif isinstance(reply, dict):  # RESP3
        by_stream = {name: value[0] for name, value in reply.items()}
    else:
        by_stream = dict(reply)
    return [
        [
            parse_event(raw_id, fields, keys.queue)
            for raw_id, fields in by_stream.get(s.encode(), [])
        ]
        for keys, s in zip(queues, streams, strict=True)
    ]


def last_event_id(keys: QueueKeys) -> Op[str]:
    """The id of the newest event, or "0-0" when there is none."""
    (reply,) = yield [Command(("XREVRANGE", keys.key("events"), "+", "-", "COUNT", 1))]
    return reply[0][0].decode() if reply else "0-0"
