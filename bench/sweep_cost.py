"""What a sweep costs when nothing is stalled: O(stalled flows), not O(history).

    python bench/sweep_cost.py [--flows 50000] [--postgres URL]

Fills a private PostgreSQL schema with finished flows (5 atoms each), then times the
conductor's sweep and prints the query plans of its two candidate queries (both must
be index scans: ``ix_celeryflow_atoms_state_heartbeat`` and
``ix_celeryflow_flows_state_progress``). The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid
from typing import Any

from celery import Celery
from sqlalchemy import insert, select

from bench.pgschema import DEFAULT_URL, private_schema
from celeryflow import sweep
from celeryflow.persistence import backends
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.runtime.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=50_000)
    parser.add_argument("--postgres", default=DEFAULT_URL)
    args = parser.parse_args()
    with private_schema(args.postgres, "sweepcost") as url:
        backend = backends.fetch(url)
        backend.upgrade()
        old = utcnow() - dt.timedelta(days=1)
        for _ in range(0, args.flows, 5000):
            flows = [dict(uuid=str(uuid.uuid4()), name="f", state="SUCCESS", epoch=1, outstanding=0,
                          progress_at=old, created_at=old, updated_at=old) for _ in range(5000)]
            atoms = [dict(flow_uuid=f["uuid"], name=f"a{i}", uuid=str(uuid.uuid4()), kind="task", state="SUCCESS",
                          intention="EXECUTE", queued=False, waiting=0, rwaiting=0, attempts=1, progress=1.0,
                          heartbeat_at=old) for f in flows for i in range(5)]

            def fill(session: Any, flows: Any = flows, atoms: Any = atoms) -> None:
                session.execute(insert(FlowRow), flows)
                session.execute(insert(AtomRow), atoms)

            backend.run(fill)
        with backend.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        app = Celery("sweep-cost", set_as_current=False)
        app.conf.broker_url = "memory://"
        sweeper = sweep.Sweeper(app, backend=backend, settings=Settings(heartbeat_timeout=60))
        sweeper.sweep()
        times = []
        for _ in range(9):
            began = time.perf_counter()
            report = sweeper.sweep()
            times.append(time.perf_counter() - began)
        print(f"{args.flows} finished flows, {args.flows * 5} atoms: sweep examined {report.examined} flows, "
              f"median {statistics.median(times) * 1000:.1f} ms")
        cutoff = utcnow() - dt.timedelta(seconds=60)
        with backend.engine.connect() as conn:
            for name, query in (
                ("stale heartbeats", select(AtomRow.flow_uuid).where(
                    AtomRow.state.in_(("RUNNING", "REVERTING")), AtomRow.heartbeat_at < cutoff,
                    AtomRow.queued.is_(False)).distinct().limit(500)),
                ("stalled flows", _stalled(cutoff)),
            ):
                sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
                print(f"\n-- {name}")
                print("\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql)))


def _stalled(cutoff: dt.datetime) -> Any:
    captured: list[Any] = []

    class Capture:
        def execute(self, stmt: Any) -> list[Any]:
            captured.append(stmt)
            return []

    sweep.stalled_flows(Capture(), cutoff, 500)  # type: ignore[arg-type]
    return captured[0]


if __name__ == "__main__":
    main()
