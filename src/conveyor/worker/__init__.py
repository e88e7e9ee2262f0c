"""The worker: runs the jobs of one or more queues."""

from conveyor.worker.context import JobContext
from conveyor.worker.handlers import Handler
from conveyor.worker.options import WorkerOptions
from conveyor.worker.worker import Worker

__all__ = ["Handler", "JobContext", "Worker", "WorkerOptions"]
