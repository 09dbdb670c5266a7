"""Where the worker's time goes: py-spy (``--idle``, all pool processes) summarised.

:func:`recording` attaches ``py-spy record --subprocesses --idle -f raw`` to a worker's
main process for the duration of a block; :func:`summarize` reads the collapsed stacks
of the *pool processes* (the ones that run atoms) and splits their wall time into
categories, plus the inclusive share of the celeryflow functions on the atom path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")

CATEGORIES = (
    "idle: waiting for the next message",
    "Celery task overhead (trace, ack, signals)",
    "logbook: SQLite write-lock wait (BEGIN IMMEDIATE)",
    "logbook: flow row lock + read (lock_flow)",
    "logbook: other SQL statements (driver/database)",
    "logbook: commit",
    "logbook: pool checkout / pre-ping",
    "logbook: SQLAlchemy Python (ORM, compile, session)",
    "publish next atoms (kombu/redis)",
    "heartbeat registration",
    "the atom's own code",
    "celeryflow Python (other)",
)

#: celeryflow functions whose inclusive share is reported (module suffix, function).
FUNCTIONS = (
    ("runtime/tasks.py", "run_step"),
    ("runtime/steps.py", "begin"),
    ("runtime/steps.py", "finish"),
    ("runtime/fastpath.py", "begin"),
    ("runtime/fastpath.py", "finish"),
    ("backends/impl_sqlalchemy.py", "run_core"),
    ("backends/base.py", "on_connection"),
    ("runtime/steps.py", "_inputs"),
    ("runtime/logbook.py", "cas_atom"),
    ("runtime/logbook.py", "decrement_successors"),
    ("runtime/logbook.py", "ready_after"),
    ("runtime/logbook.py", "queue_atoms"),
    ("runtime/logbook.py", "settle"),
    ("runtime/logbook.py", "flush"),
    ("backends/impl_sqlalchemy.py", "lock_flow"),
    ("backends/impl_sqlalchemy.py", "run"),
    ("runtime/tasks.py", "_send"),
    ("runtime/dispatch.py", "publish"),
    ("runtime/context.py", "runtime_for"),
    ("runtime/settings.py", "from_sources"),
    ("runtime/tasks.py", "_check_result"),
    ("runtime/heartbeat.py", "beating"),
    ("runtime/backends.py", "resolve"),
)


def available() -> bool:
    return shutil.which("py-spy") is not None


@contextlib.contextmanager
def recording(pid: int, out: Path, rate: int = 250) -> Iterator[Path]:
    """py-spy the process ``pid`` and its children while the block runs."""
    argv = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking",
            "--rate", str(rate), "--format", "raw", "--output", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(1.5)  # py-spy attaches to every process first
    try:
        yield out
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spy.pid, signal.SIGKILL)
            spy.wait(5)


def _frames(stack: str) -> tuple[list[str], list[tuple[str, str]]]:
    procs: list[str] = []
    frames: list[tuple[str, str]] = []
    for part in stack.split(";"):
        if part.startswith("process ") and not frames:
            procs.append(part)
            continue
        m = FRAME.match(part)
        frames.append((m.group("func"), m.group("file")) if m else (part, ""))
    return procs, frames


def _is(name: str, func: str) -> bool:
    """``name`` is ``func`` or a method/closure called ``func`` (``Class.func``)."""
    return name == func or name.endswith("." + func)


def _has(frames: list[tuple[str, str]], func: str, file_part: str = "") -> bool:
    return any(_is(f, func) and file_part in p for f, p in frames)


def _is_driver(func: str, file: str) -> bool:
    return (any(_is(func, name) for name in ("do_execute", "do_executemany", "do_execute_no_params", "wait", "wait_c"))
            or "psycopg" in file or "sqlite3" in file or file.endswith("socket.py"))


def classify(frames: list[tuple[str, str]]) -> str:
    if not _has(frames, "run_step"):
        if _has(frames, "trace_task") or _has(frames, "fast_trace_task"):
            return CATEGORIES[1]
        return CATEGORIES[0]
    start = max(i for i, (f, _) in enumerate(frames) if _is(f, "run_step"))
    inner = frames[start:]
    leaf_func, leaf_file = inner[-1]
    if _has(inner, "_send", "runtime/tasks.py") or _has(inner, "publish", "runtime/dispatch.py"):
        return CATEGORIES[8]
    if _has(inner, "_call_atom"):
        return CATEGORIES[10]
    if any("heartbeat" in p for _, p in inner) and not _has(inner, "begin", "steps.py") \
            and not _has(inner, "finish", "steps.py"):
        return CATEGORIES[9]
    if any("sqlalchemy" in p or "impl_sqlalchemy" in p for _, p in inner):
        if _has(inner, "_on_begin"):
            return CATEGORIES[2]
        if any(_has(inner, name) for name in ("do_ping", "_checkout", "checkout", "connect")) and not _has(
            inner, "_execute_context"
        ):
            return CATEGORIES[6]
        if _has(inner, "do_commit") or (_is(leaf_func, "commit") and "sqlalchemy" not in leaf_file):
            return CATEGORIES[5]
        if _is_driver(leaf_func, leaf_file):
            return CATEGORIES[3] if _has(inner, "lock_flow") else CATEGORIES[4]
        return CATEGORIES[7]
    return CATEGORIES[11]


def summarize(path: Path) -> dict[str, Any]:
    """Shares of the pool processes' wall time by category and by celeryflow function."""
    cats: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    in_task = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        procs, frames = _frames(stack)
        if len(procs) < 2:  # the worker's main process (consumer); pool children have two
            continue
        if _has(frames, "_loop", "runtime/heartbeat.py"):
            continue  # the heartbeat thread sleeps beside the task: not the pool process's time
        total += n
        cat = classify(frames)
        cats[cat] += n
        if _has(frames, "run_step"):
            in_task += n
            seen = set()
            for file_part, func in FUNCTIONS:
                key = f"{file_part.split('/')[-1][:-3]}.{func}"
                if key not in seen and _has(frames, func, file_part):
                    funcs[key] += n
                    seen.add(key)
            leaf = frames[-1]
            leaves[f"{leaf[0]} ({leaf[1]})"] += n
    return {
        "samples": total,
        "in_atom_task": in_task,
        "categories": {c: cats.get(c, 0) / total if total else 0.0 for c in CATEGORIES},
        "functions": {k: v / total for k, v in funcs.most_common()} if total else {},
        "leaves": {k: v / total for k, v in leaves.most_common(12)} if total else {},
    }
