"""Deciders on graph links: each decider_depth, a decider that allows, one that raises."""

from __future__ import annotations

import pytest

from celeryflow import exceptions, states
from celeryflow.patterns import graph_flow, linear_flow
from tests.semantics.atoms import Step, allow, calls, deny, explode, said_yes

ALL_ATOMS = ["a", "b", "c", "d", "e", "f"]


def _flow(trace: str, decider, depth: str | None) -> graph_flow.Flow:
    """a -(decider)-> b -> c -> d, b -> sub[e], and f (independent of b).

    b's own flow holds c and d; e is in a nested flow after b.
    """
    a, b, c, d, f = (Step(n, trace) for n in ("a", "b", "c", "d", "f"))
    sub = linear_flow.Flow("sub").add(Step("e", trace))
    flow = graph_flow.Flow("decided").add(a, b, c, d, sub, f)
    kwargs = {} if depth is None else {"decider_depth": depth}
    flow.link(a, b, decider=decider, **kwargs)
    flow.link(b, c)
    flow.link(c, d)
    flow.link(b, sub)
    flow.link(a, f)
    return flow


@pytest.mark.parametrize(
    "depth, ignored",
    [
        ("ALL", {"b", "c", "d", "e"}),
        (None, {"b", "c", "d", "e"}),  # the default depth is ALL
        ("FLOW", {"b", "c", "d"}),
        ("NEIGHBORS", {"b", "c"}),
        ("ATOM", {"b"}),
    ],
)
def test_decider_depths(flow_env, depth, ignored):
    trace = flow_env.trace()
    engine = flow_env.load(_flow(trace, deny, depth))
    engine.run(timeout=60)
    ran = {name for what, name in calls(trace) if what == "execute"}
    assert ran == set(ALL_ATOMS) - ignored
    st = engine.storage
    assert st.get_flow_state() == states.SUCCESS
    for name in ALL_ATOMS:
        assert st.get_atom_state(name) == (states.IGNORE if name in ignored else states.SUCCESS), name


def test_decider_that_allows_runs_everything(flow_env):
    trace = flow_env.trace()
    flow_env.run(_flow(trace, allow, "ALL"))
    assert sorted(name for what, name in calls(trace) if what == "execute") == ALL_ATOMS


@pytest.mark.parametrize("answer, b_state", [("yes", states.SUCCESS), ("no", states.IGNORE)])
def test_decider_gets_the_predecessor_result(flow_env, answer, b_state):
    trace = flow_env.trace()
    a, b = Step("a", trace, value=answer), Step("b", trace)
    flow = graph_flow.Flow("answer").add(a, b)
    flow.link(a, b, decider=said_yes, decider_depth="ATOM")
    engine = flow_env.load(flow)
    engine.run(timeout=60)
    assert engine.storage.get_atom_state("b") == b_state


def test_decider_that_raises_fails_and_compensates_the_flow(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(_flow(trace, explode, "ALL"))
    with pytest.raises(exceptions.ExecutionFailure) as info:
        engine.run(timeout=60)
    message = str(info.value)
    assert "tests.semantics.atoms:explode" in message and "'a' -> 'b'" in message
    assert "ZeroDivisionError: decider blew up" in message
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("b") == states.PENDING
    reverted = [name for what, name in calls(trace) if what == "revert"]
    assert "a" in reverted
    assert {name for what, name in calls(trace) if what == "execute"} <= {"a", "f"}
