"""The logbook's per-atom floor: celeryflow's two worker transactions vs the same statements
issued more cheaply, in one process, with no broker and no contention.

For each atom of an unordered flow, ``steps.begin`` then ``steps.finish`` (what a worker
runs around an atom) are timed against:

* the same statements (lock/read the flow row, compare-and-set the atom, count the flow's
  outstanding atoms, insert the event) through SQLAlchemy Core with statements built once;
* on SQLite, the same statements through the raw ``sqlite3`` driver (the floor).

Run as a module (one JSON line)::

    python -m bench.floor --backend sqlite:////tmp/x.db --n 2000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
import uuid
from typing import Any


def _seed(engine: Any, n: int) -> str:
    from sqlalchemy import insert

    from celeryflow.persistence.tables import AtomRow, Base, FlowRow, utcnow

    Base.metadata.create_all(engine)
    flow_uuid = str(uuid.uuid4())
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(FlowRow.__table__), {
            "uuid": flow_uuid, "name": "floor", "state": "RUNNING", "epoch": 1, "outstanding": n,
            "progress_at": now, "created_at": now, "updated_at": now,
        })
        conn.execute(insert(AtomRow.__table__), [{
            "flow_uuid": flow_uuid, "name": f"a{i:05d}", "uuid": str(uuid.uuid4()), "kind": "task",
            "state": "PENDING", "intention": "EXECUTE", "queued": True, "waiting": 0, "rwaiting": 0,
            "attempts": 0, "progress": 0.0,
        } for i in range(n)])
    return flow_uuid


def _event(flow_uuid: str, name: str, old: str, new: str) -> dict[str, Any]:
    from celeryflow.persistence.tables import utcnow

    return {"flow_uuid": flow_uuid, "atom_name": name, "kind": "atom", "old_state": old, "new_state": new,
            "epoch": 1, "worker": "w", "details": None, "at": utcnow()}


def core(url: str, n: int) -> tuple[float, float]:
    """The same two transactions per atom through SQLAlchemy Core, statements built once."""
    from sqlalchemy import bindparam, create_engine, event, insert, select, update

    from celeryflow.persistence.backends.impl_sqlalchemy import install_sqlite_events, normalize_url
    from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow

    parsed = normalize_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        engine = create_engine(parsed)
        install_sqlite_events(engine, 30.0, wal=True)
    else:
        engine = create_engine(parsed, isolation_level="READ COMMITTED")
    del event
    flow_uuid = _seed(engine, n)
    flows, atoms, events = FlowRow.__table__, AtomRow.__table__, EventRow.__table__
    lock = select(flows.c.epoch, flows.c.state, flows.c.outstanding).where(flows.c.uuid == bindparam("u"))
    if not sqlite:
        lock_shared, lock_update = lock.with_for_update(read=True), lock.with_for_update()
    else:
        lock_shared = lock_update = lock
    cas = (
        update(atoms)
        .where(atoms.c.flow_uuid == bindparam("u"), atoms.c.name == bindparam("n"), atoms.c.state == bindparam("old"))
        .values(state=bindparam("new"), worker=bindparam("w"), started_at=bindparam("t"))
    )
    count = update(flows).where(flows.c.uuid == bindparam("u")).values(
        outstanding=flows.c.outstanding - 1, progress_at=bindparam("t"))
    add_event = insert(events)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        name = f"a{i:05d}"
        with engine.begin() as conn:
            conn.execute(lock_shared, {"u": flow_uuid}).one()
            claimed = conn.execute(cas, {"u": flow_uuid, "n": name, "old": "PENDING", "new": "RUNNING", "w": "w",
                                         "t": utcnow()})
            assert claimed.rowcount == 1
            conn.execute(add_event, [_event(flow_uuid, name, "PENDING", "RUNNING")])
        with engine.begin() as conn:
            conn.execute(lock_update, {"u": flow_uuid}).one()
            done = conn.execute(cas, {"u": flow_uuid, "n": name, "old": "RUNNING", "new": "SUCCESS", "w": "w",
                                      "t": utcnow()})
            assert done.rowcount == 1
            conn.execute(count, {"u": flow_uuid, "t": utcnow()})
            conn.execute(add_event, [_event(flow_uuid, name, "RUNNING", "SUCCESS")])
    wall, used = (time.perf_counter() - started) / n, (time.process_time() - cpu) / n
    engine.dispose()
    return wall * 1000, used * 1000


def raw_sqlite(path: str, n: int) -> tuple[float, float]:
    """The same statements through the sqlite3 driver: the floor."""
    from sqlalchemy import create_engine

    from celeryflow.persistence.tables import utcnow

    engine = create_engine(f"sqlite:///{path}")
    flow_uuid = _seed(engine, n)
    engine.dispose()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        name = f"a{i:05d}"
        for old, new in (("PENDING", "RUNNING"), ("RUNNING", "SUCCESS")):
            now = str(utcnow())
            con.execute("BEGIN IMMEDIATE")
            con.execute("SELECT epoch, state, outstanding FROM celeryflow_flows WHERE uuid = ?",
                        (flow_uuid,)).fetchone()
            cur = con.execute(
                "UPDATE celeryflow_atoms SET state = ?, worker = ?, started_at = ? "
                "WHERE flow_uuid = ? AND name = ? AND state = ?", (new, "w", now, flow_uuid, name, old))
            assert cur.rowcount == 1
            if new == "SUCCESS":
                con.execute("UPDATE celeryflow_flows SET outstanding = outstanding - 1, progress_at = ? WHERE uuid = ?",
                            (now, flow_uuid))
            con.execute(
                "INSERT INTO celeryflow_events (flow_uuid, atom_name, kind, old_state, new_state, epoch, worker, "
                "details, at) VALUES (?, ?, 'atom', ?, ?, 1, 'w', NULL, ?)", (flow_uuid, name, old, new, now))
            con.execute("COMMIT")
    wall, used = (time.perf_counter() - started) / n, (time.process_time() - cpu) / n
    con.close()
    return wall * 1000, used * 1000


def celeryflow_steps(url: str, n: int) -> tuple[float, float]:
    """``steps.begin`` + ``steps.finish`` for each atom of an unordered flow (no broker involved)."""
    from celery import Celery

    from bench import atoms
    from celeryflow import engines
    from celeryflow.install import install
    from celeryflow.runtime import control, steps
    from celeryflow.runtime.logbook import EXECUTE

    app = Celery("celeryflow-bench-floor", set_as_current=False)
    app.conf.broker_url = "memory://"
    install(app, backend=url, beat=False)
    engine = engines.load(atoms.unordered(n), app=app)
    engine.prepare()
    comp, flow_uuid, backend = engine.compile(), engine.flow_uuid, engine.backend
    dispatch = control.start(backend, comp, flow_uuid, owner="bench", window=n)  # every atom, no refills
    started, cpu = time.perf_counter(), time.process_time()
    for name in dispatch.execute:
        begun = steps.begin(backend, comp, flow_uuid, name, dispatch.epoch, EXECUTE, "w")
        assert begun.verdict is steps.Verdict.RUN, begun
        steps.finish(backend, comp, flow_uuid, name, dispatch.epoch, EXECUTE, "w", result=None)
    wall, used = (time.perf_counter() - started) / n, (time.process_time() - cpu) / n
    return wall * 1000, used * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("celeryflow", "core", "raw"), required=True)
    parser.add_argument("--backend", required=True, help="a fresh logbook URL (raw: an SQLite file path URL)")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.variant == "celeryflow":
        wall, cpu = celeryflow_steps(args.backend, args.n)
    elif args.variant == "core":
        wall, cpu = core(args.backend, args.n)
    else:
        wall, cpu = raw_sqlite(args.backend.split("sqlite:///", 1)[1], args.n)
    print(json.dumps({"variant": args.variant, "n": args.n, "wall_ms": wall, "cpu_ms": cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
