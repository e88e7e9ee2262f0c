"""Runs one measure of one library and prints one JSON line (run by bench/run.py).

    python bench/drive.py --lib conveyor --measure process --n 20000 --url redis://...

It runs inside the library's own virtual environment; run.py picks the interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import traceback
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import harness  # noqa: E402


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True)
    p.add_argument("--measure", required=True, choices=sorted(harness.MEASURES))
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=300.0)
    return p.parse_args()


async def _main(args: argparse.Namespace) -> dict[str, object]:
    adapter = harness.load_adapter(args.lib, args.url)
    await adapter.connect(args.url)
    measure = harness.MEASURES[args.measure]
    kwargs: dict[str, object] = {"n": args.n, "timeout": args.timeout}
    if args.concurrency:
        kwargs["concurrency"] = args.concurrency
    if args.measure == "latency":
        kwargs.update(rate=args.rate, duration=args.duration)
    try:
        result = await measure(adapter, **kwargs)  # type: ignore[arg-type]
    finally:
        await adapter.close()
    result.update(version=harness.version_of(adapter.dist), notes=adapter.notes)
    return result


def main() -> None:
    args = _parse()
    # run.py ends a measure that overruns with SIGTERM: unwind so the worker is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        out = {"ok": True, **asyncio.run(_main(args))}
    except harness.Unsupported as exc:
        out = {"ok": False, "unsupported": True, "error": str(exc)}
    except Exception as exc:  # reported in the table, the run goes on
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600],
               "traceback": traceback.format_exc()[-3000:]}  # fmt: skip
    print("BENCH_RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
