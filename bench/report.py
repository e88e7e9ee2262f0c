"""Turns benchmark results into tables: rich (or plain) in the terminal, Markdown on disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: measure -> (title, higher is better)
TITLES: dict[str, tuple[str, bool]] = {
    "enqueue_one": ("Enqueue one at a time (awaiting each), jobs/s", True),
    "enqueue_bulk": ("Bulk enqueue (library's bulk API), jobs/s", True),
    "process": ("Processing n queued no-op jobs, one worker process, jobs/s", True),
    "latency": ("Enqueue-to-start latency at 200 jobs/s, idle worker, ms", False),
    "sleep": ("2,000 jobs sleeping 10 ms at concurrency 100: wall time, s (ideal 0.2 s)", False),
    "memory": ("Server memory per 100k waiting jobs, MB", False),
}


def _num(v: float | None, digits: int | None = None) -> str:
    if v is None or v != v:
        return "-"
    if digits is None:
        digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    return f"{v:,.{digits}f}"


def ratio(measure: str, conveyor: dict[str, Any], peer: dict[str, Any], key: str = "median") -> str:
    """How many times better Conveyor is than ``peer`` (>1: Conveyor wins)."""
    base = measure.partition("@")[0]
    higher = TITLES.get(base, ("", True))[1]
    if not (conveyor.get("ok") and peer.get("ok")) or peer is conveyor:
        return "-" if peer is not conveyor else "1.00x"
    c, p = conveyor.get(key), peer.get(key)
    if not c or not p:
        return "-"
    r = c / p if higher else p / c
    return f"{r:,.1f}x" if r >= 10 else f"{r:,.2f}x"


def _failure(s: dict[str, Any]) -> str:
    if s.get("unsupported"):
        return "n/a: " + s.get("error", "")
    return "FAILED: " + str(s.get("error", ""))[:90]


def _rows(measure: str, summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    base = measure.partition("@")[0]
    conv = summary.get("conveyor", {})
    rows: list[list[str]] = []
    if base == "latency":
        head = ["library", "p50", "p95", "p99", "p50 range", "Conveyor better by (p50/p99)",
                "version"]  # fmt: skip
    elif base == "process":
        head = ["library", "jobs/s", "range", "Conveyor better by", "concurrency", "start-up s",
                "worker RSS MB", "last ack after last handler, ms", "n", "version"]  # fmt: skip
    elif base == "sleep":
        head = ["library", "wall s", "range", "x ideal", "Conveyor better by", "version"]
    elif base == "memory":
        head = ["library", "MB / 100k jobs", "bytes/job", "Conveyor better by", "n", "version"]
    else:
        head = ["library", "jobs/s", "range", "Conveyor better by", "version"]
    for lib, s in summary.items():
        if not s.get("ok"):
            rows.append([lib, _failure(s)] + [""] * (len(head) - 2))
            continue
        # another face of Conveyor gets no ratio against itself
        conv = {} if lib.startswith("conveyor-") else summary.get("conveyor", {})
        rng = f"{_num(s['min'])}-{_num(s['max'])}"
        ver = str(s.get("version") or "")
        if base == "latency":
            r = f"{ratio(measure, conv, s)} / {ratio(measure, conv, s, 'p99_ms')}"
            rows.append([lib, _num(s["p50_ms"], 2), _num(s["p95_ms"], 2), _num(s["p99_ms"], 2),
                         f"{_num(s['min'], 2)}-{_num(s['max'], 2)}", r, ver])  # fmt: skip
        elif base == "process":
            rows.append([lib, _num(s["median"]), rng, ratio(measure, conv, s),
                         _num(s.get("concurrency"), 0), _num(s.get("startup_s"), 2),
                         _num(s.get("rss_mb"), 0), _num(s.get("ack_lag_ms"), 1),
                         _num(s.get("n"), 0), ver])  # fmt: skip
        elif base == "sleep":
            rows.append([lib, _num(s["median"], 2), f"{_num(s['min'], 2)}-{_num(s['max'], 2)}",
                         _num(s.get("vs_ideal"), 2), ratio(measure, conv, s), ver])  # fmt: skip
        elif base == "memory":
            rows.append([lib, _num(s["median"], 1), _num(s.get("bytes_per_job"), 0),
                         ratio(measure, conv, s), _num(s.get("n"), 0), ver])  # fmt: skip
        else:
            rows.append([lib, _num(s["median"]), rng, ratio(measure, conv, s), ver])
    return head, rows


def _printer() -> Callable[[str, list[str], list[list[str]]], None]:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:

        def plain(title: str, head: list[str], rows: list[list[str]]) -> None:
            widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
            print(f"\n{title}")
            for line in [head, *rows]:
                print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))

        return plain
    import sys

    console = Console(width=None if sys.stdout.isatty() else 160)

    def fancy(title: str, head: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    return fancy


def print_measure(measure: str, summary: dict[str, Any]) -> None:
    head, rows = _rows(measure, summary)
    title = TITLES.get(measure.partition("@")[0], (measure, True))[0]
    if "@" in measure:
        title += f" (concurrency {measure.partition('@')[2]})"
    _printer()(title, head, rows)


def print_summary(results: dict[str, Any]) -> None:
    """The one-line-per-library summary, as printed at the end of a run."""
    lines = _summary_table(results).splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    _printer()("Summary (in brackets: how many times better Conveyor is)", rows[0], rows[2:])


def print_machine(machine: dict[str, Any]) -> None:
    print(f"{machine['date']}  {machine['nproc']} cores, {machine['cpu']}, Python "
          f"{machine['python']}, Valkey {machine['valkey']} (TCP loopback), "
          f"conveyor {machine['conveyor_commit']}", flush=True)  # fmt: skip


def print_ceiling(c: dict[str, float]) -> None:
    _printer()(
        "Server ceiling (redis-py, no queue library)", ["measure", "value"], _ceiling_rows(c)
    )


def _ceiling_rows(c: dict[str, float]) -> list[list[str]]:
    return [
        ["pipelined EVALSHA of `return 1` (sync redis-py, 1000/pipeline)",
         f"{_num(c['pipelined_evalsha_per_s'])} calls/s"],
        ["same with redis.asyncio", f"{_num(c['async_pipelined_evalsha_per_s'])} calls/s"],
        ["sequential EVALSHA (one round trip each)",
         f"{_num(c['sequential_evalsha_per_s'])} calls/s"],
        ["PING round trip p50 / p99",
         f"{c['ping_rtt_p50_ms']:.3f} / {c['ping_rtt_p99_ms']:.3f} ms"],
    ]  # fmt: skip


# --- Markdown --------------------------------------------------------------------------


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(str(x).replace("|", "/") for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_table(results: dict[str, Any]) -> str:
    m = results["measures"]
    libs: list[str] = results["machine"]["libraries"]
    Cell = Callable[[dict[str, Any]], str]
    cols: list[tuple[str, str, Cell, bool]] = [
        ("enqueue_one", "enqueue 1-by-1 jobs/s", lambda s: _num(s["median"]), True),
        ("enqueue_bulk", "bulk enqueue jobs/s", lambda s: _num(s["median"]), True),
        ("process", "processing jobs/s", lambda s: _num(s["median"]), True),
        ("latency", "latency p50 / p99 ms",
         lambda s: f"{_num(s['p50_ms'], 2)} / {_num(s['p99_ms'], 2)}", False),
        ("sleep", "sleep workload s", lambda s: _num(s["median"], 2), True),
        ("memory", "MB / 100k waiting", lambda s: _num(s["median"], 1), True),
        ("process", "worker RSS MB", lambda s: _num(s.get("rss_mb"), 0), False),
    ]  # fmt: skip
    cols = [c for c in cols if c[0] in m]
    head = ["library"] + [c[1] for c in cols]
    rows = []
    for lib in libs:
        row = [lib]
        for measure, _, fmt, with_ratio in cols:
            if lib not in m[measure]:
                row.append("-")
                continue
            s = m[measure][lib]
            if not s.get("ok"):
                row.append("n/a" if s.get("unsupported") else "failed")
                continue
            cell = fmt(s)
            r = ratio(measure, m[measure].get("conveyor", {}), s)
            if not lib.startswith("conveyor") and with_ratio and r != "-":
                cell += f" ({r})"
            row.append(cell)
        rows.append(row)
    return _md_table(head, rows)


def markdown(results: dict[str, Any]) -> str:
    mc = results["machine"]
    parts = [
        f"Measured {mc['date']} on {mc['nproc']} cores ({mc['cpu']}), {mc['platform']}, "
        f"Python {mc['python']}, Valkey {mc['valkey']} on TCP loopback (append-only file on, "
        f"fsync every second), conveyor {mc['conveyor_commit']}. "
        f"Median of {results['repeat']} runs per measure (memory: one run). Load average "
        f"(1/5/15 min) at start {mc.get('load_average_at_start', '?')}, at end "
        f"{mc.get('load_average_at_end', '?')}: the harness shares the machine's cores with "
        "the server and anything else running, so read the ratios rather than the absolutes.",
        "",
    ]
    if "ceiling" in results:
        ceiling = _md_table(["measure", "value"], _ceiling_rows(results["ceiling"]))
        parts += ["### Server ceiling", "", ceiling, ""]
    parts += ["### Summary (in brackets: how many times better Conveyor is)", "",
              _summary_table(results), ""]  # fmt: skip
    for measure, summary in results["measures"].items():
        head, rows = _rows(measure, summary)
        title = TITLES.get(measure.partition("@")[0], (measure, True))[0]
        parts += [f"### {title}", "", _md_table(head, rows), ""]
    notes = {lib: s.get("notes") for sm in results["measures"].values() for lib, s in sm.items()
             if s.get("ok") and s.get("notes")}  # fmt: skip
    if notes:
        parts += ["### Settings recorded by each adapter", ""]
        parts += [f"- **{lib}**: {note}" for lib, note in notes.items()]
        parts.append("")
    return "\n".join(parts)


if (
    __name__ == "__main__"
):  # re-render a results file: python bench/report.py bench/results/latest.json
    import json
    import sys
    from pathlib import Path

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
