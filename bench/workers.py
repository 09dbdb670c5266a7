"""One wide flow on 1, 2 and 4 worker processes (issue 11): how celeryflow scales, beside plain Celery.

Each size starts that many ``celery worker -P prefork -c 1`` processes on one broker
and logbook, then interleaves, run by run, an unordered flow of ``n`` no-op atoms and a
plain ``group`` of ``n`` no-ops on the same workers. The report gives the medians, the
speed-up over one process, and the ratio to the plain group at each size: if finishing
atoms of one flow queued behind a hot lock (the flow row), celeryflow's ratio would grow
with the number of processes while the plain group's times fell.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs

if TYPE_CHECKING:
    from bench.runner import Results

SIZES = (1, 2, 4)


def run_workers(results: Results, logbook_kind: str, logbook: str, broker: str, tmp: Path) -> None:
    """Fill ``results.workers[logbook_kind]``: size -> case -> wall seconds per run."""
    from bench.runner import Session, bench_app, log

    plan = results.plan
    n = plan.unordered
    env = {"CELERYFLOW_BROKER_URL": broker, "CELERYFLOW_BACKEND": logbook, "CELERYFLOW_IMPORTS": "bench.atoms"}
    app = bench_app(env)
    out: dict[str, dict[str, list[float]]] = {}
    results.workers[logbook_kind] = out
    for size in SIZES[:2] if plan.quick else SIZES:  # a smoke run: just that it works
        workers = [procs.Worker(env, tmp / "logs", concurrency=1, name=f"{logbook_kind}-x{size}-{i}")
                   for i in range(size)]
        try:
            for worker in workers:
                worker.start()
            session = Session(app, broker, plan.timeout)
            session.flow("unordered", 40 if plan.quick else 200)  # warm-up: connections, imports
            session.plain("group", 40 if plan.quick else 200)
            times = out.setdefault(str(size), {})
            for _ in range(plan.runs):
                times.setdefault(f"unordered {n}", []).append(session.flow("unordered", n))
                times.setdefault(f"group {n}", []).append(session.plain("group", n))
            log(f"  {logbook_kind} x{size} worker processes: "
                + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items()))
        finally:
            for worker in workers:
                worker.stop()


def render(results: Results) -> list[str]:
    """The report's section (empty when the part did not run)."""
    data: dict[str, Any] = getattr(results, "workers", {}) or {}
    if not data:
        return []
    n = results.plan.unordered
    lines = [
        "## One wide flow on 1, 2 and 4 worker processes (issue 11)",
        "",
        f"An unordered flow of {n:,} no-op atoms and a plain `group` of {n:,} no-ops, interleaved run by run on "
        "the same `celery worker -P prefork -c 1` processes (medians; this machine has 2 cores, so 4 processes "
        "can only show whether contention grows, not more speed).",
        "",
        "| logbook | processes | celeryflow | plain group | ratio | celeryflow speed-up vs 1 | group speed-up vs 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, sizes in data.items():
        base_flow = base_group = None
        for size, times in sorted(sizes.items(), key=lambda kv: int(kv[0])):
            flow = statistics.median(times.get(f"unordered {n}", [0.0]) or [0.0])
            group = statistics.median(times.get(f"group {n}", [0.0]) or [0.0])
            base_flow = base_flow or flow
            base_group = base_group or group
            ratio = flow / group if group else float("nan")
            lines.append(f"| {kind} | {size} | {flow:.3f} s | {group:.3f} s | {ratio:.2f}× | "
                         f"{base_flow / flow if flow else float('nan'):.2f}× | "
                         f"{base_group / group if group else float('nan'):.2f}× |")
    lines.append("")
    return lines
