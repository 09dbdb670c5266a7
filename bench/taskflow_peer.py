"""The TaskFlow peer: the same no-op flows on OpenStack TaskFlow 6.x's parallel engine.

TaskFlow is a bench-only dependency (``bench/requirements.txt``), never a project one.
Run as a module, one configuration per process (a clean interpreter per measurement)::

    python -m bench.taskflow_peer --shape linear --n 100 --runs 3 [--logbook sqlite:///x.db]

prints one JSON line ``{"times": [...], "atoms": n, ...}``. The parallel engine runs
with ``max_workers=2`` (threads), matching the two prefork processes of the Celery
worker the celeryflow cases use. ``--logbook`` adds TaskFlow's SQL persistence (its own
schema, created with ``upgrade()``; a fresh logbook and flow detail per run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any


def available() -> bool:
    try:
        import taskflow  # noqa: F401
    except ImportError:
        return False
    return True


def build(shape: str, n: int) -> Any:
    from taskflow import task
    from taskflow.patterns import graph_flow, linear_flow, unordered_flow

    class Noop(task.Task):
        def execute(self) -> None:
            return None

    atoms = [Noop(f"a{i:05d}") for i in range(n)]
    if shape == "linear":
        return linear_flow.Flow(f"bench-linear-{n}").add(*atoms)
    if shape == "unordered":
        return unordered_flow.Flow(f"bench-unordered-{n}").add(*atoms)
    if shape == "dag":
        from bench.atoms import dag_edges

        flow = graph_flow.Flow(f"bench-dag-{n}").add(*atoms)
        for u, v in dag_edges(n):
            flow.link(atoms[u], atoms[v])
        return flow
    raise ValueError(f"unknown shape {shape!r}")


def run_once(shape: str, n: int, backend: Any = None, max_workers: int = 2) -> float:
    from taskflow import engines

    flow = build(shape, n)
    started = time.perf_counter()
    engine = engines.load(flow, engine="parallel", max_workers=max_workers, backend=backend)
    engine.run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("linear", "unordered", "dag"), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--logbook", default=None, help="a TaskFlow SQL persistence URL (sqlite:///...)")
    parser.add_argument("--max-workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not available():
        print(json.dumps({"error": "taskflow is not installed (pip install -r bench/requirements.txt)"}))
        return 2
    backend = None
    if args.logbook:
        from taskflow.persistence import backends

        backend = backends.fetch({"connection": args.logbook})
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
    import taskflow.version

    times = [run_once(args.shape, args.n, backend, args.max_workers) for _ in range(args.runs)]
    print(json.dumps({
        "times": times, "atoms": args.n, "shape": args.shape, "logbook": bool(args.logbook),
        "taskflow": taskflow.version.version_string(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
