"""Bad input gets a specific, helpful error; duplicates and stale messages change nothing."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy import func, select

from celeryflow import engines, exceptions, states, task
from celeryflow.patterns import graph_flow, linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import EventRow, FlowRow
from celeryflow.runtime import backends as backend_keys
from celeryflow.runtime import dispatch
from celeryflow.runtime.logbook import EXECUTE, Dispatch
from tests.engine.atoms import Adder, Step, Weird, read_trace
from tests.support.procs import wait_for


class NotOnWorkers(task.Task):
    """Defined in a module the separate workers never import."""

    def execute(self) -> str:
        return "ran"


def test_cycle_is_rejected():
    a, b = Step("a", "/dev/null", provides="x", requires=["y"]), Step("b", "/dev/null", provides="y", requires=["x"])
    with pytest.raises(exceptions.DependencyFailure):
        graph_flow.Flow("cyc").add(a, b)


def test_ambiguous_provider_is_rejected():
    with pytest.raises(exceptions.AmbiguousDependency):
        graph_flow.Flow("amb").add(Step("a", "/dev/null", provides="x"), Step("b", "/dev/null", provides="x"),
                                   Step("c", "/dev/null", requires=["x"]))


def test_duplicate_names_are_rejected():
    with pytest.raises(exceptions.Duplicate):
        linear_flow.Flow("dup").add(Step("a", "/dev/null"), Step("a", "/dev/null"))


def test_missing_requirement_found_before_anything_runs(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("missing").add(Step("first", trace), Adder("needs_xy", provides="s"))
    engine = flow_env.load(flow, store={"x": 1})
    with pytest.raises(exceptions.MissingDependencies) as info:
        engine.run()
    assert info.value.missing_requirements == {"needs_xy": ["y"]}
    assert read_trace(trace) == []


def test_non_json_result_fails_that_atom(flow_env):
    engine = flow_env.load(linear_flow.Flow("weird").add(Weird("weird")))
    with pytest.raises(exceptions.SerializationError) as info:
        engine.run()
    message = str(info.value)
    assert "'weird'" in message and "['bad']" in message and "object" in message
    assert engine.storage.get_flow_state() == states.REVERTED


def test_non_json_store_is_refused_at_the_caller(flow_env):
    with pytest.raises(exceptions.SerializationError, match="store value 'x'"):
        flow_env.run(linear_flow.Flow("s").add(Adder("a")), store={"x": object(), "y": 1})


def test_unknown_atom_class_on_worker_waits_with_a_clear_reason(remote_env):
    """#12 item 13: a deployment error, not the atom's failure (tests/deploy/test_missing_code.py
    covers the wait ending both ways); a suspend still ends the wait."""
    from celeryflow.contrib import snapshot

    engine = remote_env.load(linear_flow.Flow("unknown-class").add(NotOnWorkers("stranger")))
    engine.start()

    def reason():
        return snapshot.load_flow(fetch(remote_env.backend), engine.flow_uuid).atoms["stranger"].waiting

    assert "CELERYFLOW_IMPORTS" in wait_for(reason, timeout=60)
    assert engine.storage.get_flow_state() == states.RUNNING
    assert engine.storage.get_atom_state("stranger") == states.PENDING
    engine.suspend()
    wait_for(lambda: engine.storage.get_flow_state() == states.SUSPENDED, timeout=60)
    assert engine.storage.get_atom_state("stranger") == states.PENDING


def test_unreachable_database_at_submit_writes_nothing():
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    with pytest.raises(exceptions.StorageFailure):
        engines.load(linear_flow.Flow("x").add(Step("a", "/dev/null")), backend=url).run(timeout=10)


def _count_events(url: str, flow_uuid: str) -> int:
    query = select(func.count()).select_from(EventRow).where(EventRow.flow_uuid == flow_uuid)
    return fetch(url).run(lambda s: s.scalar(query))


def test_duplicate_and_stale_messages_change_nothing(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(linear_flow.Flow("dupes").add(Step("d1", trace), Step("d2", trace)))
    engine.run()
    before = _count_events(flow_env.backend, engine.flow_uuid)
    epoch = fetch(flow_env.backend).run(lambda s: s.get(FlowRow, engine.flow_uuid).epoch)
    key = backend_keys.remember(fetch(flow_env.backend))
    for sent_epoch in (epoch, epoch - 1, epoch + 5):
        msg = Dispatch(engine.flow_uuid, "dupes", sent_epoch, execute=["d1"])
        dispatch.signature(engine.app, msg, "d1", EXECUTE, key).apply_async()
    # A marker flow behind the duplicates on the same queue: once it ran, they were consumed.
    marker = flow_env.load(linear_flow.Flow("marker").add(Step("m", trace)))
    marker.run(timeout=60)
    wait_for(lambda: _count_events(flow_env.backend, engine.flow_uuid) == before, timeout=5)
    assert [n for w, n in read_trace(trace) if w == "execute"].count("d1") == 1
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_malformed_and_forged_messages_are_dropped_and_the_worker_lives(remote_env):
    app = remote_env.app
    app.send_task("celeryflow.execute", args=["only-one-arg"])
    app.send_task("celeryflow.execute", args=[1, 2, 3, 4])
    app.send_task("celeryflow.revert", kwargs={"module": "os", "function": "system"})
    app.send_task("celeryflow.execute", args=["no-such-flow", "atom", 1, "0123456789ab"])
    # the workers keep serving flows afterwards
    trace = remote_env.trace()
    assert remote_env.run(linear_flow.Flow("after-junk").add(Step("ok", trace, provides="v"))) == {"v": "ok"}


def test_unreachable_broker_at_submit_writes_nothing(sqlite_url):
    from celery import Celery

    app = Celery("nowhere", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.broker_connection_timeout = 1
    import celeryflow

    module = sys.modules["celeryflow.install"]
    previous = module._installed
    try:
        celeryflow.install(app, backend=sqlite_url)
        with pytest.raises(exceptions.BrokerUnavailable, match=r"127\.0\.0\.1:1"):
            celeryflow.submit(linear_flow.Flow("x").add(Step("a", "/dev/null")), app=app)
    finally:
        module._installed = previous
    assert fetch(sqlite_url).run(lambda s: s.scalar(select(func.count()).select_from(FlowRow))) == 0
