"""``python -m bench``: run every case, side by side with its peers, and write docs/benchmarks.md.

Cases (issue 7), each against the same Redis broker and the same worker (one
``celery -A celeryflow_tasks worker -P prefork -c 2``, started here, stopped by pid):

* unordered flow of 1,000 no-op atoms vs a plain Celery ``group`` of 1,000 no-ops;
* linear flow of 100 and 1,000 vs a plain ``chain`` of 100 and 1,000;
* a random DAG of 1,000 atoms (fixed seed) vs its critical-path bound;
* TaskFlow 6.x's parallel engine on the same flows, with and without its SQLite logbook;
* the embedded default: linear 100 and unordered 1,000;
* logbook transactions and statements per atom on the success path (SQLite, PostgreSQL);
* scale: a 10,000-atom flow's compile + validate + persist + first dispatch, peak memory
  of the submitting process, broker bytes per atom.

Within one worker session the cases are interleaved run by run (peer, celeryflow, peer,
...), so slow drift of the machine hits both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs, startup
from bench import profile as spy

REPO_ROOT = procs.REPO_ROOT
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
ENV_KEYS = ("CELERYFLOW_BROKER_URL", "CELERYFLOW_BACKEND", "CELERYFLOW_IMPORTS", "CELERYFLOW_RESULT_BACKEND")


@dataclass
class Plan:
    """Sizes and repetitions: the full run, or ``--quick`` (a smoke run)."""

    quick: bool
    runs: int = 5
    short_runs: int = 7  # the sub-second cases (linear/chain 100)
    unordered: int = 1000
    linear_short: int = 100
    linear_long: int = 1000
    dag: int = 1000
    scale: int = 10_000
    taskflow_runs_small: int = 3
    taskflow_runs_large: int = 1
    timeout: float = 600.0

    @classmethod
    def make(cls, quick: bool, runs: int | None) -> Plan:
        if quick:
            plan = cls(quick=True, runs=1, short_runs=1, unordered=40, linear_short=10, linear_long=30, dag=40,
                       scale=500, taskflow_runs_small=1, taskflow_runs_large=1, timeout=120.0)
        else:
            plan = cls(quick=False)
        if runs is not None:
            plan.runs = runs
            plan.short_runs = max(runs, plan.short_runs if not quick else runs)
        return plan


@dataclass
class Results:
    plan: Plan
    started: str = ""
    finished: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    commit: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    remote: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # logbook -> case -> times
    cpu: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)  # logbook -> case -> per run
    dag: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # logbook -> case -> counters
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # "<logbook> <case>" -> summary
    embedded: dict[str, list[float]] = field(default_factory=dict)
    taskflow: dict[str, list[float]] = field(default_factory=dict)
    scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    floor: dict[str, dict[str, float]] = field(default_factory=dict)  # "<logbook> <variant>" -> ms per atom
    workers: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # logbook -> size -> case
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "celeryflow",
                                "celeryflow_tasks"], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return f"{head}{' + uncommitted changes in celeryflow/' if dirty else ''}"
    except Exception:
        return "unknown"


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*ENV_KEYS, *values)}
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def bench_app(env: dict[str, str]) -> Any:
    """The submitting side's app: the stock ``make_app()`` under the workers' environment."""
    import importlib

    install_mod = importlib.import_module("celeryflow.install")  # the module (the package attribute is the function)
    with environment(env):
        import bench.atoms  # noqa: F401  (registers atoms, factories and bench.noop)
        from celeryflow_tasks.app import make_app

        previous = install_mod._installed
        try:
            app = make_app(f"celeryflow-bench-{uuid.uuid4().hex[:6]}")
        finally:
            install_mod._installed = previous
    app.conf.broker_pool_limit = 10
    return app


# --------------------------------------------------------------------------- one worker session


class Session:
    """One worker + the bench's app on it: runs celeryflow flows and the plain Celery peers."""

    def __init__(self, app: Any, broker: str, timeout: float, worker: procs.Worker | None = None) -> None:
        import redis

        self.app = app
        self.timeout = timeout
        self.redis = redis.Redis.from_url(broker)
        self.noop = app.tasks["bench.noop"]
        self.meter = procs.CpuMeter(worker) if worker is not None else None

    def measure(self, kind: str, shape: str, n: int) -> tuple[float, dict[str, float]]:
        """Wall seconds of one case and the CPU seconds each side spent on it."""
        before = self.meter.snapshot() if self.meter else {}
        wall = self.flow(shape, n) if kind == "flow" else self.plain(shape, n)
        cpu = self.meter.delta(before, self.meter.snapshot()) if self.meter else {}
        cpu["load1"] = os.getloadavg()[0]
        return wall, cpu

    def flow(self, shape: str, n: int) -> float:
        from bench import atoms
        from celeryflow import engines

        flow = {"linear": atoms.linear, "unordered": atoms.unordered, "dag": atoms.random_dag}[shape](n)
        started = time.perf_counter()
        engines.run(flow, app=self.app, timeout=self.timeout)
        return time.perf_counter() - started

    def plain(self, kind: str, n: int) -> float:
        from celery import chain, group

        tag = f"bench:done:{uuid.uuid4().hex}"
        sigs = [self.noop.si(tag) for _ in range(n)]
        started = time.perf_counter()
        (chain(*sigs) if kind == "chain" else group(sigs)).apply_async()
        deadline = started + self.timeout
        while int(self.redis.get(tag) or 0) < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"plain {kind} of {n} did not finish in {self.timeout} s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        self.redis.delete(tag)
        return elapsed


def remote_cases(plan: Plan) -> list[tuple[str, str, str, int, int]]:
    """(case key, kind, shape, n, runs) in the order one round runs them."""
    return [
        (f"group {plan.unordered}", "plain", "group", plan.unordered, plan.runs),
        (f"unordered {plan.unordered}", "flow", "unordered", plan.unordered, plan.runs),
        (f"chain {plan.linear_short}", "plain", "chain", plan.linear_short, plan.short_runs),
        (f"linear {plan.linear_short}", "flow", "linear", plan.linear_short, plan.short_runs),
        (f"chain {plan.linear_long}", "plain", "chain", plan.linear_long, plan.runs),
        (f"linear {plan.linear_long}", "flow", "linear", plan.linear_long, plan.runs),
        (f"dag {plan.dag}", "flow", "dag", plan.dag, plan.runs),
    ]


def run_remote(results: Results, logbook_kind: str, logbook: str, broker: str, tmp: Path,
               do_profile: bool) -> None:
    plan = results.plan
    env = {"CELERYFLOW_BROKER_URL": broker, "CELERYFLOW_BACKEND": logbook, "CELERYFLOW_IMPORTS": "bench.atoms"}
    app = bench_app(env)
    times: dict[str, list[float]] = {}
    cpus: dict[str, list[dict[str, float]]] = {}
    results.remote[logbook_kind] = times
    results.cpu[logbook_kind] = cpus
    log(f"{logbook_kind}: starting a prefork worker (-c 2)")
    with procs.Worker(env, tmp / "logs", name=f"{logbook_kind}-timing") as worker:
        session = Session(app, broker, plan.timeout, worker)
        # warm-up, untimed: schema, connections, imports, both pool processes, first flows on each side
        for _ in range(2):
            session.flow("unordered", 40 if plan.quick else 200)
            session.plain("group", 40 if plan.quick else 200)
            session.flow("linear", 20)
            session.plain("chain", 20)
        cases = remote_cases(plan)
        rounds = max(runs for *_, runs in cases)
        for r in range(rounds):
            for key, kind, shape, n, runs in cases:
                if r >= runs:
                    continue
                try:
                    t, cpu = session.measure(kind, shape, n)
                except Exception as exc:  # a failed case is reported, the others still run
                    results.errors.append(f"{logbook_kind} {key}: {exc!r}")
                    log(f"  {key}: FAILED {exc!r}")
                    continue
                times.setdefault(key, []).append(t)
                cpus.setdefault(key, []).append(cpu)
                cpu_text = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "load1")
                log(f"  {logbook_kind} round {r + 1}: {key}: {t:.3f} s (cpu s: {cpu_text}; load {cpu['load1']:.1f})")
        if do_profile:
            for shape, n in (("unordered", plan.unordered), ("linear", plan.linear_long)):
                out = tmp / f"pyspy-{logbook_kind}-{shape}.txt"
                log(f"  profiling {shape} {n} on the worker (py-spy)")
                try:
                    with spy.recording(worker.pid, out):
                        session.flow(shape, n)
                    results.profiles[f"{logbook_kind} {shape} {n}"] = spy.summarize(out)
                except Exception as exc:
                    results.errors.append(f"profile {logbook_kind} {shape}: {exc!r}")
        if worker.proc is not None and worker.proc.poll() is not None:
            results.errors.append(f"{logbook_kind} worker died:\n{worker.tail()}")


def run_counts(results: Results, logbook_kind: str, logbook: str, broker: str, tmp: Path) -> None:
    """Transactions/statements per atom, counted inside the worker's pool processes."""
    from bench import atoms

    plan = results.plan
    count_dir = tmp / f"counts-{logbook_kind}"
    count_dir.mkdir(parents=True, exist_ok=True)
    env = {"CELERYFLOW_BROKER_URL": broker, "CELERYFLOW_BACKEND": logbook, "CELERYFLOW_IMPORTS": "bench.atoms"}
    app = bench_app(env)
    out: dict[str, Any] = {}
    results.counts[logbook_kind] = out
    with procs.Worker({**env, atoms.COUNT_ENV: str(count_dir)}, tmp / "logs", name=f"{logbook_kind}-count"):
        session = Session(app, broker, plan.timeout)
        session.flow("linear", 5)
        time.sleep(0.5)
        for shape, n in (("linear", plan.linear_short), ("linear", plan.linear_long), ("unordered", plan.unordered)):
            before = _read_counts(count_dir)
            submitter = atoms.Counters()
            remove = _count_here(submitter)
            try:
                session.flow(shape, n)
            finally:
                remove()
            time.sleep(0.8)  # the last task's totals are written after it returns
            after = _read_counts(count_dir)
            out[f"{shape} {n}"] = {"atoms": n, "worker": _delta(before, after), "submitter": submitter.snapshot()}
            log(f"  {logbook_kind} counts {shape} {n}: {out[f'{shape} {n}']['worker']['counts']}")


def _count_here(counters: Any) -> Callable[[], None]:
    """Count this process's SQL and publishes into ``counters`` until the returned callable is called."""
    from celery import signals
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    from bench.atoms import statement_kind

    def on_begin(conn: Any) -> None:
        counters.add("transactions")

    def on_execute(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        with counters.lock:
            counters.c["statements"] += 1
            counters.statements[statement_kind(statement)] += 1

    def on_checkout(*a: Any) -> None:
        counters.add("pool_checkouts")

    def on_publish(sender: Any = None, body: Any = None, headers: Any = None, **kw: Any) -> None:
        size = len(json.dumps(body, default=str)) + len(json.dumps(headers, default=str))
        with counters.lock:
            counters.published_bytes.append(size)

    event.listen(Engine, "begin", on_begin)
    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Pool, "checkout", on_checkout)
    signals.before_task_publish.connect(on_publish, weak=False)

    def remove() -> None:
        event.remove(Engine, "begin", on_begin)
        event.remove(Engine, "before_cursor_execute", on_execute)
        event.remove(Pool, "checkout", on_checkout)
        signals.before_task_publish.disconnect(on_publish)

    return remove


def _read_counts(directory: Path) -> dict[str, dict[str, Any]]:
    snap: dict[str, dict[str, Any]] = {}
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            snap[path.stem] = json.loads(path.read_text())
    return snap


def _delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    statements: dict[str, int] = {}
    published = published_bytes = published_max = 0
    for pid, snap in after.items():
        old = before.get(pid, {})
        for key, value in snap.get("counts", {}).items():
            counts[key] = counts.get(key, 0) + value - old.get("counts", {}).get(key, 0)
        for key, value in snap.get("statements", {}).items():
            statements[key] = statements.get(key, 0) + value - old.get("statements", {}).get(key, 0)
        published += snap.get("published", 0) - old.get("published", 0)
        published_bytes += snap.get("published_bytes", 0) - old.get("published_bytes", 0)
        published_max = max(published_max, snap.get("published_max", 0))
    return {"counts": counts, "statements": statements, "published": published,
            "published_bytes": published_bytes, "published_max": published_max}


# --------------------------------------------------------------------------- subprocess cases


def _subprocess_json(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=str(REPO_ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def run_embedded(results: Results, tmp: Path) -> None:
    plan = results.plan
    for shape, n, runs in (("linear", plan.linear_short, plan.short_runs), ("unordered", plan.unordered, plan.runs)):
        key = f"{shape} {n}"
        db = tmp / f"embedded-{shape}.sqlite"
        try:
            data = _subprocess_json(["bench.embedded", "--shape", shape, "--n", str(n), "--runs", str(runs),
                                     "--backend", f"sqlite:///{db}"], plan.timeout * runs,
                                    env={"XDG_DATA_HOME": str(tmp / "xdg")})
        except Exception as exc:
            results.errors.append(f"embedded {key}: {exc}")
            continue
        results.embedded[key] = data["times"]
        log(f"  embedded {key}: {', '.join(f'{t:.3f}' for t in data['times'])} s")


def taskflow_configs(plan: Plan) -> list[tuple[str, int, int]]:
    return [
        ("linear", plan.linear_short, plan.taskflow_runs_small),
        ("unordered", plan.unordered, plan.taskflow_runs_small),
        ("linear", plan.linear_long, plan.taskflow_runs_large),
        ("dag", plan.dag, plan.taskflow_runs_large),
    ]


def run_taskflow(results: Results, tmp: Path) -> None:
    from bench import taskflow_peer

    if not taskflow_peer.available():
        results.skipped.append("TaskFlow (not installed: pip install -r bench/requirements.txt)")
        return
    plan = results.plan
    for logbook in (False, True):
        for shape, n, runs in taskflow_configs(plan):
            if logbook and shape == "unordered" and not plan.quick:
                runs = plan.taskflow_runs_large  # ~1 min a run with the logbook
            key = f"{shape} {n}{' +sqlite' if logbook else ''}"
            argv = ["bench.taskflow_peer", "--shape", shape, "--n", str(n), "--runs", str(runs)]
            if logbook:
                argv += ["--logbook", f"sqlite:///{tmp / f'taskflow-{shape}-{n}.sqlite'}"]
            try:
                data = _subprocess_json(argv, plan.timeout * runs)
            except Exception as exc:
                results.errors.append(f"taskflow {key}: {exc}")
                continue
            results.taskflow[key] = data["times"]
            log(f"  taskflow {key}: {', '.join(f'{t:.3f}' for t in data['times'])} s")


def run_floor(results: Results, logbooks: dict[str, Callable[[], contextlib.AbstractContextManager[str]]]) -> None:
    """celeryflow's per-atom transactions vs the same statements through Core / the raw driver."""
    n = 200 if results.plan.quick else 2000
    for kind, make_logbook in logbooks.items():
        variants = ("celeryflow", "core", "raw") if kind == "sqlite" else ("celeryflow", "core")
        for variant in variants:
            with make_logbook() as logbook:
                try:
                    data = _subprocess_json(["bench.floor", "--variant", variant, "--backend", logbook, "--n", str(n)],
                                            results.plan.timeout)
                except Exception as exc:
                    results.errors.append(f"floor {kind} {variant}: {exc}")
                    continue
            results.floor[f"{kind} {variant}"] = {"wall_ms": data["wall_ms"], "cpu_ms": data["cpu_ms"], "n": n}
            log(f"  floor {kind} {variant}: {data['wall_ms']:.2f} ms wall, {data['cpu_ms']:.2f} ms CPU per atom")


def run_scale(results: Results, logbooks: dict[str, Callable[[], contextlib.AbstractContextManager[str]]],
              tmp: Path) -> None:
    plan = results.plan
    with procs.redis_db("bench-scale") as db:
        broker = procs.redis_url(db)
        for kind, make_logbook in logbooks.items():
            with make_logbook() as logbook:
                for shape in ("linear", "unordered"):
                    key = f"{kind} {shape} {plan.scale}"
                    argv = ["bench.scale", "--shape", shape, "--n", str(plan.scale), "--broker", broker,
                            "--backend", logbook]
                    # unordered: the first dispatch is every atom (~1 ms a message): one run, and
                    # tracemalloc (3-5x slower) on the first logbook only
                    repeat = 1 if plan.quick or shape == "unordered" else 3
                    try:
                        runs = [_subprocess_json(argv, plan.timeout) for _ in range(repeat)]
                        traced = (_subprocess_json([*argv, "--tracemalloc"], plan.timeout)
                                  if shape == "linear" or kind == next(iter(logbooks)) else None)
                    except Exception as exc:
                        results.errors.append(f"scale {key}: {exc}")
                        continue
                    row = {k: statistics.median([r[k] for r in runs]) for k in
                           ("build", "compile", "validate", "persist", "dispatch", "total", "rss_baseline_mib",
                            "rss_peak_mib")}
                    row.update({k: runs[0][k] for k in ("messages", "bytes", "largest")})
                    row["runs"] = repeat
                    row["tracemalloc_peak_mib"] = traced["tracemalloc_peak_mib"] if traced else None
                    results.scale[key] = row
                    log(f"  scale {key}: total {row['total']:.3f} s, {row['messages']} messages, "
                        f"{row['bytes']} bytes")
        for peer, n in (("chain", plan.linear_short), ("chain", plan.linear_long), ("group", plan.unordered)):
            try:
                data = _subprocess_json(["bench.scale", "--peer", peer, "--n", str(n), "--broker", broker],
                                        plan.timeout)
            except Exception as exc:
                results.errors.append(f"scale peer {peer} {n}: {exc}")
                continue
            results.scale[f"plain {peer} {n}"] = data
        for shape, n in (("linear", plan.linear_short), ("linear", plan.linear_long)):
            with logbooks["sqlite"]() as logbook:
                try:
                    data = _subprocess_json(["bench.scale", "--shape", shape, "--n", str(n), "--broker", broker,
                                             "--backend", logbook], plan.timeout)
                except Exception as exc:
                    results.errors.append(f"scale {shape} {n}: {exc}")
                    continue
                results.scale[f"first dispatch {shape} {n}"] = data


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="celeryflow benchmarks (issue 7)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny flows, one run each")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 3; 5 for the short ones)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the markdown report to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--no-taskflow", action="store_true", help="skip the TaskFlow peer")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy worker profiles")
    parser.add_argument("--only", default="",
                        help="comma-separated subset: remote,counts,workers,embedded,taskflow,scale,floor")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="only re-render the report from results saved with --json")
    args = parser.parse_args(argv)
    if args.from_json:
        from bench import report

        saved = load_json(args.from_json)
        args.output.write_text(startup.keep_section(args.output, report.render(saved, elapsed=saved_elapsed(saved))))
        print(report.summary_table(saved))
        return 0
    plan = Plan.make(args.quick, args.runs)
    only = {part.strip() for part in args.only.split(",") if part.strip()}

    def wanted(part: str) -> bool:
        return not only or part in only

    results = Results(plan)
    results.started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results.machine = procs.machine()
    results.commit = git_commit()
    results.load_before = procs.load_average()
    from bench import atoms

    edges = atoms.dag_edges(plan.dag)
    results.dag = {"atoms": plan.dag, "edges": len(edges), "critical_path": atoms.critical_path(plan.dag, edges),
                   "seed": atoms.DAG_SEED}
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="celeryflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        logbooks: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {}
        counter = iter(range(10**6))
        logbooks["sqlite"] = lambda: contextlib.nullcontext(f"sqlite:///{tmp / f'logbook-{next(counter)}.sqlite'}")
        if not args.no_postgres and procs.postgres_up():
            logbooks["postgresql"] = procs.postgres_schema
        elif not args.no_postgres:
            results.skipped.append(f"PostgreSQL (not reachable at {procs.POSTGRES_BASE})")
        redis_ok = procs.redis_up()
        if not redis_ok:
            results.skipped.append("remote workers, logbook counts and scale (Redis not reachable)")
        do_profile = not args.no_profile and not plan.quick and spy.available()
        try:
            if redis_ok and (wanted("remote") or wanted("counts")):
                for kind, make_logbook in logbooks.items():
                    with procs.redis_db("bench") as db:
                        broker = procs.redis_url(db)
                        if wanted("remote"):
                            with make_logbook() as logbook:
                                run_remote(results, kind, logbook, broker, tmp, do_profile)
                        if wanted("counts"):
                            with make_logbook() as logbook:
                                run_counts(results, kind, logbook, broker, tmp)
            if redis_ok and wanted("workers"):
                from bench.workers import run_workers

                for kind, make_logbook in logbooks.items():
                    with procs.redis_db("bench") as db, make_logbook() as logbook:
                        log(f"{kind}: one wide flow on 1, 2, 4 worker processes")
                        run_workers(results, kind, logbook, procs.redis_url(db), tmp)
            if wanted("embedded"):
                log("embedded default")
                run_embedded(results, tmp)
            if wanted("taskflow"):
                if args.no_taskflow:
                    results.skipped.append("TaskFlow (--no-taskflow)")
                else:
                    log("TaskFlow peer")
                    run_taskflow(results, tmp)
            if wanted("floor"):
                log("logbook floor: celeryflow's transactions vs Core vs the raw driver")
                run_floor(results, logbooks)
            if redis_ok and wanted("scale"):
                log(f"scale: {plan.scale} atoms")
                run_scale(results, logbooks, tmp)
        finally:
            procs.stop_all()
    results.load_after = procs.load_average()
    results.finished = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from bench import report

    text = report.render(results, elapsed=time.monotonic() - begun)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(startup.keep_section(args.output, text))
    if args.json:
        args.json.write_text(json.dumps(_jsonable(results), indent=1, default=str))
    print(report.summary_table(results))
    log(f"wrote {args.output} in {time.monotonic() - begun:.0f} s")
    if results.errors:
        log("errors:\n  " + "\n  ".join(results.errors))
    return 0


def load_json(path: Path) -> Results:
    data = json.loads(path.read_text())
    plan = Plan(**data.pop("plan"))
    known = set(Results.__dataclass_fields__)
    return Results(plan, **{k: v for k, v in data.items() if k in known})


def saved_elapsed(results: Results) -> float:
    try:
        fmt = "%Y-%m-%d %H:%M UTC"
        finished = dt.datetime.strptime(results.finished, fmt)
        return (finished - dt.datetime.strptime(results.started, fmt)).total_seconds()
    except ValueError:
        return 0.0


def _jsonable(results: Results) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(results)
