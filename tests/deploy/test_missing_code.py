"""#12 item 13: a worker without a flow's atom class (a rolling deploy) is a deployment error.

Atom ``b`` (class ``tests.deploy.late_atoms:Late``, queue ``late``) reaches an "old"
worker whose ``CELERYFLOW_IMPORTS`` lacks the module. It does not run there: it waits,
queued, with its reason in ``flows show`` and ``top`` (and its Celery task retried with
the reason, which Flower's task view shows), until a worker that has the code takes it;
or, after ``CELERYFLOW_MISSING_CODE_TIMEOUT``, it fails as ``AtomCodeMissing``, blamed on
``b``: ``a`` (which ran) is reverted, ``b`` (which never ran) is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import celeryflow
from celeryflow.cli import cli
from celeryflow.contrib import snapshot
from celeryflow.exceptions import AtomCodeMissing
from celeryflow.patterns import linear_flow
from celeryflow.persistence import backends
from tests.deploy.atoms import Note, read_trace
from tests.deploy.conftest import deployment, start_worker
from tests.deploy.late_atoms import Late
from tests.fixtures_db import postgres_database
from tests.support.procs import ProcessGroup, wait_for

pytestmark = pytest.mark.services

OLD = "tests.deploy.atoms"
NEW = "tests.deploy.atoms,tests.deploy.late_atoms"


def flow(trace: str) -> linear_flow.Flow:
    return linear_flow.Flow("rolling").add(Note("a", trace), Late("b", trace))


def steps(trace: str) -> list[list[str]]:
    return [line.split()[:2] for line in read_trace(trace)]


def cli_out(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_atom_waits_for_a_worker_that_has_its_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_flower import InProcessFlower, _wait_until_flower_listens

    trace = str(tmp_path / "trace.log")
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
    with postgres_database() as logbook, deployment("rolling", logbook) as dep, ProcessGroup(tmp_path) as group:
        start_worker(group, dep, "new", env={"CELERYFLOW_IMPORTS": NEW})
        start_worker(group, dep, "old", env={"CELERYFLOW_IMPORTS": OLD}, queues=["late"])
        flower = InProcessFlower(dep.app).start()
        try:
            _wait_until_flower_listens(dep.app, flower)
            handle = celeryflow.submit(flow(trace), app=dep.app, backend=logbook)

            def flower_shows_the_wait() -> bool:
                # each retry is task-retried then, at once, task-received of the delayed message
                # (the worker holds it for its countdown): Flower shows RETRY or RECEIVED, with the
                # time it was retried and the reason as the task's exception
                return any(t.get("name") == "celeryflow: rolling / b" and t.get("state") in ("RETRY", "RECEIVED")
                           and t.get("retried") and "waiting for a worker that has its code" in str(t.get("exception"))
                           for t in flower.tasks().values())

            wait_for(flower_shows_the_wait, timeout=60, interval=0.2,
                     message=lambda: f"Flower's task view: {flower.tasks()}")
        finally:
            flower.stop()
        backend = backends.fetch(logbook)

        def waiting() -> str | None:
            return snapshot.load_flow(backend, handle.id).atoms["b"].waiting

        reason = wait_for(waiting, timeout=60, message="atom b never showed why it waits")
        # it keeps waiting past Celery's default max_retries (3) of the message's task
        group.wait_for_log("old", r"Retry in \S+: AtomCodeMissing(?:.|\n)*Retry in(?:.|\n)*Retry in(?:.|\n)*"
                           r"Retry in(?:.|\n)*Retry in", timeout=60)
        assert "waiting for a worker that has its code" in reason and "late_atoms" in reason
        view = snapshot.load_flow(backend, handle.id)
        assert (view.state, view.atoms["a"].state, view.atoms["b"].state) == ("RUNNING", "SUCCESS", "PENDING")
        shown = cli_out("flows", "show", handle.id, "--backend", logbook)
        assert "is waiting: waiting for a worker that has its code" in " ".join(shown.split())
        assert "b (waiting for a worker with its code)" in " ".join(cli_out("top", "--once", "-b", logbook).split())
        # (Celery retried the message with the reason: Flower's task view shows it, task-retried)
        # the deploy reaches the late queue: a worker with the code takes b (the old one is stopped:
        # warm shutdown gives back the message it holds for its next delivery)
        start_worker(group, dep, "new-late", env={"CELERYFLOW_IMPORTS": NEW}, queues=["late"])
        group.stop("old")
        handle.wait(timeout=90)
        assert handle.state == "SUCCESS"
        assert steps(trace) == [["execute", "a"], ["execute", "b"]]
        view = snapshot.load_flow(backend, handle.id)
        assert view.atoms["b"].failure is None and view.atoms["b"].waiting is None
        assert "Unrecoverable" not in group.output("old")
        assert "raised unexpected" not in group.output("old")  # only retries while it waited


def test_after_the_timeout_the_atom_fails_blamed_on_itself_and_is_never_reverted(tmp_path: Path) -> None:
    trace = str(tmp_path / "trace.log")
    with postgres_database() as logbook, deployment("rolling-timeout", logbook) as dep, \
            ProcessGroup(tmp_path) as group:
        start_worker(group, dep, "new", env={"CELERYFLOW_IMPORTS": NEW})
        start_worker(group, dep, "old", env={"CELERYFLOW_IMPORTS": OLD, "CELERYFLOW_MISSING_CODE_TIMEOUT": "3"},
                     queues=["late"])
        handle = celeryflow.submit(flow(trace), app=dep.app, backend=logbook)
        with pytest.raises(AtomCodeMissing, match="never ran"):
            handle.wait(timeout=90)
        assert handle.state == "REVERTED"
        view = snapshot.load_flow(backend := backends.fetch(logbook), handle.id)
        assert view.atoms["b"].failure is not None and view.atoms["b"].failure.check(AtomCodeMissing)
        assert view.atoms["a"].failure is None and view.atoms["a"].revert_failure is None
        assert view.atoms["b"].revert_failure is None and view.atoms["a"].state == "REVERTED"
        assert steps(trace) == [["execute", "a"], ["revert", "a"]]  # b neither ran nor was reverted
        assert view.atoms["b"].starts == 1 and view.atoms["a"].starts == 1
        listed = cli_out("flows", "list", "--json", "-b", logbook)
        assert '"b"' in listed
        del backend
