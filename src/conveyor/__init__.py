"""Conveyor: a fast, reliable background-job queue for Python on Redis/Valkey."""

from conveyor.dlq_ops import BulkResult, DeadFilter, DeadPage
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    EmbeddedServerError,
    JobNotFound,
    JobStateError,
    NotDurableError,
    PayloadError,
    PermanentError,
    QueueBusyError,
    RetryLater,
    ServerUnavailable,
    UnsafeServerError,
)
from conveyor.job import Attempt, AttemptCause, DeadReason, Durability, ErrorInfo, Job, JobState
from conveyor.ops import Counts, Durable, JobSpec, QueueOptions
from conveyor.queue import Queue
from conveyor.retry import Exponential, Fixed, Immediate
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
    "DeadPage",
    "DeadReason",
    "Durability",
    "Durable",
    "EmbeddedServerError",
    "ErrorInfo",
    "Exponential",
    "Fixed",
    "Handler",
    "Immediate",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStateError",
    "NotDurableError",
    "PayloadError",
    "PermanentError",
    "Queue",
    "QueueBusyError",
    "QueueOptions",
    "RetryLater",
    "ServerUnavailable",
    "SyncQueue",
    "UnsafeServerError",
    "Worker",
    "WorkerOptions",
    "__version__",
]
