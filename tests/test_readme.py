"""Every example of README.md runs as written, in order, as a reader would run them.

The Python blocks run one after another in one namespace (top-level ``await`` allowed),
against a private server named by ``CONVEYOR_URL``, so a block sees what the blocks before
it defined. What the text leaves to the reader is supplied here and nowhere else: ``GIVEN``
(names a block uses that the text only describes) and ``STANDS_FOR`` (placeholders such as
a made-up host or ``JOB_ID``); every entry must still match the README, so neither can go
stale silently. ``Worker.run()`` serves until the worker's queues are idle instead of until
a signal. The ``conveyor`` lines of the shell blocks run through the CLI in-process, except
``conveyor worker``, which would run until stopped: its arguments are only parsed.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.cli import main
from conveyor.cli.worker import worker as worker_command
from tests.cli_runner import invoke
from tests.servers import ServerProcess, valkey

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: Code run before the block that contains the key: the names the text gives the reader
#: in words ("in async code", "your handlers") rather than in code.
GIVEN = {
    "await queue.schedule(": (
        "from conveyor import Queue\n"
        'queue = Queue("emails")  # the asyncio face, "in async code"\n'
        'job = await queue.enqueue("send_welcome", {"to": "bob@example.com"})\n'
    ),
    "await queue.result(": (
        "import asyncio\n"
        "serving = asyncio.create_task(worker.serve())  # the worker of the quickstart\n"
        'job = await queue.enqueue("send_welcome", {"to": "eve@example.com"})\n'
    ),
    "handlers=[charge, report]": (
        "async def charge(ctx, payload): return payload\n"
        "async def report(ctx, payload): return payload\n"
    ),
}
#: Placeholders of the README and the value each stands for here (``url``: the test server).
STANDS_FOR = {"redis+cluster://10.0.0.1:6379": "url", "JOB_ID": "job_id"}


def blocks(language: str) -> list[tuple[int, str]]:
    """The README's code blocks in ``language``, with the line each starts on."""
    text = README.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(2))
        for match in BLOCK.finditer(text)
        if match.group(1) == language
    ]


def substitute(code: str, **values: str) -> str:
    for placeholder, name in STANDS_FOR.items():
        if name in values:
            code = code.replace(placeholder, values[name])
    return code


@pytest.fixture
def private_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    """The README's fixed queue names get a server of their own (skipped on a cluster run)."""
    with valkey(tmp_path / "server") as server:
        monkeypatch.setenv(conveyor.defaults.URL_ENV, server.url)
        monkeypatch.chdir(tmp_path)  # `dlq export` writes its file here
        monkeypatch.setattr(conveyor.Worker, "run", _run_until_idle)
        yield server


def _run_until_idle(self: conveyor.Worker) -> None:
    """``Worker.run`` for the README: serve, in a thread of its own, until nothing is left."""
    thread = threading.Thread(target=asyncio.run, args=(self.serve(),))
    thread.start()
    deadline = time.monotonic() + 60
    try:
        while not all(_idle(name) for name in self.queue_names):
            assert time.monotonic() < deadline, "the README's worker did not finish its jobs"
            time.sleep(0.05)
    finally:
        self.stop()
        thread.join(30)
    assert not thread.is_alive(), "the README's worker did not stop"


def _idle(name: str) -> bool:
    with conveyor.SyncQueue(name) as queue:
        counts = queue.counts()
    return counts.waiting + counts.delayed + counts.active == 0 and counts.completed > 0


def test_every_placeholder_and_given_name_is_still_in_the_readme() -> None:
    code = "\n".join(block for _, block in blocks("python") + blocks("bash"))
    for key in [*GIVEN, *STANDS_FOR]:
        assert key in code, f"tests/test_readme.py supplies {key!r}, no longer in README.md"


async def test_the_python_examples_run_in_order(private_server: ServerProcess) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        for line, block in blocks("python"):
            given = "".join(code for key, code in GIVEN.items() if key in block)
            await _run(given, namespace, f"GIVEN for README.md:{line}")
            await _run(substitute(block, url=private_server.url), namespace, f"README.md:{line}")
    finally:
        if "serving" in namespace:
            namespace["worker"].stop()
            await asyncio.wait_for(namespace["serving"], 30)
        for value in namespace.values():  # the examples leave their queues open
            if isinstance(value, conveyor.Queue):
                await value.close()
    # What the blocks did, read back: the quickstart's jobs ran, the partitioned queue's too.
    async with conveyor.Queue("emails") as emails, conveyor.Queue("orders") as orders:
        assert namespace["value"] == "sent to eve@example.com"
        assert (await orders.counts()).completed == 2
        assert len(await orders.connected_parts()) == 8  # the 8 partitions it declared
        schedules = [entry.schedule.id for entry in await emails.schedules()]
        assert schedules == ["digest"]


async def _run(code: str, namespace: dict[str, Any], where: str) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # the README's own examples
    if inspect.iscoroutine(result):
        await asyncio.wait_for(result, 60)


async def test_the_conveyor_commands_run(private_server: ServerProcess) -> None:
    async with conveyor.Queue("emails") as queue:
        jobs = await queue.enqueue_many([("send_welcome", {"to": f"{n}@example.com"})
                                         for n in range(3)])  # fmt: skip
        for job in jobs:
            assert await queue.dead_letters.kill(job.id)
    commands = [
        (line, args)
        for _, block in blocks("bash")
        for line, args in _conveyor_commands(substitute(block, job_id=jobs[0].id))
    ]
    assert len(commands) >= 8, commands
    for line, args in commands:
        if args[0] == "worker":  # runs until stopped: check that its arguments parse
            worker_command.make_context("worker", args[1:])
            continue
        result = invoke(main, *args, input="y\n")
        assert result.exit_code == 0, f"README.md: {line}\n{result.output}"
    async with conveyor.Queue("emails") as queue:
        replayed = await queue.get_job(jobs[0].id)
        assert replayed is not None and replayed.payload == {"to": "fixed@example.com"}
    assert Path("backup.jsonl").exists()


def _conveyor_commands(block: str) -> Iterator[tuple[str, list[str]]]:
    """Each ``conveyor ...`` command of a shell block (``&&`` chains split), as arguments."""
    for line in block.splitlines():
        for part in line.split("&&"):
            args = shlex.split(part, comments=True)
            if args and args[0] == "conveyor":
                yield part.strip(), args[1:]
