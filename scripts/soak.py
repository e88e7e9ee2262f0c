"""Soak: the fault scenarios of ``tests/faults`` at larger counts; prints one table.

Not run in CI. Every scenario gets a private embedded Valkey server in a temporary folder,
reached over its unix socket (nothing listens on a network port), and real worker
processes (``tests.faults.worker_app``). Each scenario has a deadline and the whole run a
budget, so it stops by itself::

    .venv/bin/python scripts/soak.py            # the full soak (about 3 minutes)
    .venv/bin/python scripts/soak.py --quick    # the CI counts, to try the script
    .venv/bin/python scripts/soak.py --only churn memory

Exits 1 if any scenario broke an invariant (a job lost, an unexplained duplicate, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import conveyor  # noqa: E402
from tests.faults.common import Report  # noqa: E402
from tests.faults.harness import LOCK_TTL, STALL_CHECK_INTERVAL, Ledger, PrivateServer, Workers  # noqa: E402
from tests.faults.server_scenarios import bounded_memory, server_crash, server_outage  # noqa: E402
from tests.faults.worker_scenarios import churn, clock_skew, poison  # noqa: E402


@dataclass
class Stage:
    """What one scenario runs on: its own server, queue, workers and ledger."""

    server: PrivateServer
    queue: conveyor.Queue
    workers: Workers


Scenario = Callable[[Stage], Awaitable[Report]]


def scenarios(quick: bool) -> dict[str, tuple[Scenario, float]]:
    """Each scenario with its deadline in seconds; ``quick`` uses the CI counts."""
    n = 1 if quick else 10
    producers = 3 if quick else 6

    async def crash_sigkill(s: Stage) -> Report:
        return await server_crash(
            s.server, s.workers, how="SIGKILL", producers=producers, before=30 * n, after=30 * n
        )

    async def crash_nosave(s: Stage) -> Report:
        return await server_crash(
            s.server, s.workers, how="SHUTDOWN NOSAVE", producers=producers, before=30 * n,
            after=30 * n,
        )  # fmt: skip

    async def outage(s: Stage) -> Report:
        return await server_outage(s.server, s.workers, producers=producers, between=30 * n)

    async def poison_input(s: Stage) -> Report:
        return await poison(s.queue, s.workers, copies=n, good=5 if quick else 20)

    async def skew(s: Stage) -> Report:
        return await clock_skew(s.queue, s.workers, copies=2 * n)

    async def worker_churn(s: Stage) -> Report:
        jobs, chaos = (2_000, 10.0) if quick else (10_000, 60.0)
        return await churn(s.queue, s.workers, jobs=jobs, chaos_seconds=chaos)

    async def memory(s: Stage) -> Report:
        return await bounded_memory(s.server, s.workers, jobs=20_000 if quick else 100_000)

    return {
        "crash-sigkill": (crash_sigkill, 300),
        "crash-nosave": (crash_nosave, 300),
        "outage": (outage, 300),
        "poison": (poison_input, 300),
        "skew": (skew, 300),
        "churn": (worker_churn, 600),
        "memory": (memory, 600),
    }


async def run_one(name: str, scenario: Scenario, deadline: float, folder: Path) -> Report:
    folder.mkdir(parents=True)
    server = await asyncio.to_thread(PrivateServer, folder / "valkey")
    queue_name = f"soak-{name}-{uuid.uuid4().hex[:6]}"
    workers = Workers(server.url, queue_name, Ledger(folder / "executions.log"), folder)
    started = time.monotonic()
    try:
        async with conveyor.Queue(queue_name, url=server.url) as queue:
            report = await asyncio.wait_for(scenario(Stage(server, queue, workers)), deadline)
    except Exception as exc:  # a failed check or a deadline: one row that says so
        report = Report(name, 0, 0, 0, None, violations=[f"{type(exc).__name__}: {exc}"])
        workers.reap_all()
        with contextlib.redirect_stdout(sys.stderr):
            workers.dump_logs()  # the temporary folder goes when the run ends
    finally:
        workers.reap_all()
        server.close()
    report.notes += f"; took {time.monotonic() - started:.0f}s"
    print(report.line(), file=sys.stderr, flush=True)
    return report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"{memory:.0f} GiB RAM, Python {platform.python_version()}"
    )


def table(reports: list[Report]) -> str:
    rows = [
        "| scenario | jobs | lost | duplicated | recovery | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        recovery = "-" if r.recovery is None else f"{r.recovery:.1f} s"
        rows.append(
            f"| {r.scenario} | {r.jobs} | {r.lost} | {r.duplicated} | {recovery} | {r.notes} |"
        )
    return "\n".join(rows)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the CI counts (a few minutes)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    parser.add_argument("--budget", type=float, default=20.0, help="minutes for the whole run")
    args = parser.parse_args(argv)
    chosen = scenarios(args.quick)
    unknown = set(args.only or ()) - set(chosen)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {sorted(chosen)}")
    budget_ends = time.monotonic() + args.budget * 60
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-soak-") as tmp:
        probe = PrivateServer(Path(tmp) / "probe")
        version = probe.info.version
        probe.close()
        for name, (scenario, deadline) in chosen.items():
            if args.only and name not in args.only:
                continue
            left = budget_ends - time.monotonic()
            if left <= 0:
                reports.append(Report(name, 0, 0, 0, None, "skipped: out of time budget"))
                continue
            reports.append(await run_one(name, scenario, min(deadline, left), Path(tmp) / name))
    print(f"Machine: {machine()}; Valkey {version} (embedded), appendfsync everysec.")
    print(f"Workers: lock TTL {LOCK_TTL:g} s, stall check every {STALL_CHECK_INTERVAL:g} s, "
          f"concurrency 10-20; counts: {'quick (CI)' if args.quick else 'soak'}.\n")  # fmt: skip
    print(table(reports))
    broken = [(r.scenario, v) for r in reports for v in r.violations]
    for scenario, violation in broken:
        print(f"VIOLATION in {scenario}: {violation}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
