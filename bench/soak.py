"""Soak test (not a CI test): ~100 flows on real workers while workers are killed at random.

    python bench/soak.py                       # 100 flows, 3 workers, 2 conductors, a kill every 2-6 s
    python bench/soak.py --flows 200 --kill-every 0.5 3 --json result.json

Needs Redis and PostgreSQL on this machine (``--redis``, ``--postgres``). It creates a
private PostgreSQL schema and claims a free Redis db the way the test suite does
(flushed before and after), starts ``celery -A celeryflow_tasks worker`` processes and ``python -m
conductor`` processes, submits the flows (``tests.recovery.atoms.soak_flow``: head ->
W parallel chains of depth D -> tail), and while they run kills a random worker
with SIGKILL (the whole worker, or one pool child) and starts a new one. When every
flow has finished (or ``--deadline`` passed) it stops everything and reports, from
the logbook's event log:

* lost transitions: flows that did not end as expected (SUCCESS, or REVERTED for the
  every ``--fail-every``-th flow whose last atom fails), atoms of such flows not
  SUCCESS (resp. not REVERTED: every atom of those flows executed, so each must be
  compensated);
* duplicated transitions: an atom recorded SUCCESS (or REVERTED) more than once, a flow
  finishing twice;
* re-executions (at-least-once: expected after kills), reclaims, resends, timings.

Exit status 0 only when nothing was lost or duplicated. Every loop is bounded in
time and every process it started is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
from sqlalchemy.pool import NullPool  # noqa: E402

from tests.support.procs import ProcessGroup, celery_worker_cmd, conductor_cmd  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flows", type=int, default=100)
    p.add_argument("--width", type=int, default=3, help="parallel chains per flow")
    p.add_argument("--depth", type=int, default=3, help="atoms per chain")
    p.add_argument("--delay", type=float, default=0.15, help="seconds each atom sleeps")
    p.add_argument("--fail-every", type=int, default=5,
                   help="every Nth flow's last atom fails: it must end REVERTED, each atom reverted once (0: none)")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--conductors", type=int, default=2)
    p.add_argument("--kill-every", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    p.add_argument("--heartbeat-timeout", type=float, default=4.0)
    p.add_argument("--heartbeat-interval", type=float, default=0.5)
    p.add_argument("--sweep-interval", type=float, default=1.0)
    p.add_argument("--max-deliveries", type=int, default=50, help="high: a soak kills at random, not a poison")
    p.add_argument("--deadline", type=float, default=900.0, help="seconds before giving up")
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--postgres", default=os.environ.get("CELERYFLOW_TEST_POSTGRES_URL",
                                                        "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the report here")
    p.add_argument("--keep-logs", action="store_true", help="print where process logs are and keep them")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    from tests.fixtures_services import RedisDbPool

    host, _, port = args.redis.split("://", 1)[-1].rstrip("/").partition(":")
    pool = RedisDbPool(host or "127.0.0.1", int(port or 6379))
    db, token = pool.acquire("soak")
    broker = f"{args.redis.rstrip('/')}/{db}"
    rclient = pool.client(db)
    rclient.flushdb()
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    schema = f"soak_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    logbook = (make_url(args.postgres).set(drivername="postgresql")
               .update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))
    tmp = Path(tempfile.mkdtemp(prefix="celeryflow-soak-"))
    trace = str(tmp / "trace.log")
    env = {
        "CELERYFLOW_BROKER_URL": broker,
        "CELERYFLOW_BACKEND": logbook,
        "CELERYFLOW_IMPORTS": "tests.recovery.atoms",
        "CELERYFLOW_HEARTBEAT_TIMEOUT": str(args.heartbeat_timeout),
        "CELERYFLOW_HEARTBEAT_INTERVAL": str(args.heartbeat_interval),
        "CELERYFLOW_SWEEP_INTERVAL": str(args.sweep_interval),
        "CELERYFLOW_MAX_DELIVERIES": str(args.max_deliveries),
        "CELERYFLOW_RESULT_BACKEND": "",
    }
    os.environ.update(env)
    report: dict[str, Any] = {"seed": seed, "flows": args.flows, "params": vars(args)}
    try:
        from celeryflow.persistence import backends

        backend = backends.fetch(logbook)
        backend.upgrade()
        with ProcessGroup(tmp / "procs", env=env) as group:
            report.update(_soak(args, rng, group, backend, trace))
            if args.keep_logs:
                print(f"process logs: {tmp / 'procs'}")
        backends.close_all(logbook)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
        rclient.flushdb()
        rclient.close()
        pool.release(db, token)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    ok = report["lost_transitions"] == 0 and report["duplicated_transitions"] == 0
    print(f"\nsoak: {args.flows} flows, {report['kills']} kills, lost {report['lost_transitions']}, "
          f"duplicated {report['duplicated_transitions']}, re-executions {report['re_executions']}, "
          f"{report['seconds']:.1f}s -> {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def _start_worker(group: ProcessGroup, n: int, concurrency: int) -> str:
    name = f"worker{n}"
    group.start(name, celery_worker_cmd(hostname=f"{name}@%h", concurrency=concurrency, loglevel="INFO"))
    return name


def _pool_children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _soak(args: argparse.Namespace, rng: random.Random, group: ProcessGroup, backend: Any,
          trace: str) -> dict[str, Any]:
    from celeryflow.handle import submit
    from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow
    from celeryflow_tasks.app import make_app
    from tests.recovery import atoms

    for i in range(args.conductors):
        group.start(f"conductor{i}", conductor_cmd("--name", f"conductor{i}", "--loglevel", "WARNING"))
    live: list[str] = []
    serial = 0
    for _ in range(args.workers):
        live.append(_start_worker(group, serial, args.concurrency))
        serial += 1
    for name in live:
        group.wait_for_log(name, r"ready\.", timeout=60)

    app = make_app("soak-submitter")
    started = time.monotonic()
    ids = []
    expected: dict[str, str] = {}
    for i in range(args.flows):
        fail = bool(args.fail_every) and i % args.fail_every == args.fail_every - 1
        handle = submit(atoms.soak_flow, app=app, factory_kwargs={
            "trace": trace, "width": args.width, "depth": args.depth, "delay": args.delay, "fail": fail})
        ids.append(handle.id)
        expected[handle.id] = "REVERTED" if fail else "SUCCESS"
    submitted = time.monotonic() - started

    def unfinished() -> int:
        def count(session: Any) -> int:
            rows = session.execute(select(FlowRow.state).where(FlowRow.uuid.in_(ids))).all()
            return sum(1 for (state,) in rows if state not in ("SUCCESS", "FAILURE", "REVERTED"))

        return int(backend.run(count, readonly=True))

    kills = Counter[str]()
    deadline = started + args.deadline
    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
    while time.monotonic() < deadline and unfinished():
        if time.monotonic() >= next_kill:
            victim = rng.choice(live)
            proc = group.procs[victim]
            children = _pool_children(proc.pid)
            if children and rng.random() < 0.5:
                os.kill(rng.choice(children), signal.SIGKILL)  # one pool child: the worker forks another
                kills["pool_child"] += 1
            else:
                group.kill(victim)  # the whole worker, pool included
                kills["whole_worker"] += 1
                live.remove(victim)
                live.append(_start_worker(group, serial, args.concurrency))
                serial += 1
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
        time.sleep(0.2)
    finished_in = time.monotonic() - started
    group.stop_all()

    def collect(session: Any) -> dict[str, Any]:
        flows = {u: s for u, s in session.execute(select(FlowRow.uuid, FlowRow.state).where(FlowRow.uuid.in_(ids)))}
        atom_states = session.execute(
            select(AtomRow.flow_uuid, AtomRow.name, AtomRow.state).where(AtomRow.flow_uuid.in_(ids))).all()
        events = session.execute(
            select(EventRow.flow_uuid, EventRow.atom_name, EventRow.kind, EventRow.old_state, EventRow.new_state,
                   EventRow.details).where(EventRow.flow_uuid.in_(ids))).all()
        return {"flows": flows, "atoms": atom_states, "events": events}

    data = backend.run(collect, readonly=True)
    flows: dict[str, str] = data["flows"]
    successes = Counter[tuple[str, str]]()
    reverts = Counter[tuple[str, str]]()
    flow_ends = Counter[str]()
    reclaims = 0
    for flow_uuid, atom, kind, old, new, details in data["events"]:
        if kind == "atom" and new == "SUCCESS" and old != "SUCCESS":
            successes[(flow_uuid, atom)] += 1
        if kind == "atom" and new == "REVERTED" and old != "REVERTED":
            reverts[(flow_uuid, atom)] += 1
        if kind == "flow" and new in ("SUCCESS", "FAILURE", "REVERTED") and old != new:
            flow_ends[flow_uuid] += 1
        if details and "worker lost" in details:
            reclaims += 1
    resends = len(backend.run(lambda s: s.execute(
        select(FlowRow.uuid).where(FlowRow.uuid.in_(ids), FlowRow.meta.contains("sweep_resends"))).all()))
    lost_flows = [u for u, s in flows.items() if s != expected[u]]
    # a successful flow: every atom SUCCESS; a compensated one: every atom (all executed) REVERTED
    lost_atoms = [(f, n, s) for f, n, s in data["atoms"] if flows.get(f) == expected[f] and s != expected[f]]
    dup_atoms = {f"{f}/{a}": c for (f, a), c in successes.items() if c > 1}
    dup_atoms.update({f"{f}/{a} reverted": c for (f, a), c in reverts.items() if c > 1})
    dup_flows = {f: c for f, c in flow_ends.items() if c > 1}
    executions = atoms.counts(trace)  # by atom name across flows
    n_atoms = len(data["atoms"])
    total_exec = sum(executions.values())
    return {
        "atoms": n_atoms,
        "kills": sum(kills.values()),
        "kills_by_kind": dict(kills),
        "flow_states": dict(Counter(flows.values())),
        "lost_transitions": len(lost_flows) + len(lost_atoms),
        "lost_flows": lost_flows[:20],
        "lost_atoms": lost_atoms[:20],
        "duplicated_transitions": len(dup_atoms) + len(dup_flows),
        "duplicated": {"atoms": dict(list(dup_atoms.items())[:20]), "flows": dup_flows},
        "expected_states": dict(Counter(expected.values())),
        "success_transitions": sum(successes.values()),
        "reverted_transitions": sum(reverts.values()),
        "executions": total_exec,
        "re_executions": total_exec - n_atoms,
        "reclaimed_atoms": reclaims,
        "flows_with_resends": resends,
        "submit_seconds": round(submitted, 2),
        "seconds": round(finished_in, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
