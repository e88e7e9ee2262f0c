"""Conveyor: a fast, reliable background-job queue for Python on Redis/Valkey."""

from conveyor.dlq_ops import BulkResult, DeadFilter, DeadPage
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    DeadImportError,
    EmbeddedServerError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobStateError,
    NotDurableError,
    PayloadError,
    PermanentError,
    QueueBusyError,
    RateLimited,
    ResultTimeout,
    RetryLater,
    ServerUnavailable,
    UnsafeServerError,
    WorkerFailedError,
    WorkerStuckError,
)
from conveyor.events import Event
from conveyor.job import Attempt, AttemptCause, DeadReason, Durability, ErrorInfo, Job, JobState
from conveyor.metrics import MinuteStats, QueueMetrics, WorkerInfo
from conveyor.ops import Counts, Dedup, Durable, JobSpec, Limits, QueueOptions
from conveyor.queue import Queue
from conveyor.retry import Exponential, Fixed, Immediate
from conveyor.schedules import Schedule, ScheduleEntry
from conveyor.sync_queue import SyncQueue
from conveyor.worker import Handler, JobContext, Worker, WorkerOptions

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AttemptCause",
    "BulkResult",
    "ConfigurationError",
    "ConveyorError",
    "Counts",
    "DeadFilter",
    "DeadImportError",
    "DeadPage",
    "DeadReason",
    "Dedup",
    "Durability",
    "Durable",
    "EmbeddedServerError",
    "ErrorInfo",
    "Event",
    "Exponential",
    "Fixed",
    "Handler",
    "Immediate",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStateError",
    "Limits",
    "MinuteStats",
    "NotDurableError",
    "PayloadError",
    "PermanentError",
    "Queue",
    "QueueBusyError",
    "QueueMetrics",
    "QueueOptions",
    "RateLimited",
    "ResultTimeout",
    "RetryLater",
    "Schedule",
    "ScheduleEntry",
    "ServerUnavailable",
    "SyncQueue",
    "UnsafeServerError",
    "Worker",
    "WorkerFailedError",
    "WorkerInfo",
    "WorkerOptions",
    "WorkerStuckError",
    "__version__",
]
