"""Generate the sync modules from the async ones, so the twins can never drift.

Run ``python tools/unasync.py`` after editing an async source (``FILES`` below: the queue,
its dead-letter set, the transport); ``python tools/unasync.py --check`` writes nothing and
exits 1 naming every generated file that is stale (the test suite runs it).

How a module is turned into its sync twin:

1. Lines between ``# unasync: begin async-only`` and ``# unasync: end async-only`` are
   dropped (the marker lines too), and so is any line holding ``# unasync: drop``: for what
   only an event loop needs (a watchdog timer, keeping a cancellation a cancellation).
2. Each rule of ``RULES`` replaces a name or phrase wherever it stands as whole words: a
   rule's edges that are word characters must meet word boundaries (``\\b``), so
   ``"Queue"`` never rewrites ``"QueueBase"`` or ``"queue"``. Rules apply in order, so a
   longer phrase comes before the words it contains.
3. A rule that no longer matches anything in the files it applies to is an error: when a
   source changes so that a rule is dead, this script fails instead of rotting silently.
   Delete or fix the rule then.

To add a generated module: add ``"source.py": "sync_source.py"`` to ``FILES`` and the
rules it needs (with the files they apply to, or ``ALL``); keep the async source free of
anything a rule cannot turn into its sync counterpart (put such logic in a shared I/O-free
module, as ``conveyor.wire``, or behind a ``conveyor.compat`` pair of functions).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "conveyor"

#: async source -> generated sync module
FILES = {
    "queue.py": "sync_queue.py",
    "dead_letters.py": "sync_dead_letters.py",
    "transport.py": "sync_transport.py",
}
ALL = tuple(FILES)
QUEUE = ("queue.py",)
DLQ = ("dead_letters.py",)
FACES = ("queue.py", "dead_letters.py")
TRANSPORT = ("transport.py",)

DROP = "# unasync: drop"
BEGIN = "# unasync: begin async-only"
END = "# unasync: end async-only"


@dataclass(frozen=True)
class Rule:
    old: str
    new: str
    files: tuple[str, ...] = ALL

    @property
    def pattern(self) -> re.Pattern[str]:
        head = r"\b" if self.old[:1].isalnum() or self.old[:1] == "_" else ""
        tail = r"\b" if self.old[-1:].isalnum() or self.old[-1:] == "_" else ""
        return re.compile(head + re.escape(self.old) + tail)


RULES = [
    # Docstrings that say which face this is.
    Rule(
        '"""The asyncio face of a queue\'s dead-letter set',
        '"""The synchronous face of a queue\'s dead-letter set',
        DLQ,
    ),
    Rule('"""The asyncio face of a queue', '"""The synchronous face of a queue', QUEUE),
    Rule("used from asyncio code.", "used from synchronous code (Django, Flask, scripts).", QUEUE),
    Rule("on a redis-py client (asyncio)", "on a blocking redis-py client", TRANSPORT),
    Rule("with an asyncio client", "with a blocking client", TRANSPORT),
    Rule(
        "This module is the source of :mod:`conveyor.sync_transport`",
        "This module is generated from :mod:`conveyor.transport`",
        TRANSPORT,
    ),
    # The faces' names.
    Rule(
        "from conveyor.dead_letters import DeadLetters",
        "from conveyor.sync_dead_letters import SyncDeadLetters",
        QUEUE,
    ),
    Rule("DeadLetters", "SyncDeadLetters", FACES),
    Rule("class Queue", "class SyncQueue", QUEUE),
    Rule("-> Queue:", "-> SyncQueue:", QUEUE),
    # Waiting: asyncio against threads and time.
    Rule("self._connecting = asyncio.Lock()", "self._connecting = threading.Lock()", QUEUE),
    Rule(
        "await asyncio.to_thread(connection.resolve_url, self._url)",
        "connection.resolve_url(self._url)",
        QUEUE,
    ),
    Rule("import asyncio\n", "import threading\n", FACES),
    Rule("import asyncio\n", "import time\n", TRANSPORT),
    Rule("asyncio.sleep", "time.sleep", TRANSPORT),
    # redis-py's async client against its blocking one.
    Rule("import redis.asyncio\n", "import redis\n"),
    Rule("redis.asyncio.RedisCluster", "redis.RedisCluster", (*QUEUE, *TRANSPORT)),
    Rule("redis.asyncio.Redis", "redis.Redis"),
    Rule("AsyncTransport", "SyncTransport"),
    Rule("AsyncClient", "SyncClient", TRANSPORT),
    Rule("connection.async_client", "connection.sync_client", QUEUE),
    Rule("connection.aclose", "connection.close", TRANSPORT),
    Rule("compat.AsyncConnection", "compat.SyncConnection", TRANSPORT),
    Rule("compat.async_open", "compat.sync_open", TRANSPORT),
    Rule("compat.async_send", "compat.sync_send", TRANSPORT),
    Rule("compat.async_release", "compat.sync_release", TRANSPORT),
    Rule("wire.AsyncGate", "wire.SyncGate", TRANSPORT),
    # The language.
    Rule("AsyncIterator", "Iterator", FACES),
    Rule("async def __aenter__", "def __enter__", QUEUE),
    Rule("async def __aexit__", "def __exit__", QUEUE),
    Rule("async with ", "with "),
    Rule("async def ", "def "),
    Rule("await ", ""),
]


class StaleRule(Exception):
    """A rule matches nothing in the files it applies to."""


def _strip_async_only(source: str, source_name: str) -> str:
    kept: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{source_name}:{number}: {BEGIN} inside another")
            inside = True
        elif marker == END:
            if not inside:
                raise ValueError(f"{source_name}:{number}: {END} without a begin")
            inside = False
        elif not inside and DROP not in line:
            kept.append(line)
    if inside:
        raise ValueError(f"{source_name}: {BEGIN} is never ended")
    return "".join(kept)


def _convert(source_name: str, used: set[int]) -> str:
    source = _strip_async_only((PACKAGE / source_name).read_text(), source_name)
    for index, rule in enumerate(RULES):
        if source_name not in rule.files:
            continue
        source, count = rule.pattern.subn(rule.new.replace("\\", "\\\\"), source)
        if count:
            used.add(index)
    header = f"# Generated by tools/unasync.py from {source_name}: edit that file, not this one.\n"
    return header + source


def generate(source_name: str = "queue.py") -> str:
    """The sync module generated from the async module ``source_name``."""
    return _convert(source_name, set())


def generate_all() -> dict[str, str]:
    """Every generated module by name; raises StaleRule if a rule matched nothing."""
    used: set[int] = set()
    out = {target: _convert(source, used) for source, target in FILES.items()}
    stale = [RULES[i] for i in range(len(RULES)) if i not in used]
    if stale:
        lines = "\n".join(f"  {rule.old!r} (in {', '.join(rule.files)})" for rule in stale)
        raise StaleRule(f"unasync rules that match nothing (fix or delete them):\n{lines}")
    return out


def stale_files() -> list[str]:
    """The generated modules whose text differs from what this script makes."""
    return [
        target
        for target, text in generate_all().items()
        if not (PACKAGE / target).exists() or (PACKAGE / target).read_text() != text
    ]


def main(argv: list[str]) -> int:
    try:
        if argv == ["--check"]:
            stale = stale_files()
            for target in stale:
                sys.stderr.write(f"stale: src/conveyor/{target} (run: python tools/unasync.py)\n")
            return 1 if stale else 0
        if argv:
            sys.stderr.write("usage: python tools/unasync.py [--check]\n")
            return 2
        for target, text in generate_all().items():
            path = PACKAGE / target
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                sys.stdout.write(f"wrote {path}\n")
    except (StaleRule, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
