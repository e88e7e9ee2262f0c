"""How one attempt ended (:class:`Outcome`), and the errors that end attempts without a
handler's own exception; shared by the runner, the process pool and the settler."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from conveyor import defaults
from conveyor.errors import ConveyorError
from conveyor.job import AttemptCause, ErrorInfo


@dataclass(slots=True)
class Outcome:
    """How one attempt ended."""

    ok: bool
    result: bytes = b""
    cause: AttemptCause | None = None
    error: BaseException | None = None
    traceback: str = ""
    #: The job's concurrency slot was given back already (at its timeout).
    slot_freed: bool = False
    duration: float = 0.0
    #: The job was cancelled while it ran: it ends as cancelled, not completed or retried.
    cancelled: bool = False

    def error_info(self) -> ErrorInfo:
        exc = self.error
        message = str(exc) if exc is not None else ""
        return ErrorInfo(
            type=type(exc).__name__ if exc is not None else "Error",
            message=message[: defaults.MAX_ERROR_MESSAGE_CHARS],
            traceback=self.traceback[-defaults.MAX_TRACEBACK_CHARS :],
        )


def failed(cause: AttemptCause, exc: BaseException, with_traceback: bool = True) -> Outcome:
    """The outcome of an attempt that ended with ``exc``."""
    text = "".join(traceback.format_exception(exc)) if with_traceback else ""
    return Outcome(False, cause=cause, error=exc, traceback=text)


class JobTimeoutError(ConveyorError, TimeoutError):
    """The handler ran longer than the job's timeout."""
