"""Time the building of the hot-path script calls (no server): fetch, complete, fail, enqueue.

    .venv/bin/python bench/script_calls.py [--number 200000]

Prints microseconds per call built, best of 5 timeit repeats. Building a call is pure Python
(ordering ARGV, binding the queue's keys), so this measures only that, not the round trip.
"""

from __future__ import annotations

import argparse
import timeit
from typing import Any

from conveyor.keys import QueueKeys
from conveyor.ops import JobSpec, QueueOptions, enqueue_many
from conveyor.worker import calls

KEYS = QueueKeys("bench")
OPTIONS = QueueOptions()
NAMES = ["send_email", "resize", "charge"]
CLAIM = calls.Claim("bench", "job-1", "send_email", b"{}", 1, 3, 30.0, b"", 0, 0, 0, 0, "", "t", 0)
DONE = [(f"job-{i}", f"token-{i}", b'"ok"', 3) for i in range(10)]
SPECS = [JobSpec("send_email", {"to": "a@example.com"}, id="fixed")]


def build_fetch() -> Any:
    return calls.fetch(KEYS, OPTIONS, 10, "w1", "w1.7", 30_000, names=NAMES, unknown_job_grace=60)


def build_complete() -> Any:
    return calls.complete(KEYS, OPTIONS, DONE)


def build_fail() -> Any:
    return calls.fail(KEYS, OPTIONS, CLAIM, retry=True, delay=1.5, reason="error",
                      attempt_record=b"{}", error=b"{}")  # fmt: skip


def build_enqueue() -> Any:
    return next(enqueue_many(KEYS, SPECS, OPTIONS))  # the first round trip: the script call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    number = parser.parse_args().number
    for name, build in [("fetch", build_fetch), ("complete (10 jobs)", build_complete),
                        ("fail", build_fail), ("enqueue (1 job)", build_enqueue)]:  # fmt: skip
        n = number // 10 if build is build_enqueue else number
        best = min(timeit.repeat(build, number=n, repeat=5)) / n
        print(f"{name:<20} {best * 1e6:7.3f} us")


if __name__ == "__main__":
    main()
