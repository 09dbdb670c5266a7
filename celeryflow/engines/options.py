"""The engine names and executor options TaskFlow programs pass to ``engines.load``.

celeryflow has one engine (Celery). TaskFlow's engine names and options keep a meaning:

* ``engine="serial"``: one atom of the flow at a time (TaskFlow's serial engine);
* ``engine="parallel"`` with ``max_workers=n`` (or an ``executor=`` object with a
  ``max_workers``/``_max_workers``, such as a ``concurrent.futures`` or futurist pool): at
  most ``n`` atoms of the flow queued or running at once; without them, no per-flow limit;
* ``engine="celery"`` / ``"default"``: the same as ``"parallel"`` (``max_workers=`` applies);
* ``engine="worker-based"``: the atoms run on Celery workers on the broker named by the
  TaskFlow options ``url`` / ``transport`` (see :mod:`celeryflow.engines.worker_based`).

The limit is the flow's own dispatch window (:mod:`celeryflow.runtime.window`), kept in
the logbook with the flow, so it holds on remote workers and after a resume too. What runs
at once is also bounded by the workers' concurrency: on the embedded default its thread
pool (``CELERYFLOW_EMBEDDED_CONCURRENCY``, 4), and ``CELERYFLOW_DISPATCH_WINDOW`` (512).
An executor given as a string (``"threads"``, ``"processes"``, ``"greenthreads"``) only
names how TaskFlow ran atoms: celeryflow runs them on Celery workers, so it sets no limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeryflow.exceptions import ConfigurationError

SERIAL = "serial"
WORKER_BASED = ("worker-based", "worker_based")
ENGINES = ("celery", "default", "parallel", SERIAL, *WORKER_BASED)
#: TaskFlow's executor strings (any case), accepted with no limit of their own
EXECUTOR_STRINGS = frozenset({
    "thread", "threads", "threaded", "greenthread", "greenthreads", "greenthreaded",
    "process", "processes", "processed",
})


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigurationError(
            f"Unknown engine {engine!r}: use one of {', '.join(repr(e) for e in ENGINES)} (celeryflow runs every "
            "flow on Celery: 'serial' runs one atom at a time, 'parallel' up to max_workers, 'worker-based' on "
            "the Celery workers of the broker given by url=)"
        )


def max_in_flight(engine: str, options: Mapping[str, Any]) -> int | None:
    """How many atoms of the flow may be queued or running at once (None: no per-flow limit)."""
    check_engine(engine)
    if engine == SERIAL:
        return 1
    workers = options.get("max_workers")
    executor = options.get("executor")
    if workers is None and executor is not None:
        if isinstance(executor, str):
            if executor.lower() not in EXECUTOR_STRINGS:
                raise ConfigurationError(
                    f"Unknown executor {executor!r}: use one of {sorted(EXECUTOR_STRINGS)}, an executor object "
                    "(its max_workers is used), or max_workers=n"
                )
        else:
            workers = getattr(executor, "max_workers", None) or getattr(executor, "_max_workers", None)
    if workers is None:
        return None
    try:
        count = int(workers)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ConfigurationError(f"max_workers must be a positive integer, got {workers!r}")
    return count
