"""An existing Celery app made celeryflow-capable with install(); submit/FlowHandle across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

import celeryflow
from celeryflow import states
from celeryflow.install import CELERY_SETTINGS
from celeryflow.patterns import linear_flow
from tests.engine.atoms import Step, StepError, chain_of, read_trace
from tests.support.procs import REPO_ROOT


def test_install_on_an_existing_app_with_in_process_worker(redis_url, sqlite_url, tmp_path, restore_default_app):
    app = Celery("myproject", broker=redis_url, set_as_current=False)
    app.conf.task_ignore_result = True
    celeryflow.install(app, backend=sqlite_url, heartbeat_timeout=30)
    assert app.conf.celeryflow_heartbeat_timeout == 30
    assert "celeryflow.execute" in app.tasks and "celeryflow.revert" in app.tasks
    trace = str(tmp_path / "trace")
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        results = celeryflow.engines.run(linear_flow.Flow("mine").add(Step("a", trace, provides="x")), app=app)
        assert results == {"x": "a"}
        # app=None now means the installed app
        handle = celeryflow.submit(linear_flow.Flow("default-app").add(Step("b", trace, fail=True)))
        with pytest.raises(StepError):
            handle.wait(timeout=60)
        assert handle.state == states.REVERTED
    assert read_trace(trace) == [("execute", "a"), ("execute", "b"), ("revert", "b")]


def test_install_leaves_the_host_apps_own_tasks_alone(redis_url, sqlite_url, tmp_path, restore_default_app):
    """install() sets options on celeryflow's tasks only (issue #12, item 7)."""
    app = Celery("host", broker=redis_url, set_as_current=False)
    app.conf.update(accept_content=["json", "pickle"], task_acks_late=False, task_reject_on_worker_lost=False,
                    worker_prefetch_multiplier=4, task_serializer="json")

    @app.task(name="host.add")
    def add(x, y):
        return x + y

    before = {key: app.conf[key] for key in CELERY_SETTINGS}
    celeryflow.install(app, backend=sqlite_url, beat=False)
    assert {key: app.conf[key] for key in CELERY_SETTINGS} == before
    assert (add.acks_late, add.reject_on_worker_lost) == (False, False)
    assert add.Strategy == "celery.worker.strategy:default"
    own = app.tasks["celeryflow.execute"]
    assert (own.acks_late, own.reject_on_worker_lost, own.serializer) == (True, True, "json")
    # a real worker: the host's pickled message is still accepted, and a flow runs beside it
    app.conf.result_backend = f"db+sqlite:///{tmp_path / 'results.db'}"
    trace = str(tmp_path / "trace")
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        assert add.apply_async((2, 3), serializer="pickle").get(timeout=30) == 5
        assert celeryflow.engines.run(linear_flow.Flow("beside").add(Step("a", trace, provides="x")), app=app) == {
            "x": "a"}


def test_install_rejects_unknown_settings(restore_default_app):
    with pytest.raises(celeryflow.exceptions.ConfigurationError, match="heartbeat_timout"):
        celeryflow.install(Celery("x", set_as_current=False), heartbeat_timout=3)


def test_flow_handle_reattaches_from_another_process(remote_env):
    trace = remote_env.trace()
    handle = celeryflow.submit(chain_of, factory_kwargs={"trace": trace, "n": 5}, app=remote_env.app,
                               backend=remote_env.backend)
    code = textwrap.dedent(f"""
        import celeryflow
        from celeryflow_tasks.app import make_app
        handle = celeryflow.FlowHandle({handle.id!r}, app=make_app())
        results = handle.wait(timeout=60)
        print(handle.state, sorted(results))
    """)
    env = {"CELERYFLOW_BROKER_URL": remote_env.app.conf.broker_url, "CELERYFLOW_BACKEND": remote_env.backend,
           "PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SUCCESS []"
    assert [n for w, n in read_trace(trace) if w == "execute"] == [f"s{i}" for i in range(5)]


def test_worker_opens_and_migrates_its_logbook_at_start(redis_url, postgres_url, restore_default_app):
    """worker_init: the logbook's schema is created before the first message (not by the first pool child)."""
    from celeryflow.persistence import backends, migrate

    app = Celery("startup-check", broker=redis_url, set_as_current=False)
    celeryflow.install(app, backend=postgres_url, beat=False)
    assert migrate.current(backends.fetch(postgres_url, auto_migrate=False)) is None
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
        assert migrate.current(backends.fetch(postgres_url, auto_migrate=False)) == migrate.head()


def test_worker_starts_when_its_logbook_is_down(redis_url, restore_default_app):
    import logging

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    collect = Collect()
    logger = logging.getLogger("celeryflow.worker")
    logger.addHandler(collect)  # Celery's worker set-up reconfigures the root logger's handlers
    level = logger.level
    logger.setLevel(logging.WARNING)  # a test worker sets the root level to ERROR
    try:
        app = Celery("startup-down", broker=redis_url, set_as_current=False)
        celeryflow.install(app, backend="postgresql://nobody@127.0.0.1:1/none", beat=False)
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
            pass
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    assert any("not usable at worker start" in m for m in collect.messages), collect.messages


def test_a_configured_broker_is_used_without_app(redis_url, redis_client, sqlite_url, tmp_path):
    """CELERYFLOW_BROKER_URL set, no app= and no install(): submit publishes to that broker for its
    workers, instead of running the atoms in the caller's own process (issue #12, item 4)."""
    code = textwrap.dedent("""
        import threading
        import celeryflow
        from celeryflow.patterns import linear_flow
        from tests.engine.atoms import Step
        handle = celeryflow.submit(linear_flow.Flow("for-workers").add(Step("a", "/dev/null")))
        print(handle.engine.app.main, handle.engine.app.conf.broker_url)
        print(handle.state, any("celeryflow" in t.name.lower() or "worker" in t.name.lower()
                               for t in threading.enumerate() if t is not threading.main_thread()))
    """)
    env = {"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": sqlite_url, "PYTHONPATH": str(REPO_ROOT),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first == f"celeryflow {redis_url}"
    assert second == "RUNNING False", "no in-process worker ran the atom"
    assert redis_client.llen("celery") == 1, "the atom's message waits on the broker for a worker"
