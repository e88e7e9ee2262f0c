"""The job states, declared once: each state's name, storage key, listing order and kind.

Every reader that must handle every state derives from :data:`STATES`: the counts
(``counts.lua`` returns name/value pairs, :class:`~conveyor.ops.Counts` is parsed by name),
listings (``list_jobs.lua``, the dashboard's pages, the merge order of partitioned pages),
deletion (``remove.lua``, ``obliterate.lua``), results, Prometheus, the CLI and the
dashboard. A Lua script that handles every state says ``@states`` in its KEYS header
(``@idle_states``: every state but those workers hold, for scripts producers may call);
:mod:`conveyor.lua` expands it to those states' keys and binds ``job_states`` (a list of
``{name=, key=, terminal=, newest_first=}`` in this order) and ``job_state`` (by name).
``tests/test_states.py`` names any script or reader that misses a state, and any that
lists states by hand.

Adding a state touches:

- :class:`JobState` and its row of :data:`STATES` here; its key in
  :data:`conveyor.keys.QUEUE_KEYS`; a field of :class:`conveyor.ops.Counts` (an ``int``
  defaulting to 0, at the end, so positional construction keeps working);
- the transition scripts that move jobs into and out of it;
- the places that decide something new about it: which states are queued, so that an
  operator may still change the job (``include/queued.lua``: ``cancel.lua``, ``kill.lua``,
  ``reprioritize.lua``, ``reschedule.lua`` and a debounce in ``include/add_job.lua``),
  which ones ``drain.lua`` empties and ``cancel.lua`` flags for the worker, what
  ``remove.lua`` refuses (active jobs) and ``counts.lua`` adds (waiting jobs of groups);
  for a finished state, its retention (``include/retention.lua``) and what
  :func:`conveyor.results.unwrap` raises; the dashboard's column (``_job_rows.html``) if
  the first attribute of its :attr:`StateInfo.order` is neither a time nor ``priority``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(str, enum.Enum):
    """Where a job is in its lifecycle."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StateInfo:
    """One state: how it is stored, listed, counted and shown."""

    state: JobState
    #: The name (in :data:`conveyor.keys.QUEUE_KEYS`) of the sorted set of its jobs.
    key: str
    #: Finished: the job will not run again unless an operator acts. The set is scored by
    #: expiry time (ms), and a job counts until it expires.
    terminal: bool
    #: Still calls for work: to run, or (dead jobs) an operator's replay or drop. A queue
    #: holding such jobs holds work; the compact ``conveyor status`` table shows these.
    outstanding: bool
    #: A worker holds its jobs under a lock: only worker transitions write its set (the
    #: producer's ACL leaves it out), and ``@idle_states`` in a script's KEYS skips it.
    held: bool
    #: Listed newest first (the set in reverse), not in the order the jobs run or expire.
    newest_first: bool
    #: The :class:`~conveyor.job.Job` attributes that order a listing, a ``-`` marking a
    #: descending one: the order in which partitions' pages are merged. The first is the
    #: one the dashboard shows beside the job.
    order: tuple[str, ...]
    #: The dashboard's heading for that attribute.
    column: str
    #: The rich style of the state's name in the CLI.
    style: str

    @property
    def name(self) -> str:
        return self.state.value


#: Every state, in lifecycle order (the order counts and listings show them).
STATES: tuple[StateInfo, ...] = (
    #         state               key          terminal outstanding held   newest_first
    StateInfo(JobState.WAITING,   "waiting",   False,   True,       False, False,
              order=("-priority", "created_at"), column="Priority", style="cyan"),
    StateInfo(JobState.DELAYED,   "delayed",   False,   True,       False, False,
              order=("due_at",), column="Due", style="blue"),
    StateInfo(JobState.ACTIVE,    "active",    False,   True,       True,  False,
              order=("started_at",), column="Started", style="yellow"),
    StateInfo(JobState.COMPLETED, "completed", True,    False,      False, True,
              order=("-finished_at",), column="Finished", style="green"),
    StateInfo(JobState.DEAD,      "dead",      True,    True,       False, True,
              order=("-finished_at",), column="Died", style="red"),
    StateInfo(JobState.CANCELLED, "cancelled", True,    False,      False, True,
              order=("-finished_at",), column="Finished", style="magenta"),
)  # fmt: skip

#: Each state's row, by state.
STATE_INFO: dict[JobState, StateInfo] = {info.state: info for info in STATES}
#: The finished states.
TERMINAL: frozenset[JobState] = frozenset(info.state for info in STATES if info.terminal)

if [info.state for info in STATES] != list(JobState):  # pragma: no cover - a declaration slip
    raise RuntimeError("conveyor.states.STATES must have one row per JobState, in its order")


def _lua(flag: bool) -> str:
    return "true" if flag else "false"


def lua_table(chosen: tuple[StateInfo, ...]) -> str:
    """The Lua that binds ``job_states`` and ``job_state`` (see the module docstring) to
    the ``chosen`` states, whose keys the script binds."""
    rows = ",\n  ".join(
        f"{{name = '{info.name}', key = {info.key}_key, "
        f"terminal = {_lua(info.terminal)}, newest_first = {_lua(info.newest_first)}}}"
        for info in chosen
    )
    return (
        f"local job_states = {{\n  {rows},\n}}\n"
        "local job_state = {}\n"
        "for _, s in ipairs(job_states) do job_state[s.name] = s end"
    )
