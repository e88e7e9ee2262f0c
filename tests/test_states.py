"""The job states are declared once (conveyor.states): every script and reader that must
handle every state derives from the declaration, and these contracts name any that do not."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor import JobState, connection, lua, partitions, results
from conveyor.dashboard import context
from conveyor.dashboard.app import create_app
from conveyor.keys import QUEUE_KEYS
from conveyor.ops import Counts, parse_counts
from conveyor.states import STATES, StateInfo
from conveyor.transport import SyncTransport
from conveyor.worker import calls
from tests.dashboard.conftest import LOCAL

PACKAGE = Path(conveyor.__file__).parent
#: The scripts that must handle every state (``remove`` every state no worker holds).
EVERY_STATE_SCRIPTS = {"counts": "@states", "list_jobs": "@states", "obliterate": "@states",
                       "remove": "@idle_states"}  # fmt: skip
#: The one module that spells every key, state keys among them (see conveyor.keys).
KEY_LAYOUT = PACKAGE / "keys.py"


def missing_states(states: Sequence[StateInfo]) -> list[str]:
    """Where a state is not handled: ``"file: what"`` for each miss."""
    problems = []
    for info in states:
        if info.key not in QUEUE_KEYS:
            problems.append(f"keys.py: QUEUE_KEYS has no key {info.key!r} for {info.name}")
        if info.name not in Counts.__struct_fields__:
            problems.append(f"ops.py: Counts has no field {info.name!r}")
        for name, group in EVERY_STATE_SCRIPTS.items():
            script = lua.build_script(name)
            wanted = group == "@states" or not info.held
            if wanted and info.key not in script.key_names:
                problems.append(f"lua/{name}.lua: KEYS miss the {info.name} set")
        try:
            partitions.order_of(info.state)
        except KeyError:
            problems.append(f"partitions.py: no merge order for {info.name}")
        if info.name not in context._environment().globals["state_info"]:
            problems.append(f"dashboard/context.py: no state_info for {info.name}")
    return problems


def test_every_script_and_reader_handles_every_state() -> None:
    assert missing_states(STATES) == []
    assert [state.value for state in JobState] == [info.name for info in STATES]


def test_a_new_state_is_named_in_every_file_that_misses_it() -> None:
    blocked: Any = _FakeState()  # the next issue's state, not declared here
    problems = missing_states([dataclasses.replace(STATES[0], state=blocked, key="blocked")])
    for where in ("keys.py", "ops.py", "lua/counts.lua", "lua/list_jobs.lua",
                  "lua/obliterate.lua", "lua/remove.lua", "partitions.py",
                  "dashboard/context.py"):  # fmt: skip
        assert any(p.startswith(f"{where}: ") and "blocked" in p for p in problems), where


class _FakeState:
    value = "blocked"


def test_every_state_script_takes_its_keys_from_the_declaration() -> None:
    for name, group in EVERY_STATE_SCRIPTS.items():
        raw = (PACKAGE / "lua" / f"{name}.lua").read_text()
        assert re.search(rf"^KEYS:.*\s{group}(\s|$)", raw, re.MULTILINE), f"lua/{name}.lua"
        assert "job_state" in raw.split("]]", 1)[1], f"lua/{name}.lua does not use job_states"


def test_no_lua_script_lists_states_by_hand() -> None:
    names = {info.key for info in STATES}
    for path in sorted((PACKAGE / "lua").rglob("*.lua")):
        body = path.read_text().split("]]", 1)[-1]
        for table in re.findall(r"\{[^{}]*\}", body):
            keys = set(re.findall(r"\b(\w+)_key\b", table)) & names
            quoted = set(re.findall(r"'(\w+)'", table)) & names
            assert len(keys) < 3 and len(quoted) < 3, f"{path.relative_to(PACKAGE)}: {table}"
        for line in body.splitlines():
            quoted = set(re.findall(r"'(\w+)'", line)) & names
            assert len(quoted) < 3, f"{path.relative_to(PACKAGE)}: {line}"


def test_no_python_module_or_template_lists_states_by_hand() -> None:
    names = {info.name for info in STATES}
    members = {info.state.name for info in STATES}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in (KEY_LAYOUT, PACKAGE / "states.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                hits = sum(_names_state(item, names, members) for item in items)
                assert hits < 3, f"{path.relative_to(PACKAGE)}:{node.lineno} lists states"
    for path in sorted((PACKAGE / "dashboard" / "templates").glob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            quoted = set(re.findall(r"'(\w+)'", line)) & names
            assert len(quoted) < 3, f"{path.relative_to(PACKAGE)}:{number} lists states"


def _names_state(node: ast.expr | None, names: set[str], members: set[str]) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "value":  # JobState.WAITING.value
        node = node.value
    if isinstance(node, ast.Constant):
        return node.value in names
    return (
        isinstance(node, ast.Attribute)
        and node.attr in members
        and isinstance(node.value, ast.Name)
        and node.value.id == "JobState"
    )


def test_the_readers_derive_from_the_declaration() -> None:
    assert {info.state for info in STATES if info.terminal} == results.FINISHED
    cli_jobs = importlib.import_module("conveyor.cli.jobs")  # the package exports the command
    for info in STATES:
        assert cli_jobs._style(info.state) == info.style  # cancelled has its own style too
    per_state = Counts(1, 2, 3, 4, 5, False, 7, 6).per_state()
    assert list(per_state) == [info.state for info in STATES]


def test_counts_are_name_value_pairs_parsed_by_name() -> None:
    reply: list[Any] = [b"workers", 3, b"paused", 1]
    reply += [value for i, info in enumerate(reversed(STATES)) for value in (info.name, i)]
    counts = parse_counts(reply)
    assert counts.paused is True and counts.workers == 3
    assert counts.per_state() == {info.state: len(STATES) - 1 - i for i, info in enumerate(STATES)}


def test_a_header_may_not_declare_a_key_twice() -> None:
    with pytest.raises(ValueError, match="waiting more than once"):
        lua._expand_keys("broken", ["meta", "@states", "waiting"])


def _one_job_in_every_state(queue: conveyor.SyncQueue, url: str) -> dict[JobState, str]:
    """Put one job in each state: a worker's fetch and completion are sent as scripts."""
    transport = SyncTransport(connection.sync_client(url), url)
    try:
        ids = {}
        for state in (JobState.ACTIVE, JobState.COMPLETED):
            ids[state] = queue.enqueue("work", state.value).id
            fetch = calls.fetch(queue.keys, queue.options, 1, "w", f"w.{state.value}", 60_000,
                                names=["work"], unknown_job_grace=0.0)  # fmt: skip
            (reply,) = transport.execute([fetch])
            (claim,) = calls.parse_fetch(queue.name, reply).claims
        done = calls.complete(queue.keys, queue.options, [(claim.id, claim.token, b"1", 0)])
        assert transport.execute([done]) == [[[], []]]
    finally:
        transport.close()
    ids[JobState.WAITING] = queue.enqueue("work", "waiting").id
    ids[JobState.DELAYED] = queue.enqueue("work", "delayed", delay=600).id
    ids[JobState.DEAD] = queue.enqueue("work", "dead").id
    assert queue.dead_letters.kill(ids[JobState.DEAD])
    ids[JobState.CANCELLED] = queue.enqueue("work", "cancelled").id
    assert queue.cancel(ids[JobState.CANCELLED]) == "cancelled"
    return ids


def test_counts_listings_and_removal_cover_every_state(
    sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    ids = _one_job_in_every_state(sync_queue, server_url)
    assert set(ids) == set(JobState)
    assert sync_queue.counts().per_state() == {state: 1 for state in JobState}
    for state, job_id in ids.items():
        assert [job.id for job in sync_queue.list_jobs(state)] == [job_id], state
    for info in STATES:
        if info.held:
            with pytest.raises(conveyor.JobStateError, match="active"):
                sync_queue.remove(ids[info.state])
        else:
            assert sync_queue.remove(ids[info.state]), info.name
    assert sync_queue.counts().per_state() == {info.state: 1 if info.held else 0 for info in STATES}


def test_the_dashboard_lists_every_state_with_its_column(
    sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    ids = _one_job_in_every_state(sync_queue, server_url)
    app = create_app(server_url, queues=[sync_queue.name])
    with TestClient(app, **LOCAL) as client:
        for info in STATES:
            page = client.get(f"/queues/{sync_queue.name}", params={"state": info.name})
            assert page.status_code == 200, info.name
            assert f"<th>{info.column}</th>" in page.text, info.name
            assert f'data-job="{ids[info.state]}"' in page.text, info.name
            assert f'data-field="counts.{info.name}">1<' in page.text, info.name


def test_an_operator_changes_only_waiting_and_delayed_jobs(
    sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    ids = _one_job_in_every_state(sync_queue, server_url)
    queued = {JobState.WAITING, JobState.DELAYED}
    changes = {
        "kill": sync_queue.dead_letters.kill,
        "set_priority": lambda job_id: sync_queue.set_priority(job_id, 5),
        "reschedule": lambda job_id: sync_queue.reschedule(job_id, 60),
    }
    for name, change in changes.items():
        assert not change("no-such-job"), name
        for state in set(JobState) - queued:
            with pytest.raises(conveyor.JobStateError, match=f"is {state.value}"):
                change(ids[state])
    assert sync_queue.set_priority(ids[JobState.WAITING], 7)
    assert sync_queue.set_priority(ids[JobState.DELAYED], 7)
    assert sync_queue.reschedule(ids[JobState.WAITING], 0)
    assert sync_queue.dead_letters.kill(ids[JobState.DELAYED])
    assert sync_queue.get_job(ids[JobState.DELAYED]).state is JobState.DEAD  # type: ignore[union-attr]
