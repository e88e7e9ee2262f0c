"""Waiting for a job to finish, riding on the event stream (no polling of the job)."""

from __future__ import annotations

import time
from typing import Any

from conveyor.errors import JobCancelled, JobFailed, JobNotFound, ResultTimeout
from conveyor.events import last_event_id, read_events
from conveyor.job import Job, JobState
from conveyor.keys import QueueKeys
from conveyor.ops import Op, get_job
from conveyor.states import TERMINAL

#: The finished states (see :mod:`conveyor.states`).
FINISHED = TERMINAL
#: Events after which the job is looked at again: the event that enters a finished state
#: is named after it, and the job may be deleted.
_FINAL_EVENTS = frozenset({state.value for state in FINISHED} | {"removed", "dropped"})
#: Longest single blocking read; the job is also re-read after a quiet stretch this long,
#: in case its final event was trimmed from the capped stream before it was read.
_BLOCK = 2.0


def wait_for_job(keys: QueueKeys, job_id: str, timeout: float | None) -> Op[Job]:
    """Wait until the job is completed or dead and return it (works if it already is)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    position = yield from last_event_id(keys)  # read before the job: no event can slip by
    job = yield from get_job(keys, job_id)
    while True:
        if job is None:
            raise JobNotFound(f"job {job_id!r} does not exist in queue {keys.queue!r}")
        if job.state in FINISHED:
            return job
        block = _BLOCK
        if deadline is not None:
            block = min(block, deadline - time.monotonic())
            if block <= 0:
                raise ResultTimeout(
                    f"job {job_id!r} did not finish within {timeout:g}s (it is {job.state.value})"
                )
        events = yield from read_events(keys, position, block=block)
        if events:
            position = events[-1].id
        if not events or any(e.job_id == job_id and e.event in _FINAL_EVENTS for e in events):
            job = yield from get_job(keys, job_id)


def unwrap(job: Job) -> Any:
    """The result of a finished job, or :class:`JobFailed` if it died."""
    if job.state is JobState.CANCELLED:
        raise JobCancelled(job, f"job {job.id} ({job.name}) was cancelled")
    if job.state is JobState.DEAD:
        reason = job.dead_reason.value if job.dead_reason else "dead"
        error = f": {job.error.type}: {job.error.message}" if job.error else ""
        raise JobFailed(job, f"job {job.id} ({job.name}) is dead ({reason}){error}")
    return job.result
