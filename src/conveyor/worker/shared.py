"""What every piece of one worker session needs and nothing more: who the worker is, what it
serves, how it reaches the server, and the locks it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.keys import QueueKeys
from conveyor.ops import QueueOptions
from conveyor.transport import AsyncTransport
from conveyor.worker.handlers import Handler
from conveyor.worker.held import HeldLocks
from conveyor.worker.options import WorkerOptions
from conveyor.worker.outage import Outage


@dataclass(frozen=True, slots=True, eq=False)
class Shared:
    """Given to the fetchers, the settler and the lock keeper of one worker session.

    The lock keeper reads only the plain values and :attr:`held` (thread-safe) from its
    thread; the transport, the outage backoff and ``stopping`` belong to the event loop.
    """

    worker_id: str
    options: WorkerOptions
    queue_options: QueueOptions
    #: The queues served in this session (a partitioned queue's partitions), by name.
    queues: Mapping[str, QueueKeys]
    #: By job name.
    handlers: Mapping[str, Handler]
    transport: AsyncTransport
    outage: Outage
    held: HeldLocks
    #: Set when the session starts to shut down: the background loops end.
    stopping: asyncio.Event
