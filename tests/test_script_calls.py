"""Script calls are named: every call site passes exactly the ARGV its script's header declares.

Pure tests (no server): a call site that disagrees with its script fails here, not a job at
run time.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor import dlq_ops, lua, metrics, ops, schedules
from conveyor.dlq_records import CheckedJob
from conveyor.job import JobState
from conveyor.keys import QueueKeys
from conveyor.ops import Command, JobSpec, QueueOptions, ScriptCall, call
from conveyor.worker import calls

SOURCE = Path(conveyor.__file__).parent
KEYS = QueueKeys("calls")
OPTIONS = QueueOptions(dead_letter_queue="elsewhere")
CLAIM = calls.Claim("calls", "j1", "send", b"{}", 1, 3, 30.0, b"", 0, 0, 0, 0, "", "t1", 0)


def _declared(script: lua.Script) -> set[str]:
    return {*script.fixed, *([script.tail] if script.tail else [])}


# --- the builder --------------------------------------------------------------------------


def test_a_call_puts_named_values_in_the_declared_order() -> None:
    made = call("reschedule", KEYS, delay_ms=1500, id="j1", events_maxlen=100)
    assert lua.script("reschedule").arg_names == ("events_maxlen", "id", "delay_ms")
    assert list(made.args) == [100, "j1", 1500]
    assert list(made.keys) == lua.script("reschedule").keys_for(KEYS)


def test_a_variadic_rest_is_passed_by_name_and_flattened_by_its_stride() -> None:
    assert lua.script("drop_dead").stride == 1
    assert list(call("drop_dead", KEYS, events_maxlen=5, ids=["a", "b"]).args) == [5, "a", "b"]
    assert lua.script("release").stride == 2
    made = call("release", KEYS, events_maxlen=5, jobs=[("a", "ta"), ("b", "tb")])
    assert list(made.args) == [5, "a", "ta", "b", "tb"]
    assert list(call("release", KEYS, events_maxlen=5, jobs=[]).args) == [5]


@pytest.mark.parametrize(
    ("name", "argv", "says"),
    [
        ("reschedule", {"events_maxlen": 1, "id": "j"}, "missing ['delay_ms']"),
        ("reschedule", {"events_maxlen": 1, "id": "j", "delay_ms": 0, "delay": 0}, "['delay']"),
        ("reschedule", {"events_maxlen": 1, "job_id": "j", "delay_ms": 0}, "missing ['id']"),
        ("pause", {}, "missing ['events_maxlen']"),
        ("counts", {"events_maxlen": 1}, "unknown ['events_maxlen']"),
        ("drop_dead", {"events_maxlen": 1}, "missing ['ids']"),
        ("drop_dead", {"events_maxlen": 1, "ids": [], "id": "x"}, "unknown ['id']"),
        ("drop_dead", {"events_maxlen": 1, "ids": "abc"}, "ids must be a sequence"),
        ("drop_dead", {"events_maxlen": 1, "ids": 7}, "ids must be a sequence"),
        ("release", {"events_maxlen": 1, "jobs": ["a", "ta"]}, "tuples of 2 values"),
        ("release", {"events_maxlen": 1, "jobs": [("a", "ta", "x")]}, "tuples of 2 values"),
        ("complete", {"events_maxlen": 1, "keep_count": 1, "keep_age_ms": 1,
                      "metrics_ttl_ms": 1, "jobs": [("a", "t", b"1")]}, "tuples of 4 values"),
    ],
)  # fmt: skip
def test_a_missing_unknown_or_misshapen_argument_raises_when_the_call_is_built(
    name: str, argv: dict[str, Any], says: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(says)):
        call(name, KEYS, **argv)


@pytest.mark.parametrize(
    ("declared", "error"),
    [
        (["...ids", "#count"], "must be the last"),
        (["#count", "...jobs*0"], "bad variadic"),
        (["#count", "...jobs*x"], "bad variadic"),
        (["id", "#id"], "repeated"),
        (["a-b"], "bad or repeated"),
    ],
)
def test_the_loader_refuses_a_header_it_could_not_call(declared: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        lua._split_args("broken", declared)


# --- every call site ----------------------------------------------------------------------


def _call_sites() -> list[tuple[str, int, str, ast.Call]]:
    sites = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            called = getattr(node, "func", None)
            if (
                isinstance(node, ast.Call)
                and (
                    (isinstance(called, ast.Name) and called.id == "call")
                    or (isinstance(called, ast.Attribute) and called.attr == "call")
                )
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                where = str(path.relative_to(SOURCE.parent))
                sites.append((where, node.lineno, node.args[0].value, node))
    return sites


def test_every_call_site_passes_exactly_its_scripts_declared_names() -> None:
    sites = _call_sites()
    for where, line, name, node in sites:
        at = f"{where}:{line} call({name!r})"
        assert name in lua.all_script_names(), f"{at}: no such script"
        assert len(node.args) == 2, f"{at}: pass ARGV by name, not by position"
        passed = [keyword.arg for keyword in node.keywords]
        assert None not in passed, f"{at}: spell each ARGV name out (no **)"
        assert sorted(passed) == sorted(_declared(lua.script(name))), (
            f"{at} passes {sorted(passed)}; {name}.lua declares {lua.script(name).arg_names}"
        )
    assert {name for _, _, name, _ in sites} == set(lua.all_script_names()), "a script no one calls"


def test_script_calls_are_made_in_one_place() -> None:
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        made = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name) and n.func.id == "ScriptCall"]  # fmt: skip
        assert not made or path.name == "ops.py", f"{path.name} builds a ScriptCall itself"


def _first_call(op: Any) -> Any:
    """The first script call an operation makes (for operations that start with one)."""
    (first, *_) = [item for item in next(op) if isinstance(item, ScriptCall)]
    return first


def _fire() -> Any:
    schedule = schedules.Schedule(id="s1", name="send", every=60.0)
    return _first_call(schedules._fire(KEYS, OPTIONS, schedule, 60_000, 61.0))


#: Every builder of a script call, with representative values (its variadic rest non-empty).
BUILDERS: dict[str, Callable[[], Any]] = {
    "fetch": lambda: calls.fetch(KEYS, OPTIONS, 10, "w1", "w1.1", 30_000, names=["a", "b"],
                                 unknown_job_grace=60.0),
    "complete": lambda: calls.complete(KEYS, OPTIONS, [("j1", "t1", b"1", 3),
                                                       ("j2", "t2", b"2", 0)]),
    "fail": lambda: calls.fail(KEYS, OPTIONS, CLAIM, retry=True, delay=1.5, reason="error",
                               attempt_record=b"{}", error=b"{}", front=True),
    "report": lambda: calls.report(KEYS, OPTIONS, [("j1", "t1", b"0.5", b"line\n")]),
    "finish_cancelled": lambda: calls.finish_cancelled(KEYS, OPTIONS, CLAIM),
    "rate_limited": lambda: calls.rate_limited(KEYS, OPTIONS, CLAIM, 2.0),
    "release": lambda: calls.release(KEYS, OPTIONS, {"j1": "t1", "j2": "t2"}.items()),
    "extend_locks": lambda: calls.extend_locks(KEYS, 30_000, "w1", 60_000, b"{}", [("j1", "t1")]),
    "recover_stalled": lambda: calls.recover_stalled(KEYS, OPTIONS, 10, "w1", "w1.2", 30_000),
    "enqueue": lambda: _first_call(ops.enqueue_many(KEYS, [JobSpec("send", 1)], OPTIONS)),
    "counts": lambda: _first_call(ops.counts(KEYS)),
    "get_job": lambda: ops.read_job(KEYS, "j1"),
    "list_jobs": lambda: _first_call(ops.list_jobs(KEYS, JobState.DELAYED, 10, 20)),
    "remove": lambda: _first_call(ops.remove(KEYS, "j1", OPTIONS)),
    "cancel": lambda: _first_call(ops.cancel(KEYS, OPTIONS, "j1")),
    "reprioritize": lambda: _first_call(ops.set_priority(KEYS, OPTIONS, "j1", 5)),
    "reschedule": lambda: _first_call(ops.reschedule(KEYS, OPTIONS, "j1", 2.5)),
    "pause": lambda: _first_call(ops.pause(KEYS, OPTIONS)),
    "resume": lambda: _first_call(ops.resume(KEYS, OPTIONS)),
    "drain": lambda: _first_call(ops.drain(KEYS, OPTIONS, 100)),
    "obliterate": lambda: _first_call(ops.obliterate(KEYS, True, 100)),
    "list_dead": lambda: _first_call(
        dlq_ops.list_dead(KEYS, dlq_ops.DeadFilter(reason="error", since=1.0), 0, 10)),
    "replay_dead": lambda: _first_call(dlq_ops.replay(KEYS, OPTIONS, ["j1"], b'"new"')),
    "drop_dead": lambda: _first_call(dlq_ops.drop(KEYS, OPTIONS, ["j1", "j2"])),
    "kill": lambda: _first_call(dlq_ops.kill(KEYS, OPTIONS, "j1")),
    "import_dead": lambda: _first_call(
        dlq_ops.import_batch(KEYS, OPTIONS, [CheckedJob("j1", 1, ["name", "send"])])),
    "fire_schedule": _fire,
}  # fmt: skip


def test_every_script_has_a_builder_here() -> None:
    assert set(BUILDERS) == set(lua.all_script_names())


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_makes_a_call_its_script_accepts(name: str) -> None:
    made = BUILDERS[name]()
    script = lua.script(name)
    assert isinstance(made, ScriptCall)
    assert made.script is script
    assert list(made.keys) == script.keys_for(KEYS)
    rest = len(made.args) - len(script.fixed)
    assert rest >= 0 if script.tail else rest == 0
    assert rest % script.stride == 0, f"{name}: {rest} values in items of {script.stride}"
    for value in made.args:  # what the lean transport sends as is
        assert type(value) in (str, bytes, int), f"{name}: {value!r}"


def test_the_metrics_read_uses_the_counts_script() -> None:
    first = next(metrics.queue_metrics(KEYS))
    assert isinstance(first[0], ScriptCall) and first[0].script.name == "counts"
    assert all(isinstance(item, Command) for item in first[1:])


# --- headers and bodies -------------------------------------------------------------------

_BINDING = re.compile(r"^local \w+ = (tonumber\()?(KEYS|ARGV)\[\d+\]\)?$|^local \w+_start = \d+$")


def _body(script: lua.Script) -> str:
    after_header = script.source.split("]]", 1)[1]
    return "\n".join(line for line in after_header.splitlines() if not _BINDING.match(line))


@pytest.mark.parametrize("name", lua.all_script_names())
def test_every_declared_name_is_used_in_its_scripts_body(name: str) -> None:
    script = lua.script(name)
    body = _body(script)
    for key in script.key_names:
        assert re.search(rf"\b{key}_key\b", body), f"{name}.lua declares key {key}, never uses it"
    for arg in script.fixed:
        assert re.search(rf"\b{arg}\b", body), f"{name}.lua declares ARGV {arg}, never uses it"
    if script.tail:
        assert re.search(rf"\b{script.tail}_start\b", body), f"{name}.lua: unused ...{script.tail}"


@pytest.mark.parametrize("name", lua.all_script_names())
def test_a_variadic_rest_is_read_with_its_declared_stride(name: str) -> None:
    script = lua.script(name)
    body = _body(script)
    walks = rf"\b{script.tail}_start, #ARGV(?:, (\d+))?" if script.tail else r"(?!)"
    assert "#ARGV" not in re.sub(walks, "", body), f"{name}.lua reads #ARGV besides its rest"
    for step in re.findall(walks, body):
        assert int(step or 1) == script.stride, f"{name}.lua walks its rest by {step or 1}"
    header = script.source.split("]]", 1)[0]
    for said in re.findall(rf"\b{script.tail}: (\d+) values per", header):
        assert int(said) == script.stride, f"{name}.lua's header says {said} values per item"
