"""The settings of a worker, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor import defaults


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs. Every field has a safe default."""

    concurrency: int = defaults.CONCURRENCY
    fetch_batch: int = defaults.FETCH_BATCH
    lock_ttl: float = defaults.LOCK_TTL
    lock_renew_interval: float = defaults.LOCK_RENEW_INTERVAL
    stall_check_interval: float = defaults.STALL_CHECK_INTERVAL
    max_stalls: int = defaults.MAX_STALLS
    idle_block: float = defaults.IDLE_BLOCK
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    heartbeat_ttl: float = defaults.HEARTBEAT_TTL
    #: Start even when the server may evict keys (``maxmemory-policy`` other than noeviction).
    allow_unsafe_server: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.fetch_batch < 1:
            raise ValueError("fetch_batch must be at least 1")
        if not 0 < self.lock_renew_interval < self.lock_ttl:
            raise ValueError("lock_renew_interval must be positive and below lock_ttl")
