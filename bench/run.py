"""Conveyor's benchmark against the Python peers, on one private Valkey server.

    .venv/bin/python bench/run.py                      # everything, median of 3
    .venv/bin/python bench/run.py --quick              # one repeat, smaller n
    .venv/bin/python bench/run.py --peers none         # Conveyor alone
    .venv/bin/python bench/run.py --peers rq,arq --measures process,latency
    .venv/bin/python bench/run.py --peers none --sweep 50,200,500   # best concurrency

Prints a table per measure and writes JSON (and a Markdown copy) to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR)]

import peers_env  # noqa: E402
import report  # noqa: E402
from server import BenchServer, ceiling  # noqa: E402

#: Row name -> (adapter module[:variant], needs the peers' venv)
LIBRARIES: dict[str, tuple[str, bool]] = {
    "conveyor": ("conveyor", False),
    "conveyor-sync": ("conveyor:sync", False),
    "rq": ("rq", True),
    "rq-simple": ("rq:simple", True),
    "arq": ("arq", True),
    "saq": ("saq", True),
    "celery": ("celery", True),
    "dramatiq": ("dramatiq", True),
    "huey": ("huey", True),
    "taskiq": ("taskiq", True),
    "bullmq": ("bullmq", True),
    "docket": ("docket", True),
}
#: Rows that only make sense for some measures (the others are skipped for them).
ONLY: dict[str, set[str]] = {"conveyor-sync": {"enqueue_one", "enqueue_bulk"}}
MEASURES = ["enqueue_one", "enqueue_bulk", "process", "latency", "sleep", "memory"]
ONCE = {"memory"}  # deterministic enough to measure once


def _sizes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    quick = args.quick
    return {
        "enqueue_one": {"n": 1000 if quick else 5000, "timeout": 120},
        "enqueue_bulk": {"n": 5000 if quick else 20000, "timeout": 120},
        "process": {"n": args.jobs or (5000 if quick else 20000), "timeout": 120 if quick else 420},
        "latency": {"rate": 200, "duration": 2.0 if quick else 5.0, "timeout": 90},
        "sleep": {"n": 2000, "concurrency": 100, "timeout": 90},
        "memory": {"n": 10_000 if quick else 100_000, "timeout": 240},
    }


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one repeat, smaller n")
    p.add_argument("--peers", default="all", help="all | none | comma list, e.g. rq,arq,huey")
    p.add_argument("--measures", default=",".join(MEASURES), help="comma list of measures")
    p.add_argument("--jobs", type=int, default=None, help="jobs for the processing measure")
    p.add_argument("--repeat", type=int, default=None, help="repeats per measure (default 3)")
    p.add_argument("--concurrency", type=int, default=None, help="override every library's")
    p.add_argument(
        "--sweep",
        default=None,
        help="comma list of concurrencies: run only the processing measure at each",
    )
    p.add_argument("--no-ceiling", action="store_true", help="skip the server-ceiling measure")
    p.add_argument(
        "--conveyor-ref",
        default=None,
        help="measure Conveyor as of this git commit (exported to a temporary folder)\n"
        "instead of the working tree",
    )
    return p.parse_args()


def _selected(spec: str) -> list[str]:
    if spec == "all":
        return list(LIBRARIES)
    if spec == "none":
        return ["conveyor", "conveyor-sync"]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        sys.exit(f"unknown libraries: {unknown}; known: {', '.join(LIBRARIES)}")
    return ["conveyor", "conveyor-sync", *[n for n in names if not n.startswith("conveyor")]]


def _reap(run_id: str) -> None:
    """End every process still carrying this run's id (a worker a failed measure left)."""
    import psutil

    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get("BENCH_RUN_ID") == run_id:
                proc.kill()
        except (psutil.Error, OSError):
            continue


def _export_ref(ref: str, into: Path) -> str:
    """``git archive`` Conveyor's src/ at ``ref`` into ``into``; returns the commit's short id."""
    root = BENCH_DIR.parent
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=root, check=True,
                            capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=root, check=True,
                             capture_output=True, timeout=60).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return commit


def _run_one(lib: str, measure: str, url: str, params: dict[str, Any], run_id: str,
             python: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    module, _ = LIBRARIES[lib]
    timeout = float(params.get("timeout", 300))
    argv = [python, str(BENCH_DIR / "drive.py"), "--lib", module, "--measure", measure,
            "--url", url]  # fmt: skip
    for key, value in params.items():
        argv += [f"--{key}", str(value)]
    env = dict(os.environ, BENCH_RUN_ID=run_id, PYTHONUNBUFFERED="1", **(extra_env or {}))
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        result = {"ok": False, "error": f"timed out after {timeout + 60:.0f}s"}
    else:
        lines = [line for line in out.splitlines() if line.startswith("BENCH_RESULT ")]
        if lines:
            result = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
        else:
            result = {"ok": False, "error": f"exit {proc.returncode}: {err.strip()[-500:]}"}
    finally:
        _reap(run_id)
    result["elapsed_s"] = time.monotonic() - started
    return result


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True,
                          timeout=10)  # fmt: skip
    return done.stdout.strip()


def _machine(server: BenchServer, libs: list[str]) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "?"
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "../src")
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    import redis

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "valkey": server.version,
        "redis_py_conveyor": redis.__version__,
        "conveyor_commit": commit + ("+dirty" if dirty else ""),
        "libraries": libs,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        first = runs[0] if runs else {}
        return {"ok": False, "error": first.get("error", "no run"),
                "unsupported": bool(first.get("unsupported"))}  # fmt: skip
    values = [r["value"] for r in ok]
    out: dict[str, Any] = {
        "ok": True, "median": statistics.median(values), "min": min(values), "max": max(values),
        "unit": ok[0]["unit"], "runs": len(ok), "failed_runs": len(runs) - len(ok),
        "version": ok[0].get("version"), "notes": ok[0].get("notes", ""),
    }  # fmt: skip
    skip = {"ok", "value", "unit", "version", "notes", "elapsed_s"}
    for key in ok[0]:
        if key not in skip and isinstance(ok[0][key], (int, float)):
            out[key] = statistics.median(r[key] for r in ok if key in r)
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds: measures are reaped, the server is stopped


def _peer_failures(libs: list[str]) -> dict[str, str]:
    """Install the peers' environments; {row: error} for the rows whose install failed."""
    modules = sorted({LIBRARIES[lib][0].split(":")[0] for lib in libs if LIBRARIES[lib][1]})
    failed = peers_env.ensure(modules) if modules else {}
    return {lib: failed[m] for lib in libs if (m := LIBRARIES[lib][0].split(":")[0]) in failed}


def _python_of(lib: str) -> str:
    module, is_peer = LIBRARIES[lib]
    return str(peers_env.python(module.split(":")[0])) if is_peer else sys.executable


def _measure(measure: str, libs: list[str], server: BenchServer, params: dict[str, Any],
             reps: int, ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Run one measure for every row, the repeats interleaved (drift hits every row alike)."""
    name = measure.partition("@")[0]
    rows = [lib for lib in libs if name in ONLY.get(lib, {name})]
    raw: dict[str, list[dict[str, Any]]] = {lib: [] for lib in rows}
    for rep in range(reps):
        for lib in rows:
            if lib in ctx["broken"]:
                continue
            server.flush()
            extra = ctx["conveyor_env"] if lib.startswith("conveyor") else None
            r = _run_one(lib, name, server.url, params, ctx["run_id"], _python_of(lib), extra)
            raw[lib].append(r)
            status = f"{r['value']:,.2f} {r['unit']}" if r.get("ok") else r["error"][:100]
            print(f"  {measure:14} {lib:13} #{rep + 1}: {status}  ({r['elapsed_s']:.1f}s)",
                  flush=True)  # fmt: skip
    summary = {lib: ({"ok": False, "error": ctx["broken"][lib]} if lib in ctx["broken"]
                     else _summarise(raw[lib])) for lib in rows}  # fmt: skip
    return summary, raw


def _write(results: dict[str, Any]) -> None:
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    text = json.dumps(results, indent=2)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    (out_dir / "latest.md").write_text(report.markdown(results))
    print(f"\nwrote {path} and {out_dir / 'latest.md'}")


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    args = _parse()
    libs = _selected(args.peers)
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    if args.sweep:
        measures = [f"process@{c}" for c in args.sweep.split(",")]
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = _sizes(args)
    ctx: dict[str, Any] = {"run_id": uuid.uuid4().hex, "broken": _peer_failures(libs),
                           "conveyor_env": {}}  # fmt: skip
    results: dict[str, Any] = {"measures": {}, "raw": {}, "repeat": repeat, "quick": args.quick,
                               "sizes": sizes}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="conveyor-ref-") as snapshot, BenchServer() as server:
        results["machine"] = _machine(server, libs)
        if args.conveyor_ref:
            commit = _export_ref(args.conveyor_ref, Path(snapshot))
            ctx["conveyor_env"]["PYTHONPATH"] = str(Path(snapshot) / "src")
            results["machine"]["conveyor_commit"] = f"{commit} (--conveyor-ref {args.conveyor_ref})"
        report.print_machine(results["machine"])
        if not args.no_ceiling and not args.sweep:
            print("measuring the server ceiling ...", flush=True)
            results["ceiling"] = ceiling(server)
            report.print_ceiling(results["ceiling"])
        for measure in measures:
            name, _, conc = measure.partition("@")
            params = dict(sizes[name])
            if conc or args.concurrency:
                params["concurrency"] = int(conc or args.concurrency)
            reps = 1 if name in ONCE else repeat
            summary, raw = _measure(measure, libs, server, params, reps, ctx)
            results["measures"][measure], results["raw"][measure] = summary, raw
            report.print_measure(measure, summary)
        server.flush()
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if not args.sweep:
        report.print_summary(results)
    _write(results)


if __name__ == "__main__":
    main()
