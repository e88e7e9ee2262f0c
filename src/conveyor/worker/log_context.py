"""Puts the running job (id, name, attempt) on every log record, as text or JSON lines."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

#: The job running in this task or thread: (job id, job name, attempt, queue).
current_job: contextvars.ContextVar[tuple[str, str, int, str] | None] = contextvars.ContextVar(
    "conveyor_current_job", default=None
)

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [%(job_name)s %(job_id)s #%(attempt)s] %(message)s"
)


class JobLogFilter(logging.Filter):
    """Adds ``job_id``, ``job_name``, ``attempt`` and ``queue`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        job_id, name, attempt, queue = job if job else ("-", "-", 0, "-")
        for attr, value in (("job_id", job_id), ("job_name", name), ("attempt", attempt),
                            ("queue", queue)):  # fmt: skip
            if not hasattr(record, attr):
                setattr(record, attr, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the job fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", "-"),
            "job_name": getattr(record, "job_name", "-"),
            "attempt": getattr(record, "attempt", 0),
            "queue": getattr(record, "queue", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int | str = logging.INFO, *, json_lines: bool = False) -> None:
    """Log to stderr with the job on every record (``json_lines`` for log shippers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobLogFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
