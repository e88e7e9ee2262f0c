"""Contracts that keep the code honest: scripts, key layout, both faces, public API."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
from conveyor import lua
from conveyor.dead_letters import DeadLetters
from conveyor.keys import QUEUE_KEYS, QueueKeys
from conveyor.queue import Queue
from conveyor.sync_dead_letters import SyncDeadLetters
from conveyor.sync_queue import SyncQueue
from conveyor.sync_transport import SyncTransport
from conveyor.transport import AsyncTransport
from tools import unasync
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


def test_the_generator_check_mode_passes_and_writes_nothing() -> None:
    root = Path(unasync.__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "tools/unasync.py", "--check"], cwd=root, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_generator_check_mode_names_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*FILES, *FILES.values()):
        shutil.copy(unasync.PACKAGE / name, tmp_path / name)
    monkeypatch.setattr(unasync, "PACKAGE", tmp_path)
    stale = tmp_path / "sync_transport.py"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    assert unasync.main(["--check"]) == 1
    assert "stale: src/conveyor/sync_transport.py" in capsys.readouterr().err
    assert stale.read_text().endswith("# edited by hand\n")  # --check writes nothing
    assert unasync.main([]) == 0 and unasync.main(["--check"]) == 0


def test_the_generator_fails_on_a_rule_that_matches_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = unasync.Rule("the asyncio face of nothing at all", "x", unasync.QUEUE)
    monkeypatch.setattr(unasync, "RULES", [*unasync.RULES, dead])
    with pytest.raises(unasync.StaleRule, match="the asyncio face of nothing at all"):
        unasync.generate_all()
    assert unasync.main(["--check"]) == 1
    assert "match nothing" in capsys.readouterr().err


def test_generator_rules_replace_whole_words_only() -> None:
    rule = unasync.Rule("Queue", "SyncQueue")
    assert rule.pattern.sub(rule.new, "Queue(QueueBase) queue: Queue") == (
        "SyncQueue(QueueBase) queue: SyncQueue"
    )
    rule = unasync.Rule("await ", "")
    assert rule.pattern.sub(rule.new, "x = await f(); unawait g") == "x = f(); unawait g"


def test_generator_drops_async_only_lines_and_blocks() -> None:
    source = (
        "a\n"
        "b  # unasync: drop\n"
        "    # unasync: begin async-only\n"
        "c\n"
        "    # unasync: end async-only\n"
        "d\n"
    )
    assert unasync._strip_async_only(source, "x.py") == "a\nd\n"
    with pytest.raises(ValueError, match="never ended"):
        unasync._strip_async_only("# unasync: begin async-only\n", "x.py")
    with pytest.raises(ValueError, match="without a begin"):
        unasync._strip_async_only("# unasync: end async-only\n", "x.py")


def test_both_faces_expose_the_same_methods_and_parameters() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(Queue) == public(SyncQueue)
    assert public(DeadLetters) == public(SyncDeadLetters)
    assert public(AsyncTransport) == public(SyncTransport)
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
