"""celeryflow: reliable, resumable, revertible workflows on Celery.

TaskFlow's model (tasks, flows, engines, persistence, jobs, conductors, retries)
with Celery as the execution engine and a SQL logbook as the source of truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celeryflow import exceptions, states
from celeryflow.exceptions import CeleryflowError
from celeryflow.install import install

if TYPE_CHECKING:  # real types for type checkers; imported lazily at run time
    from celeryflow import engines, retry, task
    from celeryflow.handle import FlowHandle, submit
    from celeryflow.registry import register
    from celeryflow.task import FunctorTask, MapFunctorTask, ReduceFunctorTask, Task

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy: importing celeryflow must stay cheap (workers import it at start) and
    # free of import cycles between the engine and the atom modules.
    if name in ("submit", "FlowHandle"):
        from celeryflow import handle

        return getattr(handle, name)
    if name in ("task", "retry", "engines", "patterns", "registry", "types", "jobs", "conductors", "persistence"):
        import importlib

        return importlib.import_module(f"celeryflow.{name}")
    if name in ("Task", "FunctorTask", "MapFunctorTask", "ReduceFunctorTask"):
        from celeryflow import task

        return getattr(task, name)
    if name == "register":
        from celeryflow.registry import register

        return register
    raise AttributeError(f"module 'celeryflow' has no attribute {name!r}")


__all__ = [
    "CeleryflowError",
    "FlowHandle",
    "FunctorTask",
    "MapFunctorTask",
    "ReduceFunctorTask",
    "Task",
    "__version__",
    "engines",
    "exceptions",
    "install",
    "register",
    "retry",
    "states",
    "submit",
    "task",
]
