"""What the benchmark workers run: no-op atoms, registered flow factories, a plain Celery no-op.

Workers import this module (``CELERYFLOW_IMPORTS=bench.atoms``), so:

* :class:`Noop` is a registered atom class (``Atom`` subclasses register themselves);
* :func:`linear`, :func:`unordered` and :func:`random_dag` are registered flow factories;
* ``bench.noop`` is a plain Celery task on every app (``shared_task``), so the very same
  worker processes run the plain Celery peers (``group``/``chain``) with the same settings.
  It ``INCR``s a Redis counter named by its argument: the peer's completion signal (no
  result backend needed, the cheapest way for plain Celery to say "done").

Bench-only instrumentation, switched on by environment variables read at import:

* ``CELERYFLOW_BENCH_READY=<path>``: touch ``<path>`` when the worker is ready.
* ``CELERYFLOW_BENCH_COUNT=<dir>``: count, in each worker process, SQL transactions
  (``begin``/``commit``/``rollback`` engine events), statements
  (``before_cursor_execute``, by verb and table), pool checkouts, tasks run and messages
  published with their size (``before_task_publish``). Totals go to ``<dir>/<pid>.json``
  after every task (and at process shutdown).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from celery import shared_task, signals

from celeryflow import registry, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow

DAG_SEED = 20240607
DAG_WINDOW = 60
DAG_MAX_PREDS = 3


class Noop(task.Task):
    """Does nothing and returns ``None``."""

    def execute(self) -> None:
        return None


@registry.register
def linear(n: int) -> linear_flow.Flow:
    return linear_flow.Flow(f"bench-linear-{n}").add(*(Noop(f"a{i:05d}") for i in range(n)))


@registry.register
def unordered(n: int) -> unordered_flow.Flow:
    return unordered_flow.Flow(f"bench-unordered-{n}").add(*(Noop(f"a{i:05d}") for i in range(n)))


def dag_edges(n: int, seed: int = DAG_SEED) -> list[tuple[int, int]]:
    """A random DAG on ``n`` nodes (fixed seed): each node gets 0..3 predecessors among the
    ``DAG_WINDOW`` nodes before it (node 0 and about a quarter of the others are roots)."""
    rng = random.Random(seed)
    edges: list[tuple[int, int]] = []
    for v in range(1, n):
        k = rng.choice((0, 1, 1, 2, 2, 3)) if v > DAG_MAX_PREDS else rng.randint(0, 1)
        window = range(max(0, v - DAG_WINDOW), v)
        for u in sorted(rng.sample(window, min(k, len(window)))):
            edges.append((u, v))
    return edges


def critical_path(n: int, edges: list[tuple[int, int]]) -> int:
    """Atoms on the longest path of the DAG."""
    depth = [1] * n
    preds: dict[int, list[int]] = {}
    for u, v in edges:
        preds.setdefault(v, []).append(u)
    for v in range(n):
        for u in preds.get(v, ()):
            depth[v] = max(depth[v], depth[u] + 1)
    return max(depth) if n else 0


@registry.register
def random_dag(n: int, seed: int = DAG_SEED) -> graph_flow.Flow:
    atoms = [Noop(f"a{i:05d}") for i in range(n)]
    flow = graph_flow.Flow(f"bench-dag-{n}").add(*atoms)
    for u, v in dag_edges(n, seed):
        flow.link(atoms[u], atoms[v])
    return flow


# --------------------------------------------------------------------------- plain Celery peer

_redis_lock = threading.Lock()
_redis: Any = None
_redis_pid: int | None = None


def _redis_client() -> Any:
    global _redis, _redis_pid
    with _redis_lock:
        if _redis is None or _redis_pid != os.getpid():
            import redis

            _redis = redis.Redis.from_url(os.environ.get("CELERYFLOW_BROKER_URL", "redis://127.0.0.1:6379/0"))
            _redis_pid = os.getpid()
        return _redis


@shared_task(name="bench.noop", ignore_result=True)
def noop(tag: str | None = None) -> None:
    """A plain Celery no-op; counts itself done in Redis under ``tag``."""
    if tag:
        _redis_client().incr(tag)


# --------------------------------------------------------------------------- instrumentation

READY_ENV = "CELERYFLOW_BENCH_READY"
COUNT_ENV = "CELERYFLOW_BENCH_COUNT"

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def statement_kind(statement: str) -> str:
    """``"UPDATE celeryflow_atoms"``, ``"SELECT celeryflow_flows"``, ``"BEGIN"``..."""
    text = statement.lstrip()
    verb = text.split(None, 1)[0].upper() if text else "?"
    match = _TABLE.search(text)
    if not match or verb not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        return verb
    table = match.group(1)
    if verb == "SELECT" and table == "celeryflow_flows" and "celeryflow_flows.spec" in text[: match.start()]:
        return "SELECT celeryflow_flows.spec"  # a process loading a flow's spec (once per process and flow)
    return f"{verb} {table}"


class Counters:
    """SQL, pool and publish counters for one process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.c: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.published_bytes: list[int] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.c[key] += n

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            sizes = list(self.published_bytes)
            return {
                "pid": os.getpid(),
                "counts": dict(self.c),
                "statements": dict(self.statements),
                "published": len(sizes),
                "published_bytes": sum(sizes),
                "published_max": max(sizes) if sizes else 0,
            }

    def reset(self) -> None:
        with self.lock:
            self.c.clear()
            self.statements.clear()
            self.published_bytes.clear()


COUNTERS = Counters()
_installed = False


def install_counters(counters: Counters = COUNTERS) -> Counters:
    """Count SQL transactions/statements of every SQLAlchemy engine and Celery publishes in this process."""
    global _installed
    if _installed:
        return counters
    _installed = True
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def autocommit(conn: Any) -> bool:
        return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    def on_begin(conn: Any) -> None:
        counters.add("transactions")
        if not autocommit(conn):  # the driver sends BEGIN on its own (autocommit: nothing)
            counters.add("round_trips")
        if threading.current_thread() is not threading.main_thread():
            # prefork pool processes run atoms on their main thread: anything else is
            # background work (the heartbeat thread)
            counters.add(f"transactions_background:{threading.current_thread().name}")

    def on_commit(conn: Any) -> None:
        counters.add("commits")
        if not autocommit(conn):
            counters.add("round_trips")

    def on_rollback(conn: Any) -> None:
        counters.add("rollbacks")
        if not autocommit(conn):
            counters.add("round_trips")

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        kind = statement_kind(statement)
        with counters.lock:
            counters.c["statements"] += 1
            counters.c["round_trips"] += 1
            counters.statements[kind] += 1

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        counters.add("pool_checkouts")

    event.listen(Engine, "begin", on_begin)
    event.listen(Engine, "commit", on_commit)
    event.listen(Engine, "rollback", on_rollback)
    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Pool, "checkout", on_checkout)

    def on_publish(sender: Any = None, body: Any = None, headers: Any = None, **kw: Any) -> None:
        # The JSON payload celery is about to send (body + headers); the transport adds a
        # fixed envelope (and base64 of the body on Redis) on top.
        size = len(json.dumps(body, default=str)) + len(json.dumps(headers, default=str))
        with counters.lock:
            counters.published_bytes.append(size)
            counters.c[f"published:{sender}"] += 1

    signals.before_task_publish.connect(on_publish, weak=False)
    return counters


def _dump(directory: str) -> None:
    path = Path(directory) / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(COUNTERS.snapshot()))
    os.replace(tmp, path)


def _setup_from_env() -> None:
    ready = os.environ.get(READY_ENV)
    if ready:
        def on_ready(sender: Any = None, **kw: Any) -> None:
            Path(ready).write_text(str(os.getpid()))

        signals.worker_ready.connect(on_ready, weak=False)
    directory = os.environ.get(COUNT_ENV)
    if directory:
        install_counters()

        def on_postrun(sender: Any = None, **kw: Any) -> None:
            COUNTERS.add(f"tasks:{getattr(sender, 'name', sender)}")
            _dump(directory)

        def on_child_init(**kw: Any) -> None:
            # A prefork child starts from the parent's counters: start from zero.
            COUNTERS.reset()

        signals.task_postrun.connect(on_postrun, weak=False)
        signals.worker_process_init.connect(on_child_init, weak=False)
        signals.worker_process_shutdown.connect(lambda **kw: _dump(directory), weak=False)


_setup_from_env()
