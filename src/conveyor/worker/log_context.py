"""Puts the running job (id, name, attempt) on every log record, as text or JSON lines.

Text lines escape control characters (a job id with a newline must not forge a line);
JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import re
import sys
import time

#: The job running in this task or thread: (job id, job name, attempt, queue).
current_job: contextvars.ContextVar[tuple[str, str, int, str] | None] = contextvars.ContextVar(
    "conveyor_current_job", default=None
)

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [%(job_name)s %(job_id)s #%(attempt)s] %(message)s"
)


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Record attributes a text line shows that may hold stored text (ids, names, errors).
_SHOWN = ("message", "job_id", "job_name", "queue", "error_type", "error_message")


def escape_control(text: str) -> str:
    """``text`` with each control character written as an escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT` lines whose message and job fields have their control
    characters escaped, so one record is always one line (a traceback follows it)."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        shown = copy.copy(record)
        for attr in _SHOWN:
            value = getattr(shown, attr, None)
            if isinstance(value, str):
                setattr(shown, attr, escape_control(value))
        return super().formatMessage(shown)


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
        for attr in ("error_type", "error_message"):  # a failed attempt's, a dead job's
            if hasattr(record, attr):
                entry[attr] = getattr(record, attr)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int | str = logging.INFO, *, json_lines: bool = False) -> None:
    """Log to stderr with the job on every record (``json_lines`` for log shippers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobLogFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
