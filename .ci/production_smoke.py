"""Production smoke run, executed by .ci/production-install.sh with the interpreter of a
fresh virtualenv that holds only ``pip install '.[<README's production extras>]'``.

For each broker (Redis, RabbitMQ) it starts a real ``celery worker`` of the stock app,
submits flows from this process as the README shows (``celeryflow.submit(..., app=app)``),
and checks their results, a revert, and ``celeryflow flows show``; the logbook is
PostgreSQL. Only the standard library and the installed packages are used: no test
dependency may hide a missing install step.

Isolation from anything else on the machine (parallel test runs): a Redis db claimed with
the test suite's own lock protocol, a queue name of its own on RabbitMQ, a PostgreSQL
schema of its own; every one removed at the end. The worker runs in its own process
group and is stopped by its PID (TERM, then KILL after a deadline). Every wait has a
deadline. Exit 0 only if everything passed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_HOST = os.environ.get("CELERYFLOW_CI_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CELERYFLOW_CI_REDIS_PORT", "6379"))
RABBITMQ_URL = os.environ.get("CELERYFLOW_CI_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = os.environ.get("CELERYFLOW_CI_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FLOW_DEADLINE = float(os.environ.get("CELERYFLOW_CI_FLOW_DEADLINE", "60"))
STOP_DEADLINE = 8.0   # below the wrapper's --kill-after, so a timed-out run still stops its worker
PIDFILE = os.environ.get("CELERYFLOW_CI_PIDFILE")  # the wrapper kills what is listed, should we be killed
TOKEN = uuid.uuid4().hex[:10]

#: The test suite's Redis db lock (tests/fixtures_services.py, RedisDbPool): claiming a
#: db the same way means a concurrent pytest run never shares it.
REDIS_LOCK_KEY = "celeryflow:tests:redis-db-lock:{}"

FLOWS_MODULE = '''
"""Atoms of the production smoke run (registered on import, as CELERYFLOW_IMPORTS says)."""
from celeryflow import task
from celeryflow.patterns import linear_flow


class CreateVolume(task.Task):
    def execute(self, size_gb):
        return f"vol-{size_gb}g"

    def revert(self, size_gb, result, flow_failures, **kwargs):
        return None


class Attach(task.Task):
    def execute(self, volume_id):
        return f"attached {volume_id}"


class Explode(task.Task):
    def execute(self, attachment):
        raise RuntimeError("smoke: deliberate failure")


def good():
    return linear_flow.Flow("smoke-good").add(CreateVolume(provides="volume_id"), Attach(provides="attachment"))


def bad():
    return linear_flow.Flow("smoke-bad").add(CreateVolume(provides="volume_id"), Attach(provides="attachment"),
                                             Explode())
'''

# The stock app (celeryflow_tasks), on a queue of this run's own: workers of other runs
# sharing the RabbitMQ vhost never see these messages.
APP_MODULE = '''
import os
from celeryflow_tasks import app
app.conf.task_default_queue = os.environ["CELERYFLOW_CI_QUEUE"]
'''


def log(message: str) -> None:
    print(f"[production-smoke] {message}", flush=True)


class Failed(Exception):
    pass


# ------------------------------------------------------------------ isolation
@contextmanager
def redis_db() -> Iterator[int]:
    import redis

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, socket_timeout=10)
    size = int(str(admin.config_get("databases").get("databases", 16)))
    holder = f"{socket.gethostname()}:{os.getpid()}:{TOKEN}:production-smoke"
    deadline = time.monotonic() + 60
    claimed = None
    while claimed is None:
        for db in range(size - 1, 0, -1):
            if admin.set(REDIS_LOCK_KEY.format(db), holder, nx=True, ex=900):
                claimed = db
                break
        else:
            if time.monotonic() > deadline:
                raise Failed("no free Redis database within 60s")
            time.sleep(0.2)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=claimed, socket_timeout=10)
    try:
        client.flushdb()
        yield claimed
    finally:
        client.flushdb()
        client.close()
        if admin.get(REDIS_LOCK_KEY.format(claimed)) == holder.encode():
            admin.delete(REDIS_LOCK_KEY.format(claimed))
        admin.close()


@contextmanager
def postgres_schema() -> Iterator[str]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    schema = f"cf_ci_{TOKEN}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(broker, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception as exc:  # a queue that was never declared: nothing to remove
        log(f"note: could not delete queue {queue}: {exc}")


# ------------------------------------------------------------------ processes
def start_worker(env: dict[str, str], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    logfile = workdir / f"worker-{name}.log"
    celery = str(Path(sys.executable).with_name("celery"))
    cmd = [celery, "-A", "smoke_app", "worker", "-l", "INFO", "--concurrency", "2",
           "--without-mingle", "--without-gossip", "-n", f"smoke-{name}-{TOKEN}@%h"]
    with open(logfile, "wb") as out:
        # Its own session: stopping the worker's process group also stops its pool children.
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    if PIDFILE:
        with open(PIDFILE, "a") as pids:
            pids.write(f"{proc.pid}\n")
    log(f"worker {name} started, pid {proc.pid}, log {logfile}")
    return proc, logfile


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_DEADLINE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_cli(env: dict[str, str], workdir: Path, *args: str) -> str:
    celeryflow = str(Path(sys.executable).with_name("celeryflow"))
    done = subprocess.run([celeryflow, *args], env=env, cwd=workdir, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise Failed(f"celeryflow {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def submit_and_check(env: dict[str, str], workdir: Path) -> str:
    """Run in a child interpreter so that this broker's settings are its whole world."""
    script = textwrap.dedent(f'''
        import sys
        import celeryflow
        from smoke_app import app
        import smoke_flows

        # The installed package, not the repository's sources.
        assert celeryflow.__file__.startswith(sys.prefix), celeryflow.__file__
        handle = celeryflow.submit(smoke_flows.good, store={{"size_gb": 10}}, app=app)
        results = handle.wait(timeout={FLOW_DEADLINE})
        assert results.get("attachment") == "attached vol-10g", results
        assert handle.state == "SUCCESS", handle.state

        bad = celeryflow.submit(smoke_flows.bad, store={{"size_gb": 1}}, app=app)
        try:
            bad.wait(timeout={FLOW_DEADLINE})
        except RuntimeError as exc:
            assert "deliberate failure" in str(exc), exc
        else:
            raise AssertionError("the failing flow did not raise")
        assert bad.state == "REVERTED", bad.state
        print(handle.id)
    ''')
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=workdir, capture_output=True,
                          text=True, timeout=2 * FLOW_DEADLINE + 30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise Failed(f"submitting flows failed:\n{done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def clean_env() -> dict[str, str]:
    """This environment without anything that could reach past the fresh install: no
    PYTHONPATH (the repository's sources), no celeryflow or Celery settings of the caller."""
    return {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith(("CELERYFLOW_", "CELERY_"))}


def scenario(name: str, broker: str, backend: str, workdir: Path) -> None:
    queue = f"celeryflow-ci-{name}-{TOKEN}"
    env = clean_env()
    env.update({
        "PYTHONPATH": str(workdir),
        "CELERYFLOW_BROKER_URL": broker,
        "CELERYFLOW_BACKEND": backend,
        "CELERYFLOW_IMPORTS": "smoke_flows",
        "CELERYFLOW_CI_QUEUE": queue,
    })
    started = time.monotonic()
    proc, logfile = start_worker(env, workdir, name)
    try:
        flow_id = submit_and_check(env, workdir)
        shown = run_cli(env, workdir, "flows", "show", flow_id)
        if "SUCCESS" not in shown:
            raise Failed(f"`celeryflow flows show {flow_id}` does not say SUCCESS:\n{shown}")
        if proc.poll() is not None:
            raise Failed(f"the worker exited with {proc.returncode}")
    except (Failed, subprocess.TimeoutExpired) as exc:
        tail = logfile.read_text(errors="replace").splitlines()[-40:]
        raise Failed(f"{name}: {exc}\n--- worker log (last lines) ---\n" + "\n".join(tail)) from exc
    finally:
        stop_worker(proc)
        delete_queue(broker, queue)
    log(f"{name}: worker + flows OK in {time.monotonic() - started:.1f}s")


def _terminated(signum: int, frame: object) -> None:
    # `timeout` sends SIGTERM first: unwind through the finally blocks (worker stopped by
    # its PID, queue, Redis db and schema removed) instead of dying on the spot.
    raise Failed(f"terminated by signal {signum} (deadline)")


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="celeryflow-smoke-") as tmp:
            workdir = Path(tmp)
            (workdir / "smoke_flows.py").write_text(FLOWS_MODULE)
            (workdir / "smoke_app.py").write_text(APP_MODULE)
            with postgres_schema() as backend:
                env = {**clean_env(), "CELERYFLOW_BACKEND": backend}
                run_cli(env, workdir, "db", "upgrade")
                with redis_db() as db:
                    scenario("redis", f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}", backend, workdir)
                scenario("rabbitmq", RABBITMQ_URL, backend, workdir)
    except Exception as exc:
        log(f"FAIL after {time.monotonic() - began:.1f}s: {type(exc).__name__}: {exc}")
        return 1
    log(f"PASS in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
