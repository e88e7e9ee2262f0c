"""Records, inside a worker process, when benchmark jobs start and finish (stdlib only).

Every library's handlers call the same three functions, so completions are measured the same
way everywhere: by the handler itself, with ``time.time()``, and written to a file once the
expected number of jobs has been seen. The harness reads that file; nothing polls the server.

Environment: ``BENCH_OUT`` (file to write), ``BENCH_EXPECT`` (jobs to wait for),
``BENCH_READY`` (file touched by a warm-up job), ``BENCH_RECORD_LINES`` (set where each job
runs in a forked child, as RQ's default worker does: every job appends one line to
``BENCH_OUT.lines`` instead, and the harness counts the lines).
"""

from __future__ import annotations

import json
import os
import threading
import time

_lock = threading.Lock()
_first_start: float | None = None
_ends: list[float] = []
_latencies: list[float] = []
_expect = int(os.environ.get("BENCH_EXPECT", "0") or 0)
_written = False
_lines = os.environ.get("BENCH_RECORD_LINES") == "1"


def _append(line: str) -> None:
    fd = os.open(os.environ["BENCH_OUT"] + ".lines", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def start() -> None:
    """Called first thing in a handler."""
    global _first_start
    if _first_start is None:
        _first_start = time.time()


def done() -> None:
    """Called last thing in a handler."""
    now = time.time()
    if _lines:
        _append(f"{_first_start} {now} -\n")
        return
    with _lock:
        _ends.append(now)
        if len(_ends) >= _expect:
            _write()


def latency(enqueued_at: float) -> None:
    """Called first thing in a latency job's handler with the producer's timestamp."""
    now = time.time()
    if _lines:
        _append(f"{now} {now} {now - enqueued_at}\n")
        return
    with _lock:
        _latencies.append(now - enqueued_at)
        _ends.append(now)
        if len(_ends) >= _expect:
            _write()


def ready() -> None:
    """The warm-up job: tells the harness the worker is up and idle."""
    path = os.environ.get("BENCH_READY")
    if path:
        with open(path, "w") as f:
            f.write(str(time.time()))


def _write() -> None:
    global _written
    if _written or not _expect:
        return
    _written = True
    path = os.environ["BENCH_OUT"]
    with open(path + ".tmp", "w") as f:
        json.dump({"first_start": _first_start, "ends": _ends, "latencies": _latencies}, f)
    os.replace(path + ".tmp", path)


def read_lines(path: str, expect: int) -> dict[str, object] | None:
    """The result of a run recorded as lines, once ``expect`` lines are there (harness side)."""
    try:
        with open(path + ".lines") as f:
            rows = [line.split() for line in f.read().splitlines()]
    except OSError:
        return None
    if len(rows) < expect:
        return None
    return {
        "first_start": min(float(r[0]) for r in rows),
        "ends": [float(r[1]) for r in rows],
        "latencies": [float(r[2]) for r in rows if r[2] != "-"],
    }
