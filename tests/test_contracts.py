"""Contracts that keep the code honest: scripts, key layout, both faces, public API."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import conveyor
from conveyor import lua
from conveyor.dead_letters import DeadLetters
from conveyor.keys import QUEUE_KEYS, QueueKeys
from conveyor.queue import Queue
from conveyor.sync_dead_letters import SyncDeadLetters
from conveyor.sync_queue import SyncQueue
from tools.unasync import FILES, generate


def test_every_script_declares_known_keys_and_builds() -> None:
    names = lua.all_script_names()
    assert {"enqueue", "fetch", "complete", "fail", "extend_locks", "recover_stalled"} <= set(names)
    for name in names:
        script = lua.build_script(name)
        assert script.key_names, f"{name}.lua declares no keys"
        assert set(script.key_names) <= set(QUEUE_KEYS)
        assert "RETURNS:" in script.source, f"{name}.lua has no RETURNS in its header"


def test_scripts_spell_no_key_names() -> None:
    for name in lua.all_script_names():
        body = lua.build_script(name).source.split("]]", 1)[1]
        assert not re.search(r"['\"]conveyor:", body), f"{name}.lua spells a key"


#: Pieces of Lua that live in one include each, and a pattern that spells each.
LUA_PIECES = {
    "delete_jobs": r"for _, id in ipairs\(\w+\) do\s+redis\.call\('DEL', job_\w+ \.\. id\)",
    "queued": r"state [~=]= 'waiting' (and|or) state [~=]= 'delayed'",
    "let_go": r"redis\.call\('ZREM', active_key, id\) == 0",
}


def test_repeated_lua_pieces_live_in_their_includes() -> None:
    folder = Path(inspect.getfile(lua)).parent / "lua"
    for path in sorted(folder.rglob("*.lua")):
        for include, pattern in LUA_PIECES.items():
            if path.name != f"{include}.lua":
                text = path.read_text()
                assert not re.search(pattern, text), f"{path.name}: use -- @include {include}"


def test_every_key_of_a_queue_shares_its_hash_tag() -> None:
    keys = QueueKeys("emails")
    for name in QUEUE_KEYS:
        assert keys.key(name).startswith("conveyor:{emails}:")
    assert keys.job("abc") == "conveyor:{emails}:job:abc"


def test_the_sync_faces_are_generated_from_the_async_ones() -> None:
    for source, target in FILES.items():
        with open(Path(inspect.getfile(conveyor)).parent / target) as f:
            assert f.read() == generate(source), "run: python tools/unasync.py"


def test_both_faces_expose_the_same_methods_and_parameters() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(Queue) == public(SyncQueue)
    assert public(DeadLetters) == public(SyncDeadLetters)
    for name in ("enqueue", "enqueue_many", "get_job", "counts", "pause", "resume"):
        assert name in public(Queue)
        assert inspect.iscoroutinefunction(getattr(Queue, name))
        assert not inspect.iscoroutinefunction(getattr(SyncQueue, name))


def test_all_is_complete() -> None:
    exported = {
        name
        for name, value in vars(conveyor).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert exported == set(conveyor.__all__) - {"__version__"}
