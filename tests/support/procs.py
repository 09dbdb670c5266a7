"""Subprocesses for tests: start workers/conductors, capture their output, and always
stop them.

``ProcessGroup`` is a context manager. Every process it starts runs in a new session
(its own process group, pgid == pid) with stdout+stderr going to
``<log_dir>/<name>.log``. On exit -- normal or by exception -- every process still
running is sent SIGTERM, given a deadline, then its whole process group is sent
SIGKILL (prefork pool children included). Tests never leave processes behind.

    with ProcessGroup(tmp_path, env={"CELERYFLOW_BROKER_URL": redis_url}) as pg:
        w = pg.start("worker1", celery_worker_cmd(hostname="w1@%h"))
        pg.wait_for_log("worker1", "ready.", timeout=30)
        ...
        pg.kill("worker1")            # SIGKILL the whole group: a crash
        assert "Traceback" not in pg.output("worker1")
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

__all__ = [
    "REPO_ROOT",
    "ManagedProcess",
    "ProcessGroup",
    "celery_beat_cmd",
    "celery_worker_cmd",
    "conductor_cmd",
    "stop_all_groups",
    "wait_for",
]


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate()`` until it returns a truthy value and return that value.

    Raises ``AssertionError`` after ``timeout`` seconds, with ``message`` (a string or a
    callable producing one, evaluated at timeout), the last value returned and the last
    ignored exception. Exceptions of the types in ``ignore`` count as "not yet"; any
    other exception propagates at once. The predicate is always called at least once,
    and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_value: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last_value = predicate()
            last_exc = None
        except ignore as exc:
            last_value = None
            last_exc = exc
        if last_value:
            return last_value
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - now)))
    text = message() if callable(message) else message
    if not text:
        text = f"condition {getattr(predicate, '__qualname__', repr(predicate))} not met"
    detail = f"last value: {last_value!r}"
    if last_exc is not None:
        detail += f"; last exception: {type(last_exc).__name__}: {last_exc}"
    raise AssertionError(f"{text} within {timeout:g}s ({detail})")


def _python() -> str:
    return sys.executable


def celery_worker_cmd(
    app: str = "celeryflow_tasks",
    *,
    hostname: str | None = None,
    concurrency: int = 2,
    pool: str = "prefork",
    queues: Sequence[str] | None = None,
    loglevel: str = "INFO",
    extra: Iterable[str] = (),
) -> list[str]:
    """argv for ``celery -A <app> worker`` run with this interpreter (``python -m celery``).

    Gossip and mingle are off (faster start, no cross-test chatter); task events are on
    (``-E``) so Flower/event tests see them.
    """
    argv = [
        _python(), "-m", "celery", "-A", app, "worker",
        "--loglevel", loglevel,
        "--concurrency", str(concurrency),
        "--pool", pool,
        "--without-gossip", "--without-mingle",
        "-E",
    ]
    if hostname:
        argv += ["--hostname", hostname]
    if queues:
        argv += ["--queues", ",".join(queues)]
    argv += list(extra)
    return argv


def celery_beat_cmd(
    app: str = "conductor", *, schedule_file: str | os.PathLike[str] | None = None,
    loglevel: str = "INFO", extra: Iterable[str] = (),
) -> list[str]:
    """argv for ``celery -A <app> beat``; pass ``schedule_file`` under tmp_path."""
    argv = [_python(), "-m", "celery", "-A", app, "beat", "--loglevel", loglevel]
    if schedule_file is not None:
        argv += ["--schedule", os.fspath(schedule_file)]
    return argv + list(extra)


def conductor_cmd(*args: str) -> list[str]:
    """argv for ``python -m conductor`` (the standalone sweep + job conductor loop)."""
    return [_python(), "-m", "conductor", *args]


class ManagedProcess:
    """One started subprocess: ``name``, ``argv``, ``pid``, ``popen``, ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], popen: subprocess.Popen[bytes],
                 log_path: Path, log_file: IO[bytes]) -> None:
        self.name = name
        self.argv = list(argv)
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self._log_file = log_file

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the process (or to its whole process group)."""
        try:
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit; raises ``subprocess.TimeoutExpired`` on timeout."""
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 15.0, sig: int | None = signal.SIGTERM) -> int:
        """Stop gracefully: ``sig`` to the main process (``None``: already sent), wait up
        to ``timeout``, then SIGKILL the whole process group. Always kills leftover
        group members (e.g. orphaned prefork children). Returns the exit code."""
        if self.alive and sig is not None:
            self.send_signal(sig)
        if self.alive:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL, group=True)
                self.popen.wait(10)
        # Leftovers still in the group keep the pgid reserved, so this cannot hit an
        # unrelated process; with no members left it is a harmless ESRCH.
        self.send_signal(signal.SIGKILL, group=True)
        self._close_log()
        rc = self.popen.returncode
        assert rc is not None
        return rc

    def kill(self, *, group: bool = True) -> int:
        """Crash it: SIGKILL the whole process group (``group=False``: only the main
        process, leaving e.g. pool children orphaned until ``stop()``)."""
        self.send_signal(signal.SIGKILL, group=group)
        return self.popen.wait(10)

    def _close_log(self) -> None:
        if not self._log_file.closed:
            self._log_file.close()


_live_groups: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()
_live_lock = threading.Lock()


def stop_all_groups() -> None:
    """Stop every ProcessGroup still open in this interpreter (a safety net used at
    pytest session end and at interpreter exit)."""
    with _live_lock:
        groups = list(_live_groups)
    for group in groups:
        group.stop_all()


class ProcessGroup:
    """Start named subprocesses with a shared base environment; stop them all on exit.

    ``log_dir``: where ``<name>.log`` files go (use ``tmp_path``).
    ``env``: overrides applied on top of ``os.environ`` for every process; a value of
    ``None`` removes the variable. ``PYTHONUNBUFFERED=1`` is set and the repository
    root is put first on ``PYTHONPATH`` so ``tests.*`` modules are importable (e.g. as
    ``CELERYFLOW_IMPORTS``). ``cwd`` defaults to the repository root.
    """

    def __init__(self, log_dir: str | os.PathLike[str], env: Mapping[str, str | None] | None = None,
                 cwd: str | os.PathLike[str] | None = None, stop_timeout: float = 15.0) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str | None] = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else REPO_ROOT
        self.stop_timeout = stop_timeout
        self.procs: dict[str, ManagedProcess] = {}

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> ProcessGroup:
        with _live_lock:
            _live_groups.add(self)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is not None:
                # Show what the processes said: pytest prints captured stderr on failure.
                sys.stderr.write(self.dump(lines=60))
        finally:
            self.stop_all()

    # -- starting --------------------------------------------------------------------
    def build_env(self, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        merged: dict[str, str | None] = dict(os.environ)
        merged.update(self.env)
        merged.update(env or {})
        merged["PYTHONUNBUFFERED"] = "1"
        paths = [str(REPO_ROOT)]
        if merged.get("PYTHONPATH"):
            paths.append(str(merged["PYTHONPATH"]))
        merged["PYTHONPATH"] = os.pathsep.join(paths)
        return {k: v for k, v in merged.items() if v is not None}

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str | None] | None = None,
              cwd: str | os.PathLike[str] | None = None) -> ManagedProcess:
        """Start ``argv`` as process ``name`` (unique within the group; a name whose
        process has exited may be reused, its log is appended to)."""
        old = self.procs.get(name)
        if old is not None and old.alive:
            raise ValueError(f"process {name!r} is already running (pid {old.pid})")
        if not re.fullmatch(r"[\w.@-]+", name):
            raise ValueError(f"process name {name!r} must be a plain file name")
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")  # closed by ManagedProcess.stop()
        log_file.write(f"$ {shlex.join(argv)}\n".encode())
        log_file.flush()
        try:
            popen = subprocess.Popen(
                list(argv),
                cwd=os.fspath(cwd) if cwd is not None else os.fspath(self.cwd),
                env=self.build_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            log_file.close()
            raise
        proc = ManagedProcess(name, argv, popen, log_path, log_file)
        self.procs[name] = proc
        return proc

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.procs[name]

    # -- observing -------------------------------------------------------------------
    def output(self, name: str) -> str:
        return self.procs[name].output()

    def wait_for_log(self, name: str, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Wait until process ``name``'s output matches ``pattern`` (a regex or a
        ``re.Pattern``; for a literal text use ``re.escape``). Fails early, with the
        log tail, if the process exits first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        proc = self.procs[name]

        def found() -> re.Match[str] | None:
            match = rx.search(proc.output())
            if match is None and not proc.alive:
                raise AssertionError(
                    f"process {name} exited with {proc.returncode} before its output matched "
                    f"{rx.pattern!r}; last output:\n{proc.tail()}"
                )
            return match

        return wait_for(found, timeout=timeout, interval=0.1,
                        message=lambda: f"{name}: no output matching {rx.pattern!r}; last output:\n"
                                        f"{proc.tail()}\n")

    def dump(self, lines: int = 40) -> str:
        """The tail of every process's log, for failure messages."""
        out = []
        for proc in self.procs.values():
            out.append(f"----- {proc!r} ({proc.log_path}) -----\n{proc.tail(lines)}\n")
        return "".join(out)

    # -- stopping --------------------------------------------------------------------
    def stop(self, name: str, timeout: float | None = None, sig: int = signal.SIGTERM) -> int:
        return self.procs[name].stop(self.stop_timeout if timeout is None else timeout, sig)

    def kill(self, name: str, *, group: bool = True) -> int:
        return self.procs[name].kill(group=group)

    def stop_all(self) -> None:
        """Stop every process: SIGTERM to all first (they shut down in parallel), then
        wait for each with the group's deadline, SIGKILL-ing the laggards' groups."""
        procs = list(self.procs.values())
        for proc in procs:
            if proc.alive:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for proc in procs:
            proc.stop(timeout=max(0.1, deadline - time.monotonic()), sig=None)
        with _live_lock:
            _live_groups.discard(self)


atexit.register(stop_all_groups)


def unexpected_tracebacks(output: str) -> list[str]:
    """The log records of a worker's output that hold a traceback other than Celery's own record
    of a failed task ("... raised unexpected: ..."): an atom that failed is a FAILED Celery task,
    logged by Celery with its traceback (issue #12, item 6); any other traceback is a bug."""
    records: list[str] = []
    for line in output.splitlines():
        if line.startswith("[20") or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return [r for r in records if "Traceback" in r and "raised unexpected:" not in r]
