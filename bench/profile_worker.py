"""Profile Conveyor's worker on the processing measure with py-spy, and sum where time goes.

    .venv/bin/python bench/profile_worker.py [--jobs 200000] [--concurrency 200] [--py-spy PATH]

py-spy is not a Conveyor dependency: install it anywhere (``pip install py-spy`` in a scratch
venv) and pass its path, or have it on PATH. Writes bench/results/profile-*.txt (collapsed
stacks, loadable in speedscope or flamegraph.pl) and prints a summary by function and area.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR / "adapters")]

from server import BenchServer  # noqa: E402

AREAS = [  # first match wins, tested against "file:function" of a frame
    ("handler + recorder", ("recorder.py", "conveyor_bench.py")),
    ("conveyor worker", ("conveyor/worker/",)),
    ("conveyor core", ("conveyor/",)),
    ("redis-py", ("redis/",)),
    ("hiredis", ("hiredis",)),
    ("msgspec", ("msgspec",)),
    ("asyncio", ("asyncio/",)),
]


#: Stacks left out of the summary: start-up imports, and the recorder writing its file after
#: the last job.
SKIP = ("<frozen importlib", "_write (recorder.py", "json/encoder.py")


def _area(frame: str) -> str:
    for name, needles in AREAS:
        if any(n in frame for n in needles):
            return name
    return "other"


ROOTS = ("Worker.run ", "Worker.serve ", "Session.run ")


def _component(frames: list[str]) -> str:
    """Which part of the worker a sample belongs to: its innermost conveyor frame's function."""
    for f in reversed(frames):
        if "conveyor/" in f and not f.startswith(ROOTS):
            name = f.split(" (")[0]
            return name + " (" + f.split(" (")[1].split(":")[0] + ")"
    leaf = frames[-1]
    if "select (selectors" in leaf:
        return "event loop: waiting in epoll (server round trips, idle)"
    return "event loop: scheduling callbacks/tasks (no Conveyor frame)"


def summarise(path: Path, top: int = 25) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    area_self: collections.Counter[str] = collections.Counter()
    component: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        if any(skip in stack for skip in SKIP):
            continue
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        self_time[leaf] += count
        area_self[_area(leaf)] += count
        for f in set(frames):
            inclusive[f] += count
        component[_component(frames)] += count
    out = [f"{total} samples", "", "self time by area:"]
    out += [f"  {100 * c / total:5.1f}%  {a}" for a, c in area_self.most_common()]
    out += ["", "by component (the innermost Conveyor frame of each sample):"]
    out += [f"  {100 * c / total:5.1f}%  {a}" for a, c in component.most_common()]
    out += ["", "self time, top functions:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_time.most_common(top)]
    conveyor_frames = [(f, c) for f, c in inclusive.most_common() if "conveyor/" in f]
    out += ["", "inclusive time, conveyor functions:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in conveyor_frames[:top]]
    return "\n".join(out)


async def _fill(url: str, n: int) -> None:
    import conveyor

    q = conveyor.Queue("bench", url=url)
    for start in range(0, n, 2000):
        await q.enqueue_many([("noop", {"i": i}) for i in range(start, min(n, start + 2000))])
    await q.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=200_000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = p.parse_args()
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    raw = out_dir / f"profile-{dt.datetime.now():%Y%m%d-%H%M%S}.txt"
    with BenchServer() as server:
        asyncio.run(_fill(server.url, args.jobs))
        done = out_dir / "profile-done.json"
        done.unlink(missing_ok=True)
        path = [str(BENCH_DIR), str(BENCH_DIR / "adapters"), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, BENCH_OUT=str(done), BENCH_EXPECT=str(args.jobs),
                   PYTHONPATH=os.pathsep.join(filter(None, path)))  # fmt: skip
        worker = [sys.executable, "-m", "conveyor_bench", server.url, str(args.concurrency)]
        spy = subprocess.Popen(
            [args.py_spy, "record", "--format", "raw", "--rate", str(args.rate), "--nonblocking",
             "-o", str(raw), "--", *worker],
            env=env, cwd=BENCH_DIR / "adapters",
        )  # fmt: skip
        started = time.time()
        while not done.exists():
            if spy.poll() is not None:
                sys.exit(f"py-spy exited with {spy.returncode}")
            if time.time() - started > 600:
                spy.terminate()
                sys.exit("the worker did not finish in 600 s")
            time.sleep(0.1)
        elapsed = time.time() - started
        import psutil

        for child in psutil.Process(spy.pid).children(recursive=True):
            child.terminate()  # the worker: py-spy writes its file once the target exits
        spy.wait(60)
        done.unlink(missing_ok=True)
    print(f"{args.jobs} jobs in {elapsed:.1f}s under py-spy (slower than unprofiled)\n")
    summary = summarise(raw)
    raw.with_suffix(".summary.txt").write_text(summary)
    print(summary)
    print(f"\ncollapsed stacks: {raw}")


if __name__ == "__main__":
    main()
