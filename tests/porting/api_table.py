"""TaskFlow's public modules and names, and which of them celeryflow has (the porting guide's table).

``python -m tests.porting.api_table`` prints the table of docs/porting-from-taskflow.md
(section 6) from the installed taskflow and this celeryflow; tests/porting/test_api_table.py
checks the table in the guide covers every module and claims nothing celeryflow lacks.
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

#: TaskFlow's public modules (its user documentation's reference), without the ``taskflow.`` prefix
PUBLIC_MODULES = (
    "atom", "task", "retry", "flow", "deciders", "states", "exceptions", "formatters", "logging", "storage",
    "patterns.linear_flow", "patterns.unordered_flow", "patterns.graph_flow",
    "engines", "engines.base", "engines.helpers", "engines.action_engine.engine",
    "engines.worker_based.engine", "engines.worker_based.worker",
    "persistence.base", "persistence.models", "persistence.path_based", "persistence.backends",
    "persistence.backends.impl_dir", "persistence.backends.impl_memory", "persistence.backends.impl_sqlalchemy",
    "persistence.backends.impl_zookeeper",
    "jobs.base", "jobs.backends", "jobs.backends.impl_redis", "jobs.backends.impl_zookeeper",
    "jobs.backends.impl_etcd",
    "conductors.base", "conductors.backends", "conductors.backends.impl_blocking",
    "conductors.backends.impl_nonblocking", "conductors.backends.impl_executor",
    "listeners.base", "listeners.capturing", "listeners.claims", "listeners.logging", "listeners.printing",
    "listeners.timing",
    "types.failure", "types.notifier", "types.graph", "types.tree", "types.sets", "types.timing",
    "types.entity", "types.latch",
    "version",
)


#: module -> what its status means (same / different and why / absent and why)
NOTES = {
    "atom": "same: the base of tasks and retries",
    "task": "same (`REVERT_RESULT`/`REVERT_FLOW_FAILURES` name `revert()`'s arguments as in TaskFlow)",
    "retry": "same (plus `delay=`/`backoff=`)",
    "flow": "same",
    "deciders": "absent: depths are strings or `celeryflow.graphing.Depth`; `pick_widest` is internal to TaskFlow",
    "states": "same names; the check_* helpers are TaskFlow's engine internals (celeryflow validates in the "
              "logbook); SCHEDULING/WAITING/ANALYZING are what `run_iter()` yields",
    "exceptions": "same names; `TaskFlowException` is celeryflow's base error `CeleryflowError` (so "
                  "`except TaskFlowException` catches celeryflow's own errors too)",
    "formatters": "same `FailureFormatter` (what `DynamicLoggingListener` logs for a failed atom)",
    "logging": "same: `BLATHER`/`TRACE` level, `getLogger` (a `logging.LoggerAdapter` with `trace()` and "
               "`warn()`)",
    "storage": "no module: `engine.storage` is celeryflow's `Storage` (celeryflow.engines.storage) with "
               "TaskFlow's public properties and getters; the META_*/RETRY_* keys are TaskFlow's storage internals",
    "patterns.linear_flow": "same",
    "patterns.unordered_flow": "same (atoms not started when a failure is recorded stay unstarted)",
    "patterns.graph_flow": "same, `TargetedFlow` included (`set_target`, `reset_target`)",
    "engines": "same; `flow_from_detail` (rebuild a flow from a detail's factory) absent: "
               "`load_from_detail` does it",
    "engines.base": "absent: the engine is `celeryflow.engines.Engine` (one class)",
    "engines.helpers": "absent: the same functions are in `celeryflow.engines`",
    "engines.action_engine.engine": "absent: `engine='serial'` / `'parallel'` pick the per-flow limit, not a class "
                                    "(celeryflow/engines/options.py)",
    "engines.worker_based.engine": "absent: `engine='worker-based'` runs on Celery workers "
                                   "(celeryflow/engines/worker_based)",
    "engines.worker_based.worker": "different: `Worker(...)` is a Celery worker on that broker",
    "persistence.base": "absent: backends are celeryflow's (`persistence.backends.base.Backend`)",
    "persistence.models": "same classes; the atom-detail helpers are TaskFlow internals",
    "persistence.path_based": "absent: TaskFlow's base of its file and ZooKeeper backends; `dir://` is an SQLite "
                              "logbook in the directory (persistence.backends.impl_dir)",
    "persistence.backends": "`fetch` same (URL or TaskFlow's conf dict), `backend` the same context manager; "
                            "no stevedore `BACKEND_NAMESPACE` (backends are chosen by URL scheme)",
    "persistence.backends.impl_dir": "different: `dir://` / `file://` URLs through `fetch` (an SQLite logbook "
                                     "in that directory); no `DirBackend`/`Connection` classes",
    "persistence.backends.impl_memory": "`memory://` is SQLite in memory; TaskFlow's fake filesystem is internal",
    "persistence.backends.impl_sqlalchemy": "same class name, celeryflow's schema (Alembic, its own version table)",
    "persistence.backends.impl_zookeeper": "absent: no ZooKeeper (logbooks are SQL)",
    "jobs.base": "absent as a module: jobs and boards are in `celeryflow.jobs` (`JobPriority` there)",
    "jobs.backends": "`fetch` same (`board`: `sql` or `redis`), `backend` the same context manager; no "
                     "stevedore `BACKEND_NAMESPACE`",
    "jobs.backends.impl_redis": "same board on Redis; jobs are `celeryflow.jobs` jobs",
    "jobs.backends.impl_zookeeper": "absent: no ZooKeeper (use `board: sql` or `redis`)",
    "jobs.backends.impl_etcd": "absent: no etcd (use `board: sql` or `redis`)",
    "conductors.base": "same",
    "conductors.backends": "`fetch` same (`blocking`, `nonblocking`)",
    "conductors.backends.impl_blocking": "same",
    "conductors.backends.impl_nonblocking": "same",
    "conductors.backends.impl_executor": "absent: the base of TaskFlow's two conductors; use `blocking` / "
                                         "`nonblocking`",
    "listeners.base": "same: `with Listener(engine):` registers and deregisters",
    "listeners.capturing": "same",
    "listeners.claims": "same (for conductors' jobs)",
    "listeners.logging": "same",
    "listeners.printing": "same",
    "listeners.timing": "same (measured in the caller from the notifications; saved as `duration` metadata)",
    "types.failure": "same (types and messages survive processes)",
    "types.notifier": "same `Notifier`; `Listener`/`RestrictedNotifier`/`register_deregister` are TaskFlow "
                      "internals",
    "types.graph": "absent: TaskFlow's networkx wrappers; celeryflow compiles flows itself",
    "types.tree": "absent: TaskFlow internals",
    "types.sets": "absent: TaskFlow internals (`celeryflow.atom.OrderedSet` exists)",
    "types.timing": "absent: TaskFlow internals",
    "types.entity": "absent: TaskFlow internals (conductor entities)",
    "types.latch": "absent: TaskFlow internals",
    "version": "absent: `celeryflow.__version__`",
}


@dataclass
class Row:
    module: str
    present: list[str]
    absent: list[str]
    module_exists: bool


def public_names(module_name: str) -> list[str]:
    """The public names a TaskFlow module defines: classes, functions and constants at its top level,
    and the names it re-exports from other taskflow modules (read from its source: modules that need
    ZooKeeper or etcd clients are listed too)."""
    import taskflow

    base = Path(taskflow.__file__).parent.joinpath(*module_name.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper())
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taskflow"):
            names.update(a.asname or a.name for a in node.names
                         if not (a.asname or a.name)[0].islower() or module_name == "engines")
    return sorted(n for n in names if not n.startswith("_") and n != "LOG")


def rows() -> list[Row]:
    out = []
    for module_name in PUBLIC_MODULES:
        try:
            ours = importlib.import_module(f"celeryflow.{module_name}")
        except ImportError:
            ours = None
        present, absent = [], []
        for name in public_names(module_name):
            (present if ours is not None and hasattr(ours, name) else absent).append(name)
        out.append(Row(module_name, present, absent, ours is not None))
    return out


def markdown() -> str:
    lines = ["| TaskFlow module | names here | names not here | status |", "|---|---|---|---|"]
    for row in rows():
        present = ", ".join(f"`{n}`" for n in row.present) or "—"
        absent = ", ".join(f"`{n}`" for n in row.absent) or "—"
        module = f"`taskflow.{row.module}`" + ("" if row.module_exists else " (no module here)")
        lines.append(f"| {module} | {present} | {absent} | {NOTES[row.module]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
