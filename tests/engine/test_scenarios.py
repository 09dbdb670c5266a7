"""The core scenarios, on the embedded default and on separate worker processes."""

from __future__ import annotations

import pytest

from celeryflow import exceptions, states
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow
from tests.engine.atoms import Adder, Mapping, Pair, Step, StepError, diamond, read_trace


def executed(trace: str) -> list[str]:
    return [name for what, name in read_trace(trace) if what == "execute"]


def reverted(trace: str) -> list[str]:
    return [name for what, name in read_trace(trace) if what == "revert"]


def test_linear_runs_in_order(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("lin").add(*(Step(f"s{i}", trace, provides=f"o{i}") for i in range(5)))
    results = flow_env.run(flow)
    assert executed(trace) == [f"s{i}" for i in range(5)]
    assert results == {f"o{i}": f"s{i}" for i in range(5)}


def test_unordered_runs_all_once(flow_env):
    trace = flow_env.trace()
    flow = unordered_flow.Flow("un").add(*(Step(f"u{i}", trace, provides=f"u{i}") for i in range(12)))
    results = flow_env.run(flow)
    assert sorted(executed(trace)) == sorted(f"u{i}" for i in range(12))
    assert len(results) == 12


def test_graph_diamond_respects_dependencies(flow_env):
    trace = flow_env.trace()
    results = flow_env.run(diamond(trace))
    order = executed(trace)
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    assert results == {"a": "a", "b": "b", "c": "c", "d": "d"}


def test_wide_graph_join(flow_env):
    trace = flow_env.trace()
    flow = graph_flow.Flow("wide").add(
        Step("root", trace, provides="root"),
        *(Step(f"m{i}", trace, provides=f"m{i}", requires=["root"]) for i in range(8)),
        Step("join", trace, provides="joined", requires=[f"m{i}" for i in range(8)]),
    )
    flow_env.run(flow)
    order = executed(trace)
    assert order[0] == "root" and order[-1] == "join" and len(order) == 10


def test_nested_flows_see_outputs_of_subflows(flow_env):
    trace = flow_env.trace()
    inner = unordered_flow.Flow("inner").add(
        Step("i1", trace, provides="x", value=2), Step("i2", trace, provides="y", value=3)
    )
    flow = linear_flow.Flow("outer").add(Step("first", trace), inner, Adder("add", provides="sum"))
    results = flow_env.run(flow)
    assert results["sum"] == 5
    assert executed(trace)[0] == "first"


def test_argument_precedence_inject_store_upstream(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("args").add(
        Step("px", trace, provides="x", value=100),
        Adder("from_upstream_and_store", provides="s1"),
        Adder("injected", provides="s2", inject={"x": 1000}),
    )
    # store beats the upstream provider for x; inject beats both
    results = flow_env.run(flow, store={"x": 1, "y": 2})
    assert results["s1"] == 3
    assert results["s2"] == 1002


def test_rebind_and_provides_mappings(flow_env):
    flow = linear_flow.Flow("maps").add(
        Pair("pair", provides=("lo", "hi")),
        Mapping("mapping", provides={"small", "big"}),
        Adder("list_rebind", provides="r1", rebind=["lo", "hi"]),
        Adder("dict_rebind", provides="r2", rebind={"x": "small", "y": "big", "z": "seed"}),
    )
    results = flow_env.run(flow, store={"seed": 3})
    assert (results["lo"], results["hi"], results["small"], results["big"]) == (3, 30, 3, 300)
    assert results["r1"] == 33
    assert results["r2"] == 306


def test_optional_argument_uses_default(flow_env):
    results = flow_env.run(linear_flow.Flow("opt").add(Adder("a", provides="s")), store={"x": 1, "y": 1})
    assert results["s"] == 2


def test_linear_failure_reverts_in_reverse(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("lf").add(*(Step(f"s{i}", trace, fail=(i == 3)) for i in range(6)))
    engine = flow_env.load(flow)
    with pytest.raises(StepError, match="s3 failed"):
        engine.run()
    assert executed(trace) == ["s0", "s1", "s2", "s3"]
    assert reverted(trace) == ["s3", "s2", "s1", "s0"]
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("s4") == states.PENDING
    assert st.get_atom_intention("s4") == states.REVERT
    assert set(st.get_execute_failures()) == {"s3"}


def test_graph_failure_reverts_dependents_first(flow_env):
    trace = flow_env.trace()
    with pytest.raises(StepError):
        flow_env.run(diamond(trace, fail="d"))
    order = reverted(trace)
    assert order[0] == "d" and order[-1] == "a" and sorted(order[1:3]) == ["b", "c"]
    assert sorted(order) == ["a", "b", "c", "d"]


def test_unordered_failure_reverts_each_executed_once(flow_env):
    trace = flow_env.trace()
    flow = unordered_flow.Flow("uf").add(*(Step(f"u{i}", trace, fail=(i == 0)) for i in range(6)))
    with pytest.raises(StepError):
        flow_env.run(flow)
    assert sorted(reverted(trace)) == sorted(executed(trace))
    assert len(reverted(trace)) == len(set(reverted(trace)))


def test_revert_that_raises_stops_compensation_below_it(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("rf").add(
        Step("s0", trace), Step("s1", trace, revert_fail=True), Step("s2", trace), Step("s3", trace, fail=True)
    )
    engine = flow_env.load(flow)
    with pytest.raises(StepError, match="revert of s1 failed"):
        engine.run()
    assert reverted(trace) == ["s3", "s2", "s1"]
    st = engine.storage
    assert st.get_flow_state() == states.FAILURE
    assert st.get_atom_state("s1") == states.REVERT_FAILURE
    assert st.get_atom_state("s0") == states.SUCCESS
    assert set(st.get_revert_failures()) == {"s1"}


def test_several_failures_raise_wrapped_failure(flow_env):
    trace = flow_env.trace()
    flow = graph_flow.Flow("two").add(
        Step("gate", trace, provides="g"),
        Step("f1", trace, requires=["g"], fail=True, delay=0.3),
        Step("f2", trace, requires=["g"], fail=True, delay=0.3),
    )
    try:
        flow_env.run(flow)
    except exceptions.WrappedFailure as wrapped:
        assert len(wrapped) == 2 and wrapped.check(StepError)
    except StepError:
        # The two ran one after the other: the second never started.
        assert len(executed(trace)) == 2
    else:
        pytest.fail("the flow should have failed")


def test_notifiers_fire_in_the_caller(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(linear_flow.Flow("notes").add(Step("n1", trace, provides="v"), Step("n2", trace)))
    flow_events, atom_events = [], []
    engine.notifier.register("*", lambda state, details: flow_events.append((state, details["flow_name"])))
    engine.atom_notifier.register("*", lambda state, details: atom_events.append((details["atom_name"], state)))
    engine.run()
    assert flow_events[-1] == (states.SUCCESS, "notes")
    assert ("n1", states.RUNNING) in atom_events and ("n1", states.SUCCESS) in atom_events
    assert atom_events.index(("n1", states.SUCCESS)) < atom_events.index(("n2", states.RUNNING))
