"""Rendering the results as docs/benchmarks.md (and a short table for the terminal)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.runner import Results

LOGBOOK_TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def med(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def fmt_s(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def fmt_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def spread(values: list[float] | None) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return "1 run"
    return f"{len(values)} runs, {min(values):.3f}–{max(values):.3f}"


# --------------------------------------------------------------------------- derived figures


def remote_pairs(results: Results) -> list[tuple[str, str, str]]:
    """(flow case, peer case, label) for the main table."""
    p = results.plan
    u, s, lg = p.unordered, p.linear_short, p.linear_long
    return [
        (f"unordered {u}", f"group {u}", f"unordered {u:,} vs `group` of {u:,}"),
        (f"linear {s}", f"chain {s}", f"linear {s:,} vs `chain` of {s:,}"),
        (f"linear {lg}", f"chain {lg}", f"linear {lg:,} vs `chain` of {lg:,}"),
        (f"dag {p.dag}", "bound", f"random DAG {p.dag:,} vs critical-path bound"),
    ]


def dag_bound(results: Results, kind: str) -> tuple[float | None, float | None, float | None]:
    """(bound, path term, throughput term) from the plain peers of the same session."""
    p = results.plan
    times = results.remote.get(kind, {})
    chain = med(times.get(f"chain {p.linear_short}"))
    group = med(times.get(f"group {p.unordered}"))
    if chain is None or group is None:
        return None, None, None
    path = results.dag["critical_path"] * chain / p.linear_short
    throughput = results.dag["atoms"] * group / p.unordered
    return max(path, throughput), path, throughput


def peer_time(results: Results, kind: str, peer: str) -> float | None:
    if peer == "bound":
        return dag_bound(results, kind)[0]
    return med(results.remote.get(kind, {}).get(peer))


def taskflow_key(flow_case: str) -> str:
    return flow_case


def per_atom_counts(results: Results, kind: str, case: str) -> dict[str, Any] | None:
    data = results.counts.get(kind, {}).get(case)
    if not data:
        return None
    n = data["atoms"]
    worker = data["worker"]
    c = worker["counts"]
    statements = worker["statements"]
    data_statements = sum(v for k, v in statements.items() if k.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE"))
    tasks = sum(v for k, v in c.items() if k.startswith("tasks:"))
    return {
        "atoms": n,
        "tasks": tasks,
        "transactions": c.get("transactions", 0) / n,
        "spec_loads": statements.get("SELECT celeryflow_flows.spec", 0),
        "steady": (c.get("transactions", 0) - statements.get("SELECT celeryflow_flows.spec", 0)) / n,
        "background": sum(v for k, v in c.items() if k.startswith("transactions_background")),
        "commits": c.get("commits", 0) / n,
        "rollbacks": c.get("rollbacks", 0) / n,
        "statements": data_statements / n,
        "all_statements": c.get("statements", 0) / n,
        "checkouts": c.get("pool_checkouts", 0) / n,
        # each statement, and BEGIN/COMMIT/ROLLBACK outside autocommit (psycopg sends each alone)
        "round_trips": c.get("round_trips", 0) / n,
        "by_kind": {k: v / n for k, v in sorted(statements.items(), key=lambda kv: -kv[1])},
        "published": worker["published"],
        "published_bytes_per_atom": worker["published_bytes"] / n,
        "published_max": worker["published_max"],
        "submitter": data["submitter"],
    }


def marginal_transactions(results: Results, kind: str) -> float | None:
    """Worker transactions per additional atom: (linear long − linear short) ÷ the atoms between them.

    Once-per-flow work (each pool process reading the flow's spec, a schema check, a heartbeat
    tick) cancels out; what is left is the cost of one more atom on the success path."""
    p = results.plan
    short = results.counts.get(kind, {}).get(f"linear {p.linear_short}")
    long = results.counts.get(kind, {}).get(f"linear {p.linear_long}")
    if not short or not long:
        return None
    def atom_path(data: dict[str, Any]) -> int:
        counts = data["worker"]["counts"]
        background = sum(v for k, v in counts.items() if k.startswith("transactions_background"))
        return int(counts.get("transactions", 0)) - background

    return float(atom_path(long) - atom_path(short)) / (p.linear_long - p.linear_short)


def targets(results: Results) -> list[tuple[str, str, str]]:
    """(target, measured, status) rows."""
    p = results.plan
    rows: list[tuple[str, str, str]] = []

    def status(ok: bool | None, gap: str = "") -> str:
        if ok is None:
            return "not measured"
        return "**met**" if ok else f"**gap** {gap}".rstrip()

    for kind in results.remote:
        title = LOGBOOK_TITLES.get(kind, kind)
        for flow_case, peer, limit, label in (
            (f"unordered {p.unordered}", f"group {p.unordered}", 1.5,
             f"unordered {p.unordered:,} ≤ 1.5× plain group"),
            (f"linear {p.linear_short}", f"chain {p.linear_short}", 1.5,
             f"linear {p.linear_short:,} ≤ 1.5× plain chain"),
        ):
            r = ratio(med(results.remote[kind].get(flow_case)), peer_time(results, kind, peer))
            stretch = "" if r is None or r > 1.2 else " (and ≤ 1.2× stretch)"
            gap = "" if r is None else f"({r / limit:.1f}× over the limit)"
            rows.append((f"{label} ({title} logbook)", fmt_x(r), status(None if r is None else r <= limit, gap)
                         + ("" if r is None or r > limit else stretch)))
    for kind in results.remote:
        title = LOGBOOK_TITLES.get(kind, kind)
        speedups = []
        for flow_case in (f"linear {p.linear_short}", f"unordered {p.unordered}", f"linear {p.linear_long}",
                          f"dag {p.dag}"):
            tf = med(results.taskflow.get(f"{flow_case} +sqlite"))
            cf = med(results.remote[kind].get(flow_case))
            if tf is not None and cf:
                speedups.append((flow_case, tf / cf))
        if speedups:
            worst = min(speedups, key=lambda s: s[1])
            measured = ", ".join(f"{case}: {s:.1f}×" for case, s in speedups)
            rows.append((f"≥ 5× faster than TaskFlow + SQLite logbook (celeryflow on {title})", measured,
                         status(worst[1] >= 5, f"({worst[0]} is {worst[1]:.1f}×)")))
        else:
            rows.append((f"≥ 5× faster than TaskFlow + SQLite logbook (celeryflow on {title})", "—", status(None)))
    for kind in results.remote:
        title = LOGBOOK_TITLES.get(kind, kind)
        growth = ratio(med(results.remote[kind].get(f"linear {p.linear_long}")),
                       med(results.remote[kind].get(f"linear {p.linear_short}")))
        expected = p.linear_long / p.linear_short
        limit = expected * 1.1
        rows.append((f"linear growth t({p.linear_long:,})/t({p.linear_short:,}) ≤ {limit:g} ({title})",
                     "—" if growth is None else f"{growth:.1f}",
                     status(None if growth is None else growth <= limit)))
    for kind in results.counts:
        title = LOGBOOK_TITLES.get(kind, kind)
        marginal = marginal_transactions(results, kind)
        parts = []
        for case in results.counts[kind]:
            pa = per_atom_counts(results, kind, case)
            if pa is not None:
                parts.append(f"{case}: {pa['transactions']:.3f}")
        measured = ("—" if marginal is None else f"**{marginal:.3f}** per extra atom (linear {p.linear_short:,} → "
                    f"{p.linear_long:,}, heartbeat-thread transactions left out); per flow: " + ", ".join(parts))
        rows.append((f"≤ 2 logbook transactions per atom on the success path ({title})", measured,
                     status(None if marginal is None else round(marginal, 3) <= 2.0,
                            "" if marginal is None else f"({marginal:.3f})")))
        if kind == "postgresql":
            trips = [(case, pa["round_trips"]) for case in results.counts[kind]
                     if (pa := per_atom_counts(results, kind, case)) is not None and pa.get("round_trips")]
            worst = max(trips, key=lambda t: t[1]) if trips else None
            rows.append(("≤ 6 round trips per atom on the success path (PostgreSQL; issue 11)",
                         ", ".join(f"{case}: {v:.2f}" for case, v in trips) or "—",
                         status(None if worst is None else worst[1] <= 6.0,
                                "" if worst is None else f"({worst[0]}: {worst[1]:.2f})")))
    for key, row in results.scale.items():
        if not key.endswith(f" {p.scale}") or key.startswith(("plain", "first")):
            continue
        kind, shape, _ = key.split()
        title = LOGBOOK_TITLES.get(kind, kind)
        rows.append((f"{p.scale:,} atoms start in < 1 s ({shape}, {title})", fmt_s(row["total"]),
                     status(row["total"] < 1.0, f"({row['total']:.1f} s; dispatch {row['dispatch']:.1f} s)")))
    firsts = [(int(k.split()[-1]), v) for k, v in results.scale.items() if k.startswith("first dispatch linear")]
    lin_scale = results.scale.get(f"sqlite linear {p.scale}")
    if lin_scale:
        firsts.append((p.scale, lin_scale))
    if firsts:
        firsts.sort()
        measured = "largest message: " + ", ".join(f"linear {n:,}: {v['largest']:,} B" for n, v in firsts)
        # flows longer than two chains: the first message must not grow with the flow
        long_ones = [v["largest"] for n, v in firsts if n >= 32] or [v["largest"] for _, v in firsts[-2:]]
        bounded = max(long_ones) <= min(long_ones) * 1.2
        whole = []
        for kind in results.counts:
            for case in (f"linear {p.linear_short}", f"linear {p.linear_long}"):
                pa = per_atom_counts(results, kind, case)
                if pa:
                    whole.append((kind, case, pa["published_bytes_per_atom"]))
        if whole:
            measured += "; whole runs, bytes published per atom: " + ", ".join(
                f"{case} ({LOGBOOK_TITLES.get(kind, kind)}) {b:,.0f} B" for kind, case, b in whole)
            values = [b for *_, b in whole]
            bounded = bounded and max(values) <= min(values) * 1.5
        rows.append(("broker bytes per atom bounded (no message grows with flow length)", measured,
                     status(bounded)))
    return rows


# --------------------------------------------------------------------------- what limits it


def _cpu_side(results: Results, kind: str, case: str, side: str) -> float | None:
    runs = results.cpu.get(kind, {}).get(case)
    if not runs:
        return None
    return statistics.median([r.get(side, 0.0) for r in runs])


def limits(results: Results, add: Any) -> None:
    """The measured gaps and what limits them, from this run's figures."""
    p = results.plan
    add("## What limits it (from this run's figures)")
    add("")
    sides = ("worker pool", "submitter", "worker consumer", "postgresql")
    for kind in results.cpu:
        title = LOGBOOK_TITLES.get(kind, kind)
        for flow_case, peer in ((f"unordered {p.unordered}", f"group {p.unordered}"),
                                (f"linear {p.linear_short}", f"chain {p.linear_short}")):
            n = int(flow_case.split()[-1])
            parts = []
            for side in sides:
                a, b = _cpu_side(results, kind, flow_case, side), _cpu_side(results, kind, peer, side)
                if a is None or b is None:
                    continue
                parts.append(f"{side} {(a - b) / n * 1000:+.1f} ms")
            wall_a, wall_b = med(results.remote[kind].get(flow_case)), med(results.remote[kind].get(peer))
            if parts and wall_a and wall_b:
                add(f"* **{title}, {flow_case}** vs plain {peer}: {(wall_a - wall_b) / n * 1000:+.1f} ms wall per "
                    f"atom; CPU per atom: {', '.join(parts)}.")
    add("")
    for kind in results.counts:
        title = LOGBOOK_TITLES.get(kind, kind)
        pa = per_atom_counts(results, kind, f"unordered {p.unordered}")
        pl = per_atom_counts(results, kind, f"linear {p.linear_long}")
        if pa and pl:
            sub = pa["submitter"]["counts"]
            add(f"* **{title} logbook work**: a worker runs {pa['transactions']:.2f} transactions and "
                f"{pa['statements']:.1f} statements per atom of an unordered flow, {pl['statements']:.1f} per atom of "
                f"a linear one ({pl['checkouts']:.1f} pool checkouts per atom, no pre-ping"
                + f"); the submitting process runs {sub.get('transactions', 0) / pa['atoms']:.2f} transactions per "
                "atom "
                "while it follows the flow (see the submitter table).")
    sq = results.floor.get("sqlite celeryflow")
    sc = results.floor.get("sqlite core")
    pq = results.floor.get("postgresql celeryflow")
    pc = results.floor.get("postgresql core")
    if sq and sc:
        text = (f"* **Statement overhead**: the two worker transactions take {sq['cpu_ms']:.2f} ms CPU per atom on "
                f"SQLite in one process; the same statements through SQLAlchemy Core take {sc['cpu_ms']:.2f} ms")
        if pq and pc:
            text += f" (PostgreSQL: {pq['wall_ms']:.2f} vs {pc['wall_ms']:.2f} ms wall)"
        add(text + " — see *The logbook's per-atom floor*.")
    pg_counts = per_atom_counts(results, "postgresql", f"linear {p.linear_long}")
    pg_floor = results.floor.get("postgresql core")
    chain_runs = results.remote.get("postgresql", {}).get(f"chain {p.linear_short}")
    if pg_counts and pg_floor and chain_runs:
        # counted by the workers (statements + BEGIN/COMMIT outside autocommit); older runs: estimated
        trips = pg_counts.get("round_trips") or pg_counts["statements"] + 2 * pg_counts["transactions"]
        hop = med(chain_runs) / p.linear_short * 1000
        add(f"* **PostgreSQL round trips**: an atom of a linear flow costs {pg_counts['statements']:.1f} statements "
            f"in {pg_counts['transactions']:.0f} transactions, {trips:.1f} round trips with BEGIN and COMMIT "
            "(psycopg sends each on its own; the claim is one autocommit statement, the finish two statements "
            "in one transaction: runtime/fastpath_pg.py). A pared-down version of the older statements (lock, "
            "compare-and-set, count, event: 7 statements in 2 transactions) through SQLAlchemy Core, in one "
            "process with nothing else running, "
            f"takes {pg_floor['wall_ms']:.2f} ms per atom (the floor table): {pg_floor['wall_ms'] / hop:.0%} of a "
            f"whole plain Celery chain hop here ({hop:.2f} ms). On PostgreSQL the logbook alone costs most of the "
            "Celery hop it records, which is what keeps the PostgreSQL ratios above 1.5x on this machine.")
    for key, prof in results.profiles.items():
        busy = {k: v for k, v in prof["categories"].items() if not k.startswith("idle")}
        total = sum(busy.values())
        if not total:
            continue
        top = sorted(busy.items(), key=lambda kv: -kv[1])[:3]
        add(f"* **Worker pool, {key}** (py-spy): busy {total * 100:.0f}% of the time; of that, "
            + ", ".join(f"{name} {v / total * 100:.0f}%" for name, v in top) + ".")
    group_peer = results.scale.get(f"plain group {p.unordered}")
    for key, row in results.scale.items():
        if key.endswith(f"unordered {p.scale}") and group_peer:
            messages = max(1, int(row.get("messages") or p.scale))
            add(f"* **First dispatch of {p.scale:,} ready atoms ({key.split()[0]})**: {row['dispatch']:.2f} s for "
                f"{messages:,} messages (the dispatch window; the other {p.scale - messages:,} atoms are held in the "
                f"logbook and queued as the flow drains) = {row['dispatch'] / messages * 1000:.2f} ms per message "
                "including the start transaction; a plain `group.apply_async()` of "
                f"{p.unordered:,} costs {group_peer['dispatch'] / p.unordered * 1000:.2f} ms per message.")
    add("")


# --------------------------------------------------------------------------- rendering


def summary_table(results: Results) -> str:
    lines = ["", "case | celeryflow | peer | ratio", "---|---|---|---"]
    for kind in results.remote:
        for flow_case, peer, label in remote_pairs(results):
            cf = med(results.remote[kind].get(flow_case))
            pt = peer_time(results, kind, peer)
            lines.append(f"{label} [{kind}] | {fmt_s(cf)} | {fmt_s(pt)} | {fmt_x(ratio(cf, pt))}")
    for target, measured, state in targets(results):
        lines.append(f"TARGET {target}: {measured} -> {state}")
    return "\n".join(lines)


def render(results: Results, elapsed: float) -> str:
    p = results.plan
    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add("celeryflow against the plain Celery canvas it replaces and against OpenStack TaskFlow, "
        "measured side by side in the same run (issue 7). **This file is generated by "
        "`python -m bench`**; edit `bench/report.py`, not this file.")
    add("")
    if p.quick:
        add("> **Smoke run (`--quick`)**: tiny flows, one run each. The figures below say nothing about "
            "performance; run `python -m bench` for the real ones.")
        add("")
    add("## How to run")
    add("")
    add("```sh")
    add("pip install -r bench/requirements.txt     # TaskFlow 6.x, py-spy: bench-only")
    add("python -m bench                           # everything, ~15 minutes on 2 cores; writes this file")
    add("python -m bench --quick --output /tmp/b.md   # smoke run (seconds)")
    add("python -m bench --only remote,counts --no-taskflow   # a subset")
    add("python -m bench --from-json results.json # re-render from a run saved with --json")
    add("```")
    add("")
    add("Needs Redis at 127.0.0.1:6379 (a private db is claimed with the test suite's lock protocol) and, for "
        "the PostgreSQL columns, PostgreSQL at `CELERYFLOW_BENCH_POSTGRES_URL` (default "
        "`postgresql://postgres@127.0.0.1:5432/test`; a fresh schema per session). The runner starts its own "
        "workers and stops them by pid.")
    add("")
    add("## Where and when")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| measured | {results.started} → {results.finished} ({elapsed / 60:.1f} min) |")
    add(f"| code | `{results.commit}` |")
    for key, value in results.machine.items():
        add(f"| {key} | {value or '—'} |")
    lb, la = results.load_before, results.load_after
    add(f"| load average | {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f} before, {la[0]:.2f} / {la[1]:.2f} / "
        f"{la[2]:.2f} after (other work shared the 2 cores) |")
    runs_text = (f"medians of {p.runs} runs ({p.short_runs} for the {p.linear_short}-atom cases); TaskFlow: "
                 f"{p.taskflow_runs_small} runs for the small flows, {p.taskflow_runs_large} for the big ones "
                 "(and for unordered with its logbook: about a minute each)")
    add(f"| repetitions | {runs_text} |")
    add("| workers | one `celery -A celeryflow_tasks worker -P prefork -c 2 --without-gossip --without-mingle "
        "--without-heartbeat` per session, the stock app from `celeryflow_tasks.app.make_app` (acks late, "
        "prefetch 1, JSON, task events on); the plain Celery peers are `bench.noop` on the same app, run by the "
        "same worker, interleaved run by run with the celeryflow cases |")
    add("| plain peers' completion | each no-op `INCR`s a Redis counter; the bench polls it every 2 ms (no result "
        "backend, the cheapest way for plain Celery to know it is done). celeryflow cases are "
        "`engines.run(flow, app=app)`: compile, persist, dispatch, execute, and follow the logbook until SUCCESS |")
    add("")

    # ---- targets
    add("## Targets")
    add("")
    add("| target (issue 7) | measured | status |")
    add("|---|---|---|")
    for target, measured, state in targets(results):
        add(f"| {target} | {measured} | {state} |")
    add("")

    limits(results, add)

    # ---- main table
    add("## celeryflow vs plain Celery vs TaskFlow")
    add("")
    kinds = list(results.remote)
    header = ["case"]
    for kind in kinds:
        header += [f"celeryflow ({LOGBOOK_TITLES.get(kind, kind)} logbook)"]
    header += ["plain Celery peer"] + [f"ratio ({LOGBOOK_TITLES.get(k, k)})" for k in kinds]
    header += ["TaskFlow parallel, no logbook", "TaskFlow + SQLite logbook"]
    header += [f"TaskFlow+SQLite ÷ celeryflow ({LOGBOOK_TITLES.get(k, k)})" for k in kinds]
    add("| " + " | ".join(header) + " |")
    add("|" + "---|" * len(header))
    for flow_case, peer, label in remote_pairs(results):
        row = [label]
        cfs = [med(results.remote[k].get(flow_case)) for k in kinds]
        row += [fmt_s(v) for v in cfs]
        peers = [peer_time(results, k, peer) for k in kinds]
        peer_values = [v for v in peers if v is not None]
        peer_text = " / ".join(fmt_s(v) for v in peers) if len(set(peer_values)) > 1 else fmt_s(
            peer_values[0] if peer_values else None)
        row.append(peer_text + (" (bound)" if peer == "bound" else ""))
        row += [fmt_x(ratio(cf, pt)) for cf, pt in zip(cfs, peers, strict=True)]
        tf = med(results.taskflow.get(flow_case))
        tfs = med(results.taskflow.get(f"{flow_case} +sqlite"))
        row += [fmt_s(tf), fmt_s(tfs)]
        row += [fmt_x(ratio(tfs, cf)) for cf in cfs]
        add("| " + " | ".join(row) + " |")
    add("")
    if results.remote:
        add("Ratios are celeryflow ÷ the plain peer measured in the same worker session (the peer column shows "
            "each session's value when they differ: SQLite session / PostgreSQL session).")
        add("")
        add(f"The random DAG has {results.dag['atoms']:,} atoms and {results.dag['edges']:,} links (seed "
            f"{results.dag['seed']}; each atom gets 0–3 predecessors among the 60 before it); its critical path is "
            f"{results.dag['critical_path']} atoms. The bound is max(critical path × one plain chain hop, "
            "atoms × one plain group task): no scheduler on these two processes can beat the sequential "
            "latency of its longest path nor the throughput of plain Celery.")
        add("")
        for kind in kinds:
            bound, path, throughput = dag_bound(results, kind)
            if bound is not None and path is not None and throughput is not None:
                add(f"* {LOGBOOK_TITLES.get(kind, kind)} session: path term {path:.3f} s, throughput term "
                    f"{throughput:.3f} s.")
        add("")
        add("Extra cost per atom over the plain peer (celeryflow − peer) ÷ atoms, and the linear growth:")
        add("")
        add("| | " + " | ".join(LOGBOOK_TITLES.get(k, k) for k in kinds) + " |")
        add("|---|" + "---|" * len(kinds))
        for flow_case, peer, label in remote_pairs(results):
            n = int(flow_case.split()[-1])
            cells = []
            for kind in kinds:
                cf = med(results.remote[kind].get(flow_case))
                pt = peer_time(results, kind, peer)
                cells.append("—" if cf is None or pt is None else f"{(cf - pt) / n * 1000:.2f} ms")
            add(f"| {label} | " + " | ".join(cells) + " |")
        cells = []
        for kind in kinds:
            g = ratio(med(results.remote[kind].get(f"linear {p.linear_long}")),
                      med(results.remote[kind].get(f"linear {p.linear_short}")))
            cells.append("—" if g is None else f"{g:.1f}")
        add(f"| t(linear {p.linear_long:,}) ÷ t(linear {p.linear_short:,}) | " + " | ".join(cells) + " |")
        cells = []
        for kind in kinds:
            g = ratio(med(results.remote[kind].get(f"chain {p.linear_long}")),
                      med(results.remote[kind].get(f"chain {p.linear_short}")))
            cells.append("—" if g is None else f"{g:.1f}")
        add(f"| plain: t(chain {p.linear_long:,}) ÷ t(chain {p.linear_short:,}) | " + " | ".join(cells) + " |")
        tf_growth = ratio(med(results.taskflow.get(f"linear {p.linear_long}")),
                          med(results.taskflow.get(f"linear {p.linear_short}")))
        tfs_growth = ratio(med(results.taskflow.get(f"linear {p.linear_long} +sqlite")),
                           med(results.taskflow.get(f"linear {p.linear_short} +sqlite")))
        add(f"| TaskFlow: t(linear {p.linear_long:,}) ÷ t(linear {p.linear_short:,}), no logbook / SQLite | "
            + " | ".join([f"{tf_growth:.1f} / {tfs_growth:.1f}" if tf_growth and tfs_growth else "—"] * len(kinds))
            + " |")
        add("")
        add("<details><summary>All runs (seconds)</summary>")
        add("")
        add("| session | case | runs |")
        add("|---|---|---|")
        for kind in kinds:
            for case, values in results.remote[kind].items():
                add(f"| {kind} | {case} | {', '.join(f'{v:.3f}' for v in values)} |")
        for case, values in results.taskflow.items():
            add(f"| TaskFlow | {case} | {', '.join(f'{v:.3f}' for v in values)} |")
        for case, values in results.embedded.items():
            add(f"| embedded | {case} | {', '.join(f'{v:.3f}' for v in values)} |")
        add("")
        add("</details>")
        add("")

    # ---- embedded
    add("## Embedded default")
    add("")
    add("`celeryflow.engines.run(flow, backend=\"sqlite:///...\")` with no app: kombu `memory://` transport, an "
        "in-process Celery worker with a thread pool, SQLite logbook. Fresh process; a 5-atom warm-up flow "
        "starts the worker first.")
    add("")
    add("| case | median | runs | per atom |")
    add("|---|---|---|---|")
    for case, values in results.embedded.items():
        n = int(case.split()[-1])
        m = med(values)
        add(f"| {case.replace('linear', 'linear').replace('unordered', 'unordered')} | {fmt_s(m)} | "
            f"{spread(values)} | {m / n * 1000:.2f} ms |" if m else f"| {case} | — | — | — |")
    add("")

    # ---- counts
    add("## Logbook work per atom (success path)")
    add("")
    add("Counted inside the worker's pool processes with SQLAlchemy engine events (`begin`, `commit`, "
        "`before_cursor_execute`) and pool `checkout` events (bench-only: `CELERYFLOW_BENCH_COUNT` makes "
        "`bench.atoms` install them); divided by the number of atoms. *Statements* are data statements "
        "(SELECT/INSERT/UPDATE/DELETE); SQLite's `BEGIN IMMEDIATE` is counted with transactions, not here. "
        "Background transactions of the worker (heartbeats) fall in the same totals.")
    add("")
    if results.counts:
        add("| logbook | flow | transactions | of which background (whole flow) | commits | statements | "
            "pool checkouts | statements by kind |")
        add("|---|---|---|---|---|---|---|---|")
        for kind in results.counts:
            for case in results.counts[kind]:
                pa = per_atom_counts(results, kind, case)
                if pa is None:
                    continue
                kinds_text = ", ".join(f"{k} {v:.2f}" for k, v in pa["by_kind"].items() if v >= 0.005)
                add(f"| {LOGBOOK_TITLES.get(kind, kind)} | {case} | {pa['transactions']:.2f} | {pa['background']} | "
                    f"{pa['commits']:.2f} | "
                    f"{pa['statements']:.2f} | {pa['checkouts']:.2f} | {kinds_text} |")
        add("")
        add("The submitting process, per flow (persist, start, and following the events table until the end):")
        add("")
        add("| logbook | flow | transactions | statements | pool checkouts | messages published | statements by kind |")
        add("|---|---|---|---|---|---|---|")
        for kind in results.counts:
            for case, data in results.counts[kind].items():
                sub = data["submitter"]
                c = sub["counts"]
                kinds_text = ", ".join(f"{k} {v}" for k, v in sorted(sub["statements"].items(), key=lambda kv: -kv[1]))
                add(f"| {LOGBOOK_TITLES.get(kind, kind)} | {case} | {c.get('transactions', 0)} | "
                    f"{c.get('statements', 0)} | {c.get('pool_checkouts', 0)} | {sub['published']} | {kinds_text} |")
        add("")
    else:
        add("Not measured in this run.")
        add("")

    # ---- floor
    add("## The logbook's per-atom floor")
    add("")
    add("One process, no broker, no contention (`python -m bench.floor`): for each atom of an unordered flow, "
        "celeryflow's two worker transactions (`steps.begin` + `steps.finish`), against the same statements (read/"
        "lock the flow row, compare-and-set the atom, count the flow's outstanding atoms, insert the event) through "
        "SQLAlchemy Core with statements built once, and through the raw `sqlite3` driver.")
    add("")
    if results.floor:
        add("| logbook | celeryflow steps | same statements, SQLAlchemy Core | same statements, raw driver |")
        add("|---|---|---|---|")
        for kind in dict.fromkeys(k.split()[0] for k in results.floor):
            cells = []
            for variant in ("celeryflow", "core", "raw"):
                r = results.floor.get(f"{kind} {variant}")
                cells.append("—" if r is None else f"{r['wall_ms']:.2f} ms ({r['cpu_ms']:.2f} ms CPU)")
            add(f"| {LOGBOOK_TITLES.get(kind, kind)} | " + " | ".join(cells) + " |")
        add("")
    else:
        add("Not measured in this run.")
        add("")

    # ---- scale
    add(f"## Scale: {p.scale:,} atoms")
    add("")
    add("A fresh process per measurement (`python -m bench.scale`), a warm-up flow first, against a Redis db no "
        "worker consumes (so the first dispatch stays in the queue to be weighed). *Start* = compile + validate "
        "+ persist (one transaction) + first dispatch (`engine.start()`: broker check, queue the ready atoms, "
        "publish). Linear: median of 3 runs; unordered: 1 run (its first dispatch is one dispatch window, "
        "`CELERYFLOW_DISPATCH_WINDOW` = 512 messages; the rest are held in the logbook). Memory: "
        "peak RSS of the same process (the baseline is after imports and the warm-up), and one more run under "
        "`tracemalloc` (Python allocations from compile to the end of the first dispatch).")
    add("")
    rows = [(k, v) for k, v in results.scale.items() if not k.startswith(("plain", "first"))]
    if rows:
        add("| logbook | flow | build flow objects | compile | validate | persist | first dispatch | **start** | "
            "peak RSS (baseline) | tracemalloc peak | messages | bytes in queue | largest message |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key, r in rows:
            kind, shape, n = key.split()
            add(f"| {LOGBOOK_TITLES.get(kind, kind)} | {shape} {int(n):,} | {fmt_s(r['build'])} | "
                f"{fmt_s(r['compile'])} | {fmt_s(r['validate'])} | {fmt_s(r['persist'])} | {fmt_s(r['dispatch'])} | "
                f"**{fmt_s(r['total'])}** | {r['rss_peak_mib']:.0f} MiB ({r['rss_baseline_mib']:.0f}) | "
                f"{'—' if r.get('tracemalloc_peak_mib') is None else format(r['tracemalloc_peak_mib'], '.1f') + ' MiB'}"
                f" | {r['messages']:,} | {r['bytes']:,} | {r['largest']:,} B |")
        add("")
    add("### Broker bytes")
    add("")
    add("Bytes as stored in Redis (the kombu envelope, base64 body) for one dispatch, and, for whole runs, the "
        "JSON payload (body + headers) of every message published by the workers, per atom "
        "(`before_task_publish`).")
    add("")
    add("| what | messages | bytes | largest message | bytes per atom |")
    add("|---|---|---|---|---|")
    for key, r in results.scale.items():
        if key.startswith("first dispatch"):
            n = int(key.split()[-1])
            add(f"| celeryflow {key} | {r['messages']:,} | {r['bytes']:,} | {r['largest']:,} B | "
                f"{r['bytes'] / n:,.0f} (first message only) |")
    for key, r in results.scale.items():
        if key.startswith("plain"):
            n = r["n"]
            what = "whole chain, one message" if r["peer"] == "chain" else "whole group"
            add(f"| {key} ({what}) | {r['messages']:,} | {r['bytes']:,} | {r['largest']:,} B | {r['bytes'] / n:,.0f} |")
    for kind in results.counts:
        for case in results.counts[kind]:
            pa = per_atom_counts(results, kind, case)
            if pa:
                add(f"| celeryflow {case}, whole run, published by workers ({LOGBOOK_TITLES.get(kind, kind)}) | "
                    f"{pa['published']:,} | {pa['published_bytes_per_atom'] * pa['atoms']:,.0f} | "
                    f"{pa['published_max']:,} B | {pa['published_bytes_per_atom']:,.0f} |")
    add("")
    add("A plain Celery chain carries every remaining signature in each message: its first message grows with "
        "the chain and the whole run ships O(n²) bytes. celeryflow sends chains of at most "
        "`CELERYFLOW_CHAIN_MAX` (16) signatures, so the largest message is the same for 100 or 10,000 atoms.")
    add("")

    # ---- CPU by process
    add("## Where the time goes, by process")
    add("")
    if results.cpu:
        add("CPU time (user + system, from `/proc/<pid>/stat` and `getrusage`) each process spent on a case, per "
            "atom, median over the runs. On two shared cores wall time follows total CPU closely, so this is the "
            "budget to cut. Redis and PostgreSQL are whole servers: other clients on the machine show there too.")
        add("")
        sides = ("submitter", "worker consumer", "worker pool", "redis", "postgresql")
        add("| session | case | wall | " + " | ".join(sides) + " | total CPU | load (1 min) |")
        add("|---|---|---|" + "---|" * (len(sides) + 2))
        for kind, cases in results.cpu.items():
            for case, runs in cases.items():
                n = int(case.split()[-1])
                cells = []
                total = 0.0
                for side in sides:
                    value = statistics.median([r.get(side, 0.0) for r in runs])
                    total += value
                    cells.append(f"{value / n * 1000:.2f} ms")
                wall = med(results.remote.get(kind, {}).get(case))
                load = statistics.median([r.get("load1", 0.0) for r in runs])
                add(f"| {LOGBOOK_TITLES.get(kind, kind)} | {case} | {fmt_s(wall)} | " + " | ".join(cells)
                    + f" | **{total / n * 1000:.2f} ms** | {load:.1f} |")
        add("")
        add("celeryflow − its plain peer, CPU per atom:")
        add("")
        add("| session | pair | " + " | ".join(sides) + " | total |")
        add("|---|---|" + "---|" * (len(sides) + 1))
        for kind, cases in results.cpu.items():
            for flow_case, peer, label in remote_pairs(results):
                if peer == "bound" or flow_case not in cases or peer not in cases:
                    continue
                n = int(flow_case.split()[-1])
                cells = []
                total = 0.0
                for side in sides:
                    a = statistics.median([r.get(side, 0.0) for r in cases[flow_case]])
                    b = statistics.median([r.get(side, 0.0) for r in cases[peer]])
                    total += a - b
                    cells.append(f"{(a - b) / n * 1000:+.2f} ms")
                add(f"| {LOGBOOK_TITLES.get(kind, kind)} | {label} | " + " | ".join(cells)
                    + f" | **{total / n * 1000:+.2f} ms** |")
        add("")
    else:
        add("Not measured in this run.")
        add("")

    # ---- profiles
    add("## Where the worker's time goes")
    add("")
    if results.profiles:
        add("`py-spy record --idle --subprocesses` on the worker during one more run of each flow; shares of the "
            "**pool processes'** wall time (both of them; the consumer process is left out). *Idle* is a pool "
            "process waiting for its next message (broker round trip, prefetch 1, acks late): the plain peers pay "
            "it too.")
        add("")
        names = list(results.profiles)
        add("| category | " + " | ".join(names) + " |")
        add("|---|" + "---|" * len(names))
        cats = list(next(iter(results.profiles.values()))["categories"])
        for cat in cats:
            cells = [f"{results.profiles[n]['categories'].get(cat, 0) * 100:.1f}%" for n in names]
            if all(c == "0.0%" for c in cells):
                continue
            add(f"| {cat} | " + " | ".join(cells) + " |")
        add("")
        add("Inclusive share of the celeryflow functions on the atom path:")
        add("")
        funcs: list[str] = []
        for n in names:
            for f in results.profiles[n]["functions"]:
                if f not in funcs:
                    funcs.append(f)
        add("| function | " + " | ".join(names) + " |")
        add("|---|" + "---|" * len(names))
        for f in funcs:
            cells = [f"{results.profiles[n]['functions'].get(f, 0) * 100:.1f}%" for n in names]
            add(f"| `{f}` | " + " | ".join(cells) + " |")
        add("")
        add("Hottest leaf frames inside the atom task:")
        add("")
        for n in names:
            leaves = results.profiles[n]["leaves"]
            top = ", ".join(f"`{k.split(' (')[0]}` {v * 100:.1f}%" for k, v in list(leaves.items())[:6])
            add(f"* {n}: {top}")
        add("")
    else:
        add("Not profiled in this run (`py-spy` missing, `--quick` or `--no-profile`).")
        add("")

    # ---- one wide flow on 1, 2, 4 worker processes
    from bench.workers import render as render_workers

    out.extend(render_workers(results))

    # ---- caveats
    add("## Notes")
    add("")
    add("* Two cores are shared by Redis, PostgreSQL, the worker's consumer process, its two pool processes and "
        "the submitting process; other work on the machine shows in the load average above. Ratios are more "
        "stable than absolute times: both sides of a ratio run in the same worker session, interleaved.")
    add("* Task-sent events are on (`task_send_sent_event`, set by the stock app for Flower): every publish is "
        "two Redis writes, for the plain peers as much as for celeryflow.")
    add("* A plain Celery chain of 1,000 ships O(n²) bytes (each message carries the rest of the chain), so "
        "it is slow itself: a ratio near 1 for linear 1,000 says little; linear 100 is the fair chain comparison.")
    add("* TaskFlow runs in-process on threads (`engine='parallel'`, `max_workers=2`), with no broker: its times "
        "have no network hop at all, which favours it.")
    add("* Skipping the broker hop for linear runs (issue 11: the finishing worker claims the next plain atom "
        "in its finish transaction and runs it in the same process) is not built. It would save, per atom of a "
        "linear run, the publish, the broker round trip and the prefetch wait (the pool's *idle* share in the "
        "profile above) and one of the two transactions. It would cost what makes an atom a Celery task: the "
        "continuation has no message, so Flower sees it only through synthetic task events, `task_prerun`/"
        "`task_postrun` and the failure signals (Sentry, exporters) do not fire for it, per-atom queues, routing, "
        "rate and time limits do not apply, a crash mid-atom is found by the heartbeat sweep after "
        "`CELERYFLOW_HEARTBEAT_TIMEOUT` instead of by a redelivery, and a whole chain runs on one worker process. "
        "DESIGN.md asks for each atom to be its own Celery task with the state Celery users expect, so it is "
        "left out.")
    if results.skipped:
        add("* Skipped: " + "; ".join(results.skipped) + ".")
    if results.errors:
        add("* Errors during this run:")
        for err in results.errors:
            add(f"  * `{err.splitlines()[0][:300]}`")
    add("")
    # measured separately (python bench/web_view.py, about 5 minutes), kept across regenerations
    web_view = Path(__file__).resolve().parent / "web_view.md"
    if web_view.is_file():
        add(web_view.read_text(encoding="utf-8").rstrip())
        add("")
    return "\n".join(out)
