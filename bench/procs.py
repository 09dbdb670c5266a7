"""Processes and services for the benchmark: a private Redis db, a fresh logbook, real workers.

Every worker is started in its own session (pgid == pid) and stopped by that id:
SIGTERM (warm shutdown), then SIGKILL of its process group after a deadline. An
``atexit`` hook stops any worker still running, so the bench never leaves
processes behind.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

REDIS_HOST = os.environ.get("CELERYFLOW_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CELERYFLOW_BENCH_REDIS_PORT", "6379"))
POSTGRES_BASE = os.environ.get("CELERYFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO_ROOT = Path(__file__).resolve().parents[1]

# The same claim protocol as the test suite's Redis fixtures (a lock key per db in db 0),
# so a bench and a test run on this machine never share a broker database.
_LOCK_KEY = "celeryflow:tests:redis-db-lock:{}"
_LOCK_TTL = 3600


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def redis_up() -> bool:
    return service_up(REDIS_HOST, REDIS_PORT)


def postgres_up() -> bool:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_BASE)
    return service_up(url.host or "127.0.0.1", url.port or 5432)


@contextlib.contextmanager
def redis_db(holder: str = "bench", timeout: float = 120.0) -> Iterator[int]:
    """Claim a Redis db (1..N-1) for the duration, FLUSHDB before and after."""
    import redis

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, socket_timeout=10)
    try:
        size = int(str(admin.config_get("databases").get("databases", 16)))
    except Exception:
        size = 16
    dbs = list(range(1, size))
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{holder}"
    deadline = time.monotonic() + timeout
    counter = itertools.count(os.getpid())
    db = None
    while db is None:
        start = next(counter)
        for i in range(len(dbs)):
            candidate = dbs[(start + i) % len(dbs)]
            if admin.set(_LOCK_KEY.format(candidate), token, nx=True, ex=_LOCK_TTL):
                db = candidate
                break
        else:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no free Redis database among {dbs} within {timeout} s")
            time.sleep(0.2)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            client.flushdb()
        with contextlib.suppress(Exception):
            if admin.get(_LOCK_KEY.format(db)) == token.encode():
                admin.delete(_LOCK_KEY.format(db))


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the server's test database; yields a logbook URL that uses it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    base = make_url(POSTGRES_BASE).set(drivername="postgresql+psycopg")
    schema = f"cfbench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    raw = POSTGRES_BASE + ("&" if "?" in POSTGRES_BASE else "?") + f"options=-csearch_path%3D{schema}"
    try:
        yield raw
    finally:
        from celeryflow.persistence import backends

        with contextlib.suppress(Exception):
            backends.close_all(raw)
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


_running: dict[int, Worker] = {}


class Worker:
    """``celery -A celeryflow_tasks worker -P prefork -c <n>``, in its own session."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, *, concurrency: int = 2, name: str = "w1") -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.ready_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.ready"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> Worker:
        env = {**os.environ, **self.env, "CELERYFLOW_BENCH_READY": str(self.ready_path)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        argv = [
            sys.executable, "-m", "celery", "-A", "celeryflow_tasks", "worker",
            "--pool", "prefork", "--concurrency", str(self.concurrency),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"bench-{self.name}-{uuid.uuid4().hex[:6]}@%h",
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # closed below: the child keeps its own copy
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(REPO_ROOT))
        log.close()
        _running[self.proc.pid] = self
        deadline = time.monotonic() + timeout
        while not self.ready_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker {self.name} not ready in {timeout} s:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def children(self) -> list[int]:
        """Pids of the prefork pool processes."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None:
            return
        _running.pop(proc.pid, None)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # pool children left behind (or a worker that would not stop): its own process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all() -> None:
    for worker in list(_running.values()):
        worker.stop()


atexit.register(stop_all)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    import platform

    import celery
    import kombu
    import sqlalchemy

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
                break
    redis_version = ""
    with contextlib.suppress(Exception):
        import redis

        redis_version = str(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5).info("server")
                            ["redis_version"])
    pg_version = ""
    if postgres_up():
        with contextlib.suppress(Exception):
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url
            from sqlalchemy.pool import NullPool

            eng = create_engine(make_url(POSTGRES_BASE).set(drivername="postgresql+psycopg"), poolclass=NullPool)
            with eng.connect() as conn:
                pg_version = str(conn.execute(text("SHOW server_version")).scalar()).split()[0]
            eng.dispose()
    try:
        from importlib.metadata import version

        taskflow_version = version("taskflow")
    except Exception:
        taskflow_version = "not installed"
    import sqlite3

    return {
        "cpu": f"{cpu} × {os.cpu_count()} cores",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "celery": f"{celery.__version__} (kombu {kombu.__version__})",
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "redis": redis_version,
        "postgresql": pg_version,
        "taskflow": taskflow_version,
    }


# --------------------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def pids_named(name: str) -> list[int]:
    """Pids whose command name (``/proc/<pid>/comm``) is ``name``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    out.append(int(entry))
    return out


class CpuMeter:
    """CPU seconds spent by each side of a case: the submitting process (this one), the worker's
    consumer (main) process, its pool processes, and the Redis and PostgreSQL servers (all their
    clients: other work on the machine shows there too)."""

    SIDES = ("submitter", "worker consumer", "worker pool", "redis", "postgresql")

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def _groups(self) -> dict[str, list[int]]:
        return {
            "worker consumer": [self.worker.pid],
            "worker pool": self.worker.children(),
            "redis": pids_named("redis-server"),
            "postgresql": pids_named("postgres"),
        }

    def snapshot(self) -> dict[str, dict[int, float]]:
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        snap: dict[str, dict[int, float]] = {"submitter": {os.getpid(): me.ru_utime + me.ru_stime}}
        for side, pids in self._groups().items():
            snap[side] = {}
            for pid in pids:
                value = cpu_seconds(pid)
                if value is not None:
                    snap[side][pid] = value
        return snap

    @staticmethod
    def delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        out = {}
        for side, values in after.items():
            old = before.get(side, {})
            # a process that appeared during the case counts from zero; one that vanished is lost
            out[side] = sum(max(0.0, v - old.get(pid, 0.0)) for pid, v in values.items())
        return out
