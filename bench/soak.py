"""Soak (not a CI test; run by hand): mixed flows on real workers while workers are killed
and flows are resumed, reverted and suspended at random; checked per flow from the
atoms' own calls.

    python bench/soak.py                          # 40 flows, 3 workers, a kill every 2-5 s
    python bench/soak.py --flows 100 --kill-every 1 3 --seed 7 --json soak.json
    python bench/soak.py --quick                  # a small run (the CI smoke test)

Needs Redis and PostgreSQL (``--redis``, ``--postgres``). It takes a private
PostgreSQL schema and a free Redis db the way the test suite does, starts ``celery -A
celeryflow_tasks worker`` and ``python -m conductor`` processes with
``CELERYFLOW_IMPORTS=bench.soak_flows``, and submits ``--flows`` flows over
``--submit-over`` seconds. Each flow's plan (``bench/soak_flows.py``: its shape --
linear, unordered, graph with joins, fan, a nested ``Times`` retry scope -- and the
atoms whose execute or revert fails) is drawn from ``--seed``, so a run is
reproducible in what it submits (kill timing is at the mercy of the scheduler).
While the flows run it

* SIGKILLs, every ``--kill-every`` seconds, a whole worker (then starts a new one) or
  one pool child, preferring a process that is in the middle of a revert half of the
  time (else one in the middle of an execute);
* every ``--control-every`` seconds calls ``FlowHandle.resume()``, ``.revert()`` or
  ``.suspend()`` on a flow that has an atom executing or reverting at that moment
  (a suspended flow is resumed 0.5-3 s later).

Every atom appends its execute and revert calls (start and end, pid, time) to a trace
file; ``bench/soak_check.py`` judges each flow from it (each executed atom compensated
exactly once when the flow compensates, nothing that did not execute reverted, SUCCESS
flows with every atom SUCCESS, no flow lost) and measures kill-to-recovery time. The
JSON report goes to stdout and ``--json``; the exit status is 0 only when every
invariant holds. Every loop is bounded by ``--deadline`` and every process it started
is stopped by PID at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench import soak_check, soak_flows  # noqa: E402
from tests.support.procs import ProcessGroup, celery_worker_cmd, conductor_cmd  # noqa: E402

TERMINAL = soak_check.TERMINAL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flows", type=int, default=40)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--conductors", type=int, default=2)
    p.add_argument("--delay", type=float, nargs=2, default=(0.1, 0.4), metavar=("MIN", "MAX"),
                   help="seconds an atom's execute sleeps (its revert half of it)")
    p.add_argument("--shapes", type=lambda v: tuple(v.split(",")), default=soak_flows.SHAPES,
                   help=f"comma-separated flow shapes to draw from (default: {','.join(soak_flows.SHAPES)})")
    p.add_argument("--fail-rate", type=float, default=0.35, help="share of flows with an atom that always fails")
    p.add_argument("--revert-fail-rate", type=float, default=0.2, help="share of flows with a revert that fails")
    p.add_argument("--submit-over", type=float, default=40.0, help="spread the submissions over this many seconds")
    p.add_argument("--kill-every", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"))
    p.add_argument("--control-every", type=float, nargs=2, default=(0.7, 2.0), metavar=("MIN", "MAX"),
                   help="seconds between resume/revert/suspend calls (0 0: none)")
    p.add_argument("--controls", type=lambda v: tuple(v.split(",")), default=("resume", "revert", "suspend"),
                   help="which FlowHandle calls the soak makes (comma-separated; default: resume,revert,suspend)")
    p.add_argument("--revert-share", type=float, default=0.15,
                   help="at most this share of the flows is reverted on request")
    p.add_argument("--heartbeat-timeout", type=float, default=4.0)
    p.add_argument("--heartbeat-interval", type=float, default=0.5)
    p.add_argument("--sweep-interval", type=float, default=1.0)
    p.add_argument("--max-deliveries", type=int, default=50, help="high: a soak kills at random, not a poison")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds before giving up (unfinished flows are lost)")
    p.add_argument("--stall", type=float, default=60.0,
                   help="give up when no atom was called and no flow moved for this long (unfinished flows are lost)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--postgres", default=os.environ.get("CELERYFLOW_TEST_POSTGRES_URL",
                                                        "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the report here")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the process logs and the trace (kept anyway when the run fails); print where")
    p.add_argument("--quick", action="store_true",
                   help="a small run: 5 flows (one per shape), 2 workers, 1 conductor, short delays")
    args = p.parse_args(argv)
    if args.quick:
        args.flows, args.workers, args.conductors = 5, 2, 1
        args.delay, args.submit_over, args.kill_every = (0.1, 0.3), 1.0, (2.0, 3.0)
        args.heartbeat_timeout, args.deadline = 3.0, 45.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    from tests.fixtures_services import RedisDbPool

    host, _, port = args.redis.split("://", 1)[-1].rstrip("/").partition(":")
    pool = RedisDbPool(host or "127.0.0.1", int(port or 6379))
    db, token = pool.acquire("soak")
    rclient = pool.client(db)
    rclient.flushdb()
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    schema = f"soak_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    logbook = (make_url(args.postgres).set(drivername="postgresql")
               .update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))
    tmp = Path(tempfile.mkdtemp(prefix="celeryflow-soak-"))
    env = {
        "CELERYFLOW_BROKER_URL": f"{args.redis.rstrip('/')}/{db}",
        "CELERYFLOW_BACKEND": logbook,
        "CELERYFLOW_IMPORTS": "bench.soak_flows",
        "CELERYFLOW_HEARTBEAT_TIMEOUT": str(args.heartbeat_timeout),
        "CELERYFLOW_HEARTBEAT_INTERVAL": str(args.heartbeat_interval),
        "CELERYFLOW_SWEEP_INTERVAL": str(args.sweep_interval),
        "CELERYFLOW_MAX_DELIVERIES": str(args.max_deliveries),
        "CELERYFLOW_RESULT_BACKEND": "",
    }
    os.environ.update(env)
    report: dict[str, Any] = {"seed": seed, "params": {k: v for k, v in vars(args).items() if k != "postgres"}}
    try:
        from celeryflow.persistence import backends

        backend = backends.fetch(logbook)
        backend.upgrade()
        with ProcessGroup(tmp / "procs", env=env) as group:
            report.update(Soak(args, random.Random(seed), group, backend, str(tmp / "trace.log")).run())
        backends.close_all(logbook)
    finally:
        for attempt in range(30):  # wait out a restart of the server (a shared machine)
            try:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                break
            except OperationalError:
                if attempt == 29:
                    raise
                time.sleep(2.0)
        admin.dispose()
        rclient.flushdb()
        rclient.close()
        pool.release(db, token)
    if args.keep_logs or not report.get("verdict", {}).get("ok"):
        report["logs"] = str(tmp)  # process logs and the trace, kept when asked or when the run failed
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    verdict, rec = report["verdict"], report["verdict"]["recovery"]
    print(f"\nsoak (seed {seed}): {args.flows} flows {verdict['flow_states']}, {report['kills']['total']} kills "
          f"({rec['interrupted_executes']} executes / {rec['interrupted_reverts']} reverts cut), "
          f"{sum(report['controls'].values())} control calls, recovery median {rec['recovery_seconds_median']} s "
          f"max {rec['recovery_seconds_max']} s, {verdict['violation_count']} violations, "
          f"{report['seconds']:.1f}s -> {'OK' if verdict['ok'] else 'FAILED'}")
    print("docs/soak.md row: " + soak_check.table_row(report))
    return 0 if verdict["ok"] else 1


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Soak:
    """One soak run: workers, submissions, kills, control calls, then the verdict."""

    def __init__(self, args: argparse.Namespace, rng: random.Random, group: ProcessGroup, backend: Any,
                 trace: str) -> None:
        self.args, self.rng, self.group, self.backend, self.trace = args, rng, group, backend, trace
        self.tail = soak_check.TraceTail(trace)
        self.live: list[str] = []
        self.serial = 0
        self.kills: list[soak_check.Kill] = []
        self.controls: Counter[str] = Counter()
        self.control_log: list[tuple[float, str, str, str]] = []  # time, flow, op, outcome
        self.revert_requested: set[str] = set()
        self.resume_at: dict[str, float] = {}
        self.ids: dict[str, str] = {}  # fid -> flow uuid
        self.plans: dict[str, dict[str, Any]] = {}
        self.events: list[Any] = []
        self.submitted = 0
        self.unsure: set[str] = set()  # submits that raised StorageFailure
        self.outages = 0  # loop rounds lost to a logbook outage

    def _start_worker(self) -> None:
        name = f"worker{self.serial}"
        self.serial += 1
        self.group.start(name, celery_worker_cmd(hostname=f"{name}@%h", concurrency=self.args.concurrency,
                                                 loglevel="INFO"))
        self.live.append(name)

    def run(self) -> dict[str, Any]:
        from celeryflow.exceptions import StorageFailure
        from celeryflow.handle import FlowHandle, submit
        from celeryflow_tasks.app import make_app

        args, rng = self.args, self.rng
        for i in range(args.conductors):
            self.group.start(f"conductor{i}", conductor_cmd("--name", f"conductor{i}", "--loglevel", "WARNING"))
        for _ in range(args.workers):
            self._start_worker()
        for name in self.live:
            self.group.wait_for_log(name, r"ready\.", timeout=90)
        self.plans = soak_flows.draw_plans(rng, args.flows, args.shapes, delay=tuple(args.delay),
                                           fail_rate=args.fail_rate, revert_fail_rate=args.revert_fail_rate)
        shapes = list(self.plans)
        app = make_app("soak-submitter")
        started = time.monotonic()
        deadline = started + args.deadline
        submit_at = sorted(rng.uniform(0, args.submit_over) for _ in shapes)
        next_kill = started + rng.uniform(*args.kill_every)
        controlling = args.control_every[1] > 0
        next_control = started + (rng.uniform(*args.control_every) if controlling else args.deadline)
        next_poll = started
        states: dict[str, str] = {}
        moved, seen = started, (0, states)
        while time.monotonic() < deadline and time.monotonic() - moved < max(args.stall, 3 * args.heartbeat_timeout):
            now = time.monotonic()
            try:  # the logbook's server may restart meanwhile (a shared machine): the soak rides it out
                while self.submitted < len(shapes) and submit_at[self.submitted] <= now - started:
                    fid = f"f{self.submitted:03d}"
                    self.submitted += 1
                    try:
                        self.ids[fid] = submit(soak_flows.soak_flow, app=app,
                                               factory_kwargs={"trace": self.trace, "plan": self.plans[fid]}).id
                    except StorageFailure:
                        self.unsure.add(fid)  # looked up by name at the end: it may have been written
                        raise
                if now >= next_poll:
                    states = self._states()
                    self.tail.update()
                    if (self.tail.offset, states) != seen or self.submitted < len(shapes):
                        moved, seen = now, (self.tail.offset, states)
                    if self.submitted == len(shapes) and all(s in TERMINAL for s in states.values()):
                        break
                    for fid, state in states.items():
                        if state == "SUSPENDED" and self.resume_at.get(fid, 0.0) <= now:
                            self._control(FlowHandle(self.ids[fid], app=app), "resume", fid, state, "suspended")
                    next_poll = now + 0.5
                if now >= next_kill:
                    self._kill()
                    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
                if now >= next_control:
                    next_control = time.monotonic() + rng.uniform(*args.control_every)
                    self._random_control(app, states)
            except StorageFailure:
                self.outages += 1
                time.sleep(1.0)
                continue
            time.sleep(0.1)
        finished_in = time.monotonic() - started
        self.group.stop_all()
        facts = self._facts()
        verdict = soak_check.verdict(facts)
        return {
            "flows": len(self.plans),
            "shapes": dict(Counter(p["shape"] for p in self.plans.values())),
            "planned": {"fails_for_good": sum(soak_check.plan_fails(p) for p in self.plans.values()),
                        "retry_recovers": sum(1 for p in self.plans.values() if not soak_check.plan_fails(p)
                                              and p["fail_until"]),
                        "revert_fails": sum(1 for p in self.plans.values() if p["revert_fails"])},
            "kills": {"total": len(self.kills), **Counter(k.what for k in self.kills)},
            "kill_log": [[round(k.at, 3), k.what, k.pids] for k in self.kills],
            "controls": dict(self.controls),
            "reverted_on_request": len(self.revert_requested),
            "verdict": verdict,
            "evidence": soak_check.evidence(verdict["violations"], facts, self.ids, self.control_log, self.events),
            "seconds": round(finished_in, 2),
            "submits_failed": sorted(self.unsure - set(self.ids)),
            "loop_rounds_lost_to_logbook_outages": self.outages,
            "unfinished_at_deadline": sorted(f for f, s in facts.flow_states.items() if s not in TERMINAL),
        }

    # -- chaos ------------------------------------------------------------------------

    def _pool(self) -> dict[int, str]:
        """pid of each live pool child -> its worker's name."""
        return {c: name for name in self.live for c in _children(self.group.procs[name].pid)}

    def _kill(self) -> None:
        """SIGKILL a whole worker (and start another) or one pool child; prefer one mid-call."""
        self.tail.update()
        children = self._pool()
        kind = "R" if self.rng.random() < 0.5 else "E"
        busy = list(self.tail.busy(kind, children) or self.tail.busy("E" if kind == "R" else "R", children))
        whole = self.rng.random() < 0.5 or not children
        target = self.rng.choice(sorted(busy or children)) if children else None
        victim = children[target] if target is not None else self.rng.choice(self.live)
        proc = self.group.procs[victim]
        if whole or target is None:
            pids = [proc.pid, *_children(proc.pid)]
            self.kills.append(soak_check.Kill(time.time(), pids, "whole_worker"))
            self.group.kill(victim)
            self.live.remove(victim)
            self._start_worker()
        else:
            self.kills.append(soak_check.Kill(time.time(), [target], "pool_child"))
            os.kill(target, signal.SIGKILL)  # the worker forks another child

    def _random_control(self, app: Any, states: dict[str, str]) -> None:
        """resume/revert/suspend a flow that has an atom executing or reverting right now."""
        from celeryflow.handle import FlowHandle

        self.tail.update()
        children = self._pool()
        running = sorted(set(self.tail.busy("E", children).values()))
        reverting = sorted(set(self.tail.busy("R", children).values()))
        if reverting and (not running or self.rng.random() < 0.4):
            fid, during = self.rng.choice(reverting), "reverting"
            ops = ["resume", "revert"]
        elif running:
            fid, during = self.rng.choice(running), "executing"
            ops = ["resume", "suspend", "revert"]
        else:
            return
        ops = [op for op in ops if op in self.args.controls]
        if not ops:
            return
        op = self.rng.choice(ops)
        if op == "revert" and len(self.revert_requested) >= max(1, int(self.args.revert_share * self.args.flows)):
            if "resume" not in self.args.controls:
                return
            op = "resume"
        handle = FlowHandle(self.ids[fid], app=app)
        if op == "suspend":
            self.resume_at[fid] = time.monotonic() + self.rng.uniform(0.5, 3.0)
        self._control(handle, op, fid, states.get(fid, "?"), during)

    def _control(self, handle: Any, op: str, fid: str, state: str, during: str) -> None:
        from celeryflow.exceptions import CeleryflowError

        try:
            getattr(handle, op)()
        except CeleryflowError as exc:  # e.g. InvalidState: the flow moved meanwhile
            self.controls[f"{op} refused ({type(exc).__name__})"] += 1
            self.control_log.append((time.time(), fid, op, f"refused: {exc}"))
            return
        self.control_log.append((time.time(), fid, op, f"while {during}, flow {state} before"))
        if op == "revert":
            self.revert_requested.add(fid)
        self.controls[f"{op} ({during})"] += 1


    # -- the logbook's side of the facts -------------------------------------------------

    def _states(self) -> dict[str, str]:
        from celeryflow.persistence.tables import FlowRow

        by_uuid = {u: f for f, u in self.ids.items()}
        rows = self.backend.run(lambda s: s.execute(
            select(FlowRow.uuid, FlowRow.state).where(FlowRow.uuid.in_(list(by_uuid)))).all(), readonly=True)
        return {by_uuid[u]: state for u, state in rows}

    def _facts(self, patience: float = 120.0) -> soak_check.Facts:
        """The logbook's side, read once the processes stopped (waiting out an outage)."""
        from celeryflow.exceptions import StorageFailure

        deadline = time.monotonic() + patience
        while True:
            try:
                return self._read_facts()
            except StorageFailure:
                if time.monotonic() > deadline:
                    raise
                self.outages += 1
                time.sleep(2.0)

    def _read_facts(self) -> soak_check.Facts:
        from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow

        # a submit that raised may still have written (and started) its flow: find it by name
        names = {f"soak-{fid}-{self.plans[fid]['shape']}": fid for fid in self.unsure - set(self.ids)}
        found = self.backend.run(lambda s: s.execute(select(FlowRow.name, FlowRow.uuid, FlowRow.state)
                                                     .where(FlowRow.name.in_(list(names)))).all(), readonly=True)
        for name, flow_uuid, state in found:
            if state != "PENDING":  # PENDING: written, never started (the caller was told it failed)
                self.ids[names[name]] = flow_uuid
        by_uuid = {u: f for f, u in self.ids.items()}

        def collect(session: Any) -> tuple[Any, Any]:
            atoms = session.execute(select(AtomRow.flow_uuid, AtomRow.name, AtomRow.state)
                                    .where(AtomRow.flow_uuid.in_(list(by_uuid)))).all()
            events = session.execute(select(EventRow.flow_uuid, EventRow.atom_name, EventRow.kind,
                                            EventRow.old_state, EventRow.new_state, EventRow.epoch,
                                            EventRow.details, EventRow.at)
                                     .where(EventRow.flow_uuid.in_(list(by_uuid))).order_by(EventRow.id)).all()
            return atoms, events

        atoms, events = self.backend.run(collect, readonly=True)
        claims: Counter[tuple[str, str]] = Counter()
        reruns: Counter[str] = Counter()
        self.events = events
        for flow_uuid, atom, kind, old, new, *_rest in events:
            if kind == "atom" and new == "RUNNING":
                claims[(by_uuid[flow_uuid], atom)] += 1
            if kind == "flow" and old == "REVERTED" and new == "RUNNING":
                reruns[by_uuid[flow_uuid]] += 1
        text = Path(self.trace).read_text() if Path(self.trace).exists() else ""
        return soak_check.Facts(
            plans={f: p for f, p in self.plans.items() if f in self.ids},
            trace=soak_check.parse_trace(text),
            kills=self.kills,
            flow_states=self._states(),
            atom_states={(by_uuid[u], n): s for u, n, s in atoms},
            claims=dict(claims),
            reruns=dict(reruns),
            revert_requested=self.revert_requested,
        )


if __name__ == "__main__":
    sys.exit(main())
