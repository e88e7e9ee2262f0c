"""Reading a dashboard request's inputs: job ids, dead-letter filters, flags, pages, states.

Shared by the pages, the form posts and the JSON API, so each input is read, and refused
with one 400 naming it, the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from conveyor import codec, defaults
from conveyor.dashboard import present
from conveyor.dlq_ops import DeadFilter
from conveyor.errors import PayloadError
from conveyor.job import JobState

#: Rows a page of jobs shows unless ``limit`` says otherwise, and the most it may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def int_param(request: Request, name: str, default: int, high: int = 10**12) -> int:
    """A non-negative integer query parameter (400 if it is not one)."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None
    if value < 0:
        raise HTTPException(400, f"{name} must be >= 0")
    return min(value, high)


def limit_param(request: Request) -> int:
    """How many rows a page shows: ``limit`` (at most :data:`MAX_PAGE_SIZE`; 0 or none: the
    default)."""
    return int_param(request, "limit", PAGE_SIZE, MAX_PAGE_SIZE) or PAGE_SIZE


def state_param(request: Request, default: str = "waiting") -> JobState:
    """The ``state`` query parameter (400 if it is not a state)."""
    try:
        return JobState(request.query_params.get("state") or default)
    except ValueError:
        states = ", ".join(s.value for s in JobState)
        raise HTTPException(400, f"state must be one of {states}") from None


def job_name_param(request: Request) -> str:
    """The job name a list is narrowed to (``name``), or empty."""
    return request.query_params.get("name", "").strip()


def dead_filter(params: Mapping[str, Any]) -> DeadFilter:
    """The dead-letter filter among ``params`` (a query, a form or a JSON object); 400 if a
    field is bad."""
    try:
        return present.dead_filter(present.filter_params(params))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def check_ids(ids: list[str]) -> None:
    """Refuse (400) more job ids than one request may name."""
    if len(ids) > defaults.API_MAX_IDS:
        raise HTTPException(400, f"at most {defaults.API_MAX_IDS} job ids per request "
                                 f"(got {len(ids)}); use a filter, or split the ids")  # fmt: skip


def form_ids(form: FormData) -> list[str]:
    """The job ids ticked in a form (empty values skipped); 400 if too many."""
    ids = [value for value in form.getlist("ids") if isinstance(value, str) and value]
    check_ids(ids)
    return ids


def body_ids(body: dict[str, Any]) -> list[str] | None:
    """The ``ids`` of a JSON body, ``None`` when absent; 400 if not a list of ids, or too
    many."""
    ids = body.get("ids")
    if ids is None:
        return None
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise HTTPException(400, '"ids" must be a list of job ids')
    check_ids(ids)
    return ids


def flag(body: dict[str, Any], name: str) -> bool:
    """A boolean member of a request body (``false`` when absent); 400 if not a boolean."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HTTPException(400, f'"{name}" must be true or false (JSON booleans), '
                                 f"not {msgspec.json.encode(value).decode()[:40]}")  # fmt: skip
    return value


def edited_payload(text: str) -> Any:
    """An edited payload typed as JSON (400 if it is not JSON)."""
    try:
        return codec.decode(text)
    except PayloadError as exc:
        raise HTTPException(400, f"the edited payload is {exc}") from None
