"""Per-atom Celery options: queue and routing, time limits (execute and revert apart),
priority, expires; on the class or one atom, with flow-level defaults; in every dispatch
(issue #12, item 8)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

import celeryflow
from celeryflow import compiler, exceptions, states
from celeryflow.compilation import Compilation
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.runtime import dispatch
from celeryflow.runtime.logbook import Dispatch
from tests.engine.atoms import WhereAmI, read_trace


class OnGpu(WhereAmI):
    celery_options = {"queue": "gpu", "soft_time_limit": 60}
    revert_celery_options = {"soft_time_limit": 5}


def test_options_come_from_the_class_the_atom_and_the_flow_defaults():
    flow = linear_flow.Flow("opts").add(
        OnGpu("a", "/dev/null"),
        WhereAmI("b", "/dev/null").with_celery_options(priority=7),
        WhereAmI("c", "/dev/null").with_celery_options(revert=True, time_limit=9),
    )
    comp = compiler.compile(flow, celery_defaults={"queue": "flows", "expires": 600})
    assert dict(comp.atoms["a"].options) == {"queue": "gpu", "soft_time_limit": 60, "expires": 600}
    assert dict(comp.atoms["a"].revert_options) == {"soft_time_limit": 5}
    assert dict(comp.atoms["b"].options) == {"queue": "flows", "expires": 600, "priority": 7}
    assert dict(comp.atoms["c"].revert_options) == {"time_limit": 9}
    # stored with the compilation: what the sweep and every worker dispatch from
    again = Compilation.from_dict(comp.to_dict())
    assert again.atoms["a"].options == comp.atoms["a"].options
    app = Celery("sig", set_as_current=False)
    sig = dispatch.signature(app, Dispatch("f", "opts", 1), "a", "execute", "key", again)
    assert sig.options["queue"] == "gpu" and sig.options["soft_time_limit"] == 60
    rsig = dispatch.signature(app, Dispatch("f", "opts", 1), "a", "revert", "key", again)
    assert rsig.options["soft_time_limit"] == 5 and "queue" not in rsig.options


@pytest.mark.parametrize(("options", "match"), [
    ({"rate_limit": "1/s"}, "per task type"),
    ({"qeue": "x"}, "unknown Celery option 'qeue'"),
    ({"soft_time_limit": "soon"}, "non-negative number"),
    ({"serializer": "pickle"}, "always JSON"),
])
def test_bad_options_are_refused_with_a_reason(options, match):
    with pytest.raises(exceptions.ConfigurationError, match=match):
        WhereAmI("x", "/dev/null").with_celery_options(**options)


def test_an_atom_runs_on_the_workers_of_its_queue(redis_url, sqlite_url, tmp_path: Path, restore_default_app):
    app = Celery("queues", broker=redis_url, set_as_current=False)
    celeryflow.install(app, backend=sqlite_url, beat=False)
    special = f"cf-special-{uuid.uuid4().hex[:6]}"
    trace = str(tmp_path / "trace")
    flow = unordered_flow.Flow("routed").add(
        WhereAmI("plain", trace), WhereAmI("routed", trace).with_celery_options(queue=special),
    )
    # one worker serving both queues: the routing key each message arrived with shows its queue
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, queues=["celery", special]):
        engine = celeryflow.engines.load(flow, app=app, celery_options={"priority": 3})
        engine.run(timeout=60)
    queue_of = {line.split()[1]: line.split()[3] for line in Path(trace).read_text().splitlines()}
    assert queue_of == {"routed": special, "plain": "celery"}


def test_a_hanging_revert_is_ended_by_its_time_limit(remote_env):
    """A soft time limit on the revert message: SoftTimeLimitExceeded is the revert's failure."""
    trace = remote_env.trace()
    flow = linear_flow.Flow("slow-undo").add(
        WhereAmI("hangs", trace, hang_in_revert=True).with_celery_options(revert=True, soft_time_limit=1),
        WhereAmI("fails", trace, fail=True),
    )
    engine = remote_env.load(flow)
    from celery.exceptions import SoftTimeLimitExceeded

    with pytest.raises(SoftTimeLimitExceeded):  # run() raises the failed revert's exception
        engine.run(timeout=60)
    assert engine.storage.get_atom_state("hangs") == states.REVERT_FAILURE
    assert engine.storage.get_flow_state() == states.FAILURE
    assert ("revert", "hangs") in read_trace(trace)
    assert "StepError" in str(engine.storage.get_execute_failures())
