"""Retry controllers: RETRY / REVERT / REVERT_ALL, nesting, defer_reverts, ForEach, countdowns.

Every test runs on the embedded default and on two separate worker processes.
"""

from __future__ import annotations

import pytest

from celeryflow import exceptions, states
from celeryflow.exceptions import SerializationError
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow
from tests.semantics.atoms import (
    FailureWitness,
    SetProvider,
    Step,
    StepError,
    TracedAlwaysRevert,
    TracedAlwaysRevertAll,
    TracedForEach,
    TracedParameterizedForEach,
    TracedTimes,
    Undecided,
    calls,
    read_trace,
    times_flow,
)


def executed(trace: str, name: str | None = None) -> list:
    return [c[1] for c in calls(trace) if c[0] == "execute" and (name is None or c[1] == name)]


def reverted(trace: str) -> list[str]:
    return [c[1] for c in calls(trace) if c[0] == "revert"]


def inputs(trace: str, name: str) -> list:
    """The ``args`` of each execution of ``name``."""
    return [e["args"] for e in read_trace(trace) if e["what"] == "execute" and e["name"] == name]


def test_times_succeeds_on_third_attempt(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(times_flow(trace, attempts=3, fail_on=[1, 2]))
    engine.run(timeout=60)
    assert calls(trace) == [
        ("execute", "before"),
        ("execute", "r"), ("execute", "x"), ("execute", "y"),
        ("revert", "y"), ("revert", "x"),
        ("execute", "r"), ("execute", "x"), ("execute", "y"),
        ("revert", "y"), ("revert", "x"),
        ("execute", "r"), ("execute", "x"), ("execute", "y"),
        ("execute", "after"),
    ]
    assert [e["value"] for e in read_trace(trace) if e["name"] == "r"] == [1, 2, 3]
    assert inputs(trace, "y") == [{"attempt": 1}, {"attempt": 2}, {"attempt": 3}]
    # reverts see the attempt they undo
    assert [e["args"]["attempt"] for e in read_trace(trace) if e["what"] == "revert" and e["name"] == "x"] == [1, 2]
    st = engine.storage
    assert st.get_flow_state() == states.SUCCESS
    assert {n: s for n, (s, _i) in st.get_atoms_states().items()} == dict.fromkeys(
        ["before", "r", "x", "y", "after"], states.SUCCESS
    )
    history = st.get_retry_history("r")
    assert list(history.provided_iter()) == [1, 2, 3]
    assert [sorted(dict(h[1])) for h in history] == [["y"], ["y"], []]
    assert history[0][1]["y"].check(StepError)
    assert st.fetch("attempt") == 3


def test_times_exhausted_reverts_only_its_subflow(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(times_flow(trace, attempts=3, fail_on=[1, 2, 3]))
    with pytest.raises(StepError, match=r"y failed \(inputs \[\('attempt', 3\)\]\)"):
        engine.run(timeout=60)
    assert executed(trace, "r") == ["r"] * 3
    assert executed(trace, "before") == ["before"]
    assert "after" not in executed(trace)
    assert calls(trace)[-3:] == [("revert", "y"), ("revert", "x"), ("revert", "r")]
    assert "before" not in reverted(trace)
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("before") == states.SUCCESS
    assert [st.get_atom_state(n) for n in ("r", "x", "y")] == [states.REVERTED] * 3
    assert st.get_atom_state("after") == states.PENDING
    assert len(st.get_retry_history("r")) == 3


def test_times_revert_all(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=TracedTimes(2, name="r", provides="attempt", trace=trace, revert_all=True))
    sub.add(Step("x", trace, key="attempt", fail=True))
    flow = linear_flow.Flow("ra").add(Step("before", trace), sub, Step("after", trace))
    engine = flow_env.load(flow)
    with pytest.raises(StepError):
        engine.run(timeout=60)
    assert executed(trace, "x") == ["x", "x"]
    assert reverted(trace)[-3:] == ["x", "r", "before"]
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("before") == states.REVERTED


@pytest.mark.parametrize("controller, before_reverted", [(TracedAlwaysRevert, False), (TracedAlwaysRevertAll, True)])
def test_always_revert_vs_always_revert_all(flow_env, controller, before_reverted):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=controller(name="ctl", trace=trace)).add(
        Step("a", trace), Step("b", trace, fail=True)
    )
    flow = linear_flow.Flow("always").add(Step("before", trace), sub, Step("after", trace))
    engine = flow_env.load(flow)
    with pytest.raises(StepError, match="b failed"):
        engine.run(timeout=60)
    assert executed(trace) == ["before", "a", "b"]
    expected = ["b", "a", "ctl"] + (["before"] if before_reverted else [])
    assert reverted(trace) == expected
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("before") == (states.REVERTED if before_reverted else states.SUCCESS)


def _nested_revert_flow(trace: str) -> linear_flow.Flow:
    inner = linear_flow.Flow("inner", retry=TracedAlwaysRevert(name="inner_r", trace=trace)).add(
        Step("i1", trace), Step("i2", trace, fail=True)
    )
    outer = linear_flow.Flow("outer", retry=TracedAlwaysRevert(name="outer_r", trace=trace)).add(
        Step("o1", trace), inner
    )
    return linear_flow.Flow("root").add(Step("before", trace), outer)


def test_revert_hands_to_parent_then_reverts_only_its_scope(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(_nested_revert_flow(trace))
    with pytest.raises(StepError, match="i2 failed"):
        engine.run(timeout=60)
    # the parent also says REVERT, so (without defer_reverts) only the inner subflow is reverted
    assert reverted(trace) == ["i2", "i1", "inner_r"]
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert [st.get_atom_state(n) for n in ("before", "outer_r", "o1")] == [states.SUCCESS] * 3
    # the failure was handed to the outer controller: it is in its history, under the inner controller
    assert sorted(st.get_retry_history("outer_r")[0][1]) == ["inner_r"]


def test_defer_reverts_reverts_further_out(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(_nested_revert_flow(trace), defer_reverts=True)
    with pytest.raises(StepError, match="i2 failed"):
        engine.run(timeout=60)
    # deferred to the outer controller, which defers to the flow: everything is reverted
    assert reverted(trace) == ["i2", "i1", "inner_r", "o1", "outer_r", "before"]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_nested_controllers_inner_exhausted_outer_retries(flow_env):
    trace = flow_env.trace()
    inner = linear_flow.Flow("inner", retry=TracedTimes(2, name="inner_r", provides="inner_attempt", trace=trace))
    inner.add(Step("i1", trace, requires=["inner_attempt"], key="outer_attempt", fail_on=[1]))
    outer = linear_flow.Flow("outer", retry=TracedTimes(2, name="outer_r", provides="outer_attempt", trace=trace))
    outer.add(Step("o1", trace), inner)
    flow = linear_flow.Flow("nested").add(outer, Step("after", trace))
    engine = flow_env.load(flow)
    engine.run(timeout=60)
    assert [e["value"] for e in read_trace(trace) if e["name"] == "outer_r"] == [1, 2]
    # inner tried twice in outer attempt 1, then (its history cleared by the outer retry) once
    assert [e["value"] for e in read_trace(trace) if e["name"] == "inner_r" and e["what"] == "execute"] == [1, 2, 1]
    assert inputs(trace, "i1") == [
        {"inner_attempt": 1, "outer_attempt": 1},
        {"inner_attempt": 2, "outer_attempt": 1},
        {"inner_attempt": 1, "outer_attempt": 2},
    ]
    assert executed(trace, "o1") == ["o1", "o1"]
    # the outer retry reverted its whole scope, inner controller included
    assert [c for c in calls(trace) if c[0] == "revert"] == [
        ("revert", "i1"), ("revert", "i1"), ("revert", "inner_r"), ("revert", "o1"),
    ]
    st = engine.storage
    assert st.get_flow_state() == states.SUCCESS
    assert list(st.get_retry_history("inner_r").provided_iter()) == [1]
    outer_history = st.get_retry_history("outer_r")
    assert list(outer_history.provided_iter()) == [1, 2]
    assert sorted(outer_history[0][1]) == ["inner_r"]


def test_for_each_tries_values_until_one_works(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=TracedForEach(["a", "b", "c", "d"], name="each", provides="host", trace=trace))
    sub.add(Step("use", trace, key="host", fail_on=["a", "b"]))
    engine = flow_env.load(linear_flow.Flow("fe").add(sub))
    engine.run(timeout=60)
    assert inputs(trace, "use") == [{"host": "a"}, {"host": "b"}, {"host": "c"}]
    assert engine.storage.fetch("host") == "c"
    assert list(engine.storage.get_retry_history("each").provided_iter()) == ["a", "b", "c"]


def test_parameterized_for_each_exhausted(flow_env):
    trace = flow_env.trace()
    controller = TracedParameterizedForEach(name="each", provides="host", trace=trace, rebind={"values": "hosts"})
    sub = linear_flow.Flow("sub", retry=controller).add(Step("use", trace, key="host", fail=True))
    flow = linear_flow.Flow("pfe").add(Step("before", trace), sub)
    engine = flow_env.load(flow, store={"hosts": ["h1", "h2"]})
    with pytest.raises(StepError, match="h2"):
        engine.run(timeout=60)
    assert inputs(trace, "use") == [{"host": "h1"}, {"host": "h2"}]
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert st.get_atom_state("before") == states.SUCCESS
    assert st.get_atom_state("each") == states.REVERTED


def test_retry_does_not_disturb_a_sibling_branch(flow_env):
    trace = flow_env.trace()
    retried = linear_flow.Flow("retried", retry=TracedTimes(3, name="r", provides="attempt", trace=trace)).add(
        Step("x", trace, key="attempt"), Step("y", trace, key="attempt", fail_on=[1, 2])
    )
    sibling = linear_flow.Flow("sibling").add(*(Step(f"s{i}", trace, delay=0.15) for i in range(4)))
    join = Step("join", trace)
    flow = graph_flow.Flow("branches").add(retried, sibling, join)
    flow.link(retried, join)
    flow.link(sibling, join)
    engine = flow_env.load(flow)
    engine.run(timeout=60)
    names = executed(trace)
    for i in range(4):
        assert names.count(f"s{i}") == 1
    assert not [n for n in reverted(trace) if n.startswith("s")]
    assert names.count("y") == 3 and names[-1] == "join" and names.count("join") == 1
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_retry_countdown_delays_the_next_attempt(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=TracedTimes(2, name="r", provides="attempt", trace=trace, delay=0.6)).add(
        Step("x", trace, key="attempt", fail_on=[1])
    )
    engine = flow_env.load(linear_flow.Flow("cd").add(sub))
    engine.run(timeout=60)
    entries = read_trace(trace)
    reverted_at = next(e["t"] for e in entries if e["what"] == "revert" and e["name"] == "x")
    second = [e["t"] for e in entries if e["what"] == "execute" and e["name"] == "r"][1]
    assert second - reverted_at >= 0.5


def test_unordered_subflow_retry_reverts_each_executed_member_once(flow_env):
    trace = flow_env.trace()
    sub = unordered_flow.Flow("fan", retry=TracedTimes(2, name="r", provides="attempt", trace=trace)).add(
        Step("u0", trace, key="attempt", fail_on=[1]), *(Step(f"u{i}", trace, key="attempt") for i in range(1, 5))
    )
    engine = flow_env.load(linear_flow.Flow("uf").add(sub))
    engine.run(timeout=60)
    first = [e for e in read_trace(trace) if e["what"] == "revert"]
    executed_first = {
        e["name"] for e in read_trace(trace) if e["what"] == "execute" and e.get("args", {}).get("attempt") == 1
    }
    assert sorted(e["name"] for e in first) == sorted(executed_first)
    assert sorted(executed(trace)[-5:]) == [f"u{i}" for i in range(5)]
    assert engine.storage.get_flow_state() == states.SUCCESS


# ----------------------------------------------------------------------------- bad input


def test_controller_value_not_json_fails_naming_the_controller(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=SetProvider(name="bad_ctl", provides="v")).add(Step("x", trace))
    engine = flow_env.load(linear_flow.Flow("nj").add(Step("before", trace), sub))
    with pytest.raises(SerializationError, match="bad_ctl"):
        engine.run(timeout=60)
    assert executed(trace) == ["before"]
    assert reverted(trace) == ["before"]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_for_each_values_not_json(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=TracedForEach([{1, 2}], name="sets", provides="v", trace=trace))
    sub.add(Step("x", trace))
    engine = flow_env.load(linear_flow.Flow("nj2").add(sub))
    with pytest.raises(SerializationError, match="sets"):
        engine.run(timeout=60)
    assert executed(trace) == ["sets"]  # the controller ran; its value could not be stored; x never ran
    assert engine.storage.get_atom_state("x") == states.PENDING


def test_on_failure_that_raises_reverts_the_flow(flow_env):
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=Undecided(name="undecided", provides="n")).add(Step("x", trace, fail=True))
    engine = flow_env.load(linear_flow.Flow("ud").add(Step("before", trace), sub))
    with pytest.raises(exceptions.WrappedFailure) as info:
        engine.run(timeout=60)
    assert info.value.check(StepError)
    assert info.value.check(exceptions.ExecutionFailure)
    assert "undecided" in str(info.value) and "KeyError" in str(info.value)
    assert reverted(trace) == ["x", "before"]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_failure_outside_a_retrying_scope_reverts_everything_once(flow_env):
    trace = flow_env.trace()
    retried = linear_flow.Flow("retried", retry=TracedTimes(3, name="r", provides="attempt", trace=trace)).add(
        Step("x", trace, key="attempt", revert_delay=1.0), Step("y", trace, key="attempt", fail_on=[1])
    )
    other = linear_flow.Flow("other").add(Step("s0", trace, delay=0.4), Step("s1", trace, fail=True))
    engine = flow_env.load(unordered_flow.Flow("both").add(retried, other))
    with pytest.raises(StepError, match="s1 failed"):
        engine.run(timeout=60)
    ran = executed(trace)
    undone = reverted(trace)
    assert ran.count("y") == 1  # the retry was abandoned: no second attempt
    assert len(undone) == len(set(undone))  # each reverted once
    assert set(undone) == set(ran)
    st = engine.storage
    assert st.get_flow_state() == states.REVERTED
    assert {s for s, _i in st.get_atoms_states().values()} == {states.REVERTED}


def test_reverts_of_a_retry_round_receive_the_failure_being_retried(flow_env):
    """As TaskFlow, and as on a flow revert: ``flow_failures`` is ``{failed atom: Failure}``."""
    trace = flow_env.trace()
    sub = linear_flow.Flow("sub", retry=TracedTimes(2, name="r", provides="attempt", trace=trace)).add(
        FailureWitness("x", trace, key="attempt"), FailureWitness("y", trace, key="attempt", fail_on=[1])
    )
    engine = flow_env.load(linear_flow.Flow("witnessed").add(sub))
    engine.run(timeout=60)
    assert calls(trace).count(("execute", "y")) == 2
    seen = {e["name"]: e["seen"] for e in read_trace(trace) if e["what"] == "flow_failures"}
    failed = ["Failure", [f"{StepError.__module__}.StepError", "builtins.RuntimeError", "builtins.Exception",
                          "builtins.BaseException"]]
    assert seen == {"y": {"y": failed}, "x": {"y": failed}}


def test_a_flow_revert_passes_the_same_flow_failures(flow_env):
    trace = flow_env.trace()
    flow = linear_flow.Flow("witnessed").add(FailureWitness("x", trace), FailureWitness("y", trace, fail=True))
    with pytest.raises(StepError):
        flow_env.load(flow).run(timeout=60)
    seen = {e["name"]: e["seen"] for e in read_trace(trace) if e["what"] == "flow_failures"}
    assert set(seen) == {"x", "y"} and seen["x"] == seen["y"] and list(seen["x"]) == ["y"]
    assert seen["x"]["y"][0] == "Failure" and seen["x"]["y"][1][0].endswith("StepError")
