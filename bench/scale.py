"""Scale: a big flow's time to compile + validate + persist + first dispatch, peak memory
of the submitting process, and broker bytes per message/atom.

Run in a fresh process per measurement (so peak RSS is this flow's), against a Redis db
that no worker consumes (the published messages stay in the queue to be measured)::

    python -m bench.scale --shape linear --n 10000 --broker redis://127.0.0.1:6379/9 \
        --backend sqlite:////tmp/x.db [--tracemalloc]
    python -m bench.scale --peer chain --n 1000 --broker ...   # plain Celery canvas bytes

prints one JSON line. A warm-up flow of 10 atoms runs the same steps first, so one-off
costs (schema creation, first connections, imports) are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

QUEUE = "celery"


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def queue_bytes(broker: str) -> dict[str, Any]:
    """Messages waiting in the default queue: count, total and largest size (bytes as stored)."""
    import redis

    client = redis.Redis.from_url(broker)
    count = int(client.llen(QUEUE))
    total = largest = 0
    for start in range(0, count, 1000):
        for item in client.lrange(QUEUE, start, start + 999):
            total += len(item)
            largest = max(largest, len(item))
    return {"messages": count, "bytes": total, "largest": largest}


def _app(broker: str, backend: str | None) -> Any:
    os.environ["CELERYFLOW_BROKER_URL"] = broker
    if backend:
        os.environ["CELERYFLOW_BACKEND"] = backend
    os.environ["CELERYFLOW_IMPORTS"] = "bench.atoms"
    import bench.atoms  # noqa: F401  (registers the atoms and bench.noop)
    from celeryflow_tasks.app import make_app

    return make_app("celeryflow-bench-scale")


def submit(app: Any, shape: str, n: int, *, trace: bool = False) -> dict[str, Any]:
    from bench import atoms
    from celeryflow import engines

    factory = {"linear": atoms.linear, "unordered": atoms.unordered, "dag": atoms.random_dag}[shape]
    t0 = time.perf_counter()
    flow = factory(n)
    built = time.perf_counter() - t0
    if trace:
        tracemalloc.start()
    engine = engines.load(flow, app=app)
    t0 = time.perf_counter()
    engine.compile()
    t1 = time.perf_counter()
    engine.validate()
    t2 = time.perf_counter()
    engine.prepare()
    t3 = time.perf_counter()
    engine.start()
    t4 = time.perf_counter()
    out = {
        "build": built, "compile": t1 - t0, "validate": t2 - t1, "persist": t3 - t2, "dispatch": t4 - t3,
        "total": t4 - t0,
    }
    if trace:
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("linear", "unordered", "dag"), default="linear")
    parser.add_argument("--peer", choices=("chain", "group"), default=None,
                        help="measure a plain Celery canvas of --n no-ops instead")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--broker", required=True, help="a Redis db no worker consumes")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    import redis

    client = redis.Redis.from_url(args.broker)
    app = _app(args.broker, args.backend)
    if args.peer:
        from celery import chain, group

        noop = app.tasks["bench.noop"]
        client.delete(QUEUE)
        sigs = [noop.si("peer") for _ in range(args.n)]
        t0 = time.perf_counter()
        (chain(*sigs) if args.peer == "chain" else group(sigs)).apply_async()
        elapsed = time.perf_counter() - t0
        out: dict[str, Any] = {"peer": args.peer, "n": args.n, "dispatch": elapsed, **queue_bytes(args.broker)}
        client.delete(QUEUE)
        print(json.dumps(out))
        return 0
    submit(app, args.shape, 10)  # warm-up: schema, connections, imports
    client.delete(QUEUE)
    baseline = rss_mib()
    out = submit(app, args.shape, args.n, trace=args.tracemalloc)
    out.update(shape=args.shape, n=args.n, rss_baseline_mib=baseline, rss_peak_mib=peak_rss_mib(),
               **queue_bytes(args.broker))
    client.delete(QUEUE)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
