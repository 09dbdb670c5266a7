"""Atoms, tasks and retry controllers: requirements, provides, rebinding, progress."""

from __future__ import annotations

from typing import Any

import pytest

from celeryflow import atom as atommod
from celeryflow import retry, task
from celeryflow.exceptions import NotFound
from celeryflow.types.failure import Failure


class Add(task.Task):
    default_provides = "sum"

    def execute(self, x: int, y: int, scale: int = 1) -> int:
        return (x + y) * scale


class WithRevert(task.Task):
    def execute(self, a: int) -> int:
        return a

    def revert(
        self, a: int, undo_key: str, result: Any, flow_failures: Any, note: str = "", **kwargs: Any
    ) -> None:
        pass


class KwTask(task.Task):
    def execute(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs


def test_requires_inferred_from_execute_signature() -> None:
    t = Add()
    assert t.requires == {"x", "y"}
    assert list(t.requires) == ["x", "y"]
    assert t.optional == {"scale"}
    assert t.rebind == {"x": "x", "y": "y", "scale": "scale"}
    assert t.optional_params == {"scale"}


def test_default_name_is_module_and_qualname() -> None:
    assert Add().name == f"{__name__}.Add"
    assert Add("named").name == "named"


def test_default_provides_and_override() -> None:
    assert Add().provides == {"sum"}
    assert Add().save_as == {"sum": None}
    assert Add(provides="total").save_as == {"total": None}


def test_provides_tuple_maps_by_index_and_set_by_key() -> None:
    t = Add(provides=("a", "b"))
    assert t.save_as == {"a": 0, "b": 1}
    assert list(t.provides) == ["a", "b"]
    s = Add(provides={"k1", "k2"})
    assert s.save_as == {"k1": "k1", "k2": "k2"}
    assert Add(provides=["l0"]).save_as == {"l0": 0}


def test_provides_bad_type() -> None:
    with pytest.raises(TypeError):
        Add(provides=3)


def test_rebind_dict() -> None:
    t = Add(rebind={"x": "left", "scale": "factor"})
    assert t.rebind == {"x": "left", "y": "y", "scale": "factor"}
    assert t.requires == {"left", "y"}
    # a parameter with a default stays optional when rebound
    assert t.optional == {"factor"}


def test_rebind_list_is_positional() -> None:
    t = Add(rebind=["a", "b"])
    assert t.rebind == {"x": "a", "y": "b", "scale": "scale"}
    t3 = Add(rebind=["a", "b", "c"])
    assert t3.rebind["scale"] == "c"
    assert t3.optional == {"c"}


def test_rebind_unknown_param_rejected_without_kwargs() -> None:
    with pytest.raises(ValueError, match="Extra arguments"):
        Add(rebind={"nope": "z"})
    with pytest.raises(ValueError, match="Extra arguments"):
        Add(rebind=["a", "b", "c", "d"])


def test_rebind_bad_type() -> None:
    with pytest.raises(TypeError):
        Add(rebind="x")


def test_extra_requires_need_kwargs() -> None:
    t = KwTask(requires=["p", "q"])
    assert t.requires == {"p", "q"}
    assert t.rebind == {"p": "p", "q": "q"}
    with pytest.raises(ValueError):
        Add(requires=["zzz"])
    assert KwTask(requires="single").requires == {"single"}


def test_inject_removes_requirements() -> None:
    t = Add(inject={"x": 5})
    assert t.requires == {"y"}
    assert t.inject == {"x": 5}
    rebound = Add(rebind={"y": "other"}, inject={"other": 1})
    assert rebound.requires == {"x"}


def test_revert_requirements() -> None:
    t = WithRevert()
    assert t.revert_rebind == {"a": "a", "undo_key": "undo_key", "note": "note"}
    assert t.revert_requires == {"a", "undo_key"}
    assert t.revert_optional == {"note"}
    assert t.revert_optional_params == {"note"}
    # requires covers execute and revert, result/flow_failures excluded
    assert t.requires == {"a", "undo_key"}
    assert "result" not in t.revert_rebind and "flow_failures" not in t.revert_rebind


def test_revert_inherits_renames_only_for_its_parameters() -> None:
    t = WithRevert(rebind={"a": "alpha"})
    assert t.rebind == {"a": "alpha"}
    assert t.revert_rebind["a"] == "alpha"
    t2 = WithRevert(revert_rebind={"undo_key": "key"}, revert_requires=["extra"])
    assert t2.revert_rebind["undo_key"] == "key"
    assert "extra" in t2.revert_requires


def test_revert_inherit_skips_params_revert_lacks() -> None:
    class Two(task.Task):
        def execute(self, a: int, b: int) -> int:
            return a + b

        def revert(self, a: int, result: Any, flow_failures: Any) -> None:
            pass

    t = Two(rebind={"b": "bee"})
    assert t.revert_rebind == {"a": "a"}
    assert t.requires == {"a", "bee"}


def test_default_revert_is_noop_without_requirements() -> None:
    t = Add()
    assert t.revert_rebind == {}
    assert t.revert(result=1, flow_failures={}) is None


def test_auto_extract_false_needs_explicit_mapping() -> None:
    with pytest.raises(ValueError, match="Missing arguments"):
        Add(auto_extract=False)
    t = Add(auto_extract=False, rebind={"x": "x", "y": "y"})
    assert t.requires == {"x", "y"}
    assert t.optional == set()


def test_ctor_arguments_are_captured() -> None:
    t = Add("n", provides=("a", "b"), inject={"x": 1})
    assert t._ctor_args == ("n",)
    assert t._ctor_kwargs == {"provides": ("a", "b"), "inject": {"x": 1}}
    times = retry.Times(3, provides="attempt")
    assert times._ctor_args == (3,)
    assert times._ctor_kwargs == {"provides": "attempt"}


def test_progress_is_clamped_and_sent_to_sink() -> None:
    t = Add()
    seen: list[tuple[atommod.Atom, float, dict[str, Any] | None]] = []
    t.update_progress(2.5)
    assert t.progress == 1.0
    t.update_progress(-1)
    assert t.progress == 0.0
    token = atommod.progress_sink.set(lambda a, p, d: seen.append((a, p, d)))
    try:
        t.update_progress(0.5, step="half")
        t.update_progress(7)
    finally:
        atommod.progress_sink.reset(token)
    assert seen == [(t, 0.5, {"step": "half"}), (t, 1.0, None)]
    t.update_progress(0.25)
    assert len(seen) == 2


def test_progress_task_notifier() -> None:
    t = Add()
    events: list[tuple[str, dict[str, Any]]] = []
    t.notifier.register(task.EVENT_UPDATE_PROGRESS, lambda e, d: events.append((e, d)))
    t.update_progress(0.3)
    assert events == [("update_progress", {"progress": 0.3})]


def test_str_and_repr() -> None:
    t = Add("a")
    assert str(t) == "\"a==1.0\""  # TaskFlow's form
    assert "Add" in repr(t)


def module_fn(a: int, b: int = 2) -> int:
    return a + b


def module_revert(a: int, result: Any) -> None:
    module_revert.calls.append((a, result))  # type: ignore[attr-defined]


module_revert.calls = []  # type: ignore[attr-defined]


def test_functor_task() -> None:
    t = task.FunctorTask(module_fn, provides="out")
    assert t.name == f"{__name__}.module_fn"
    assert t.requires == {"a"}
    assert t.optional == {"b"}
    assert t.execute(a=1) == 3
    assert t.revert(a=1, result=3, flow_failures={}) is None


def test_functor_task_revert_gets_only_what_it_accepts() -> None:
    t = task.FunctorTask(module_fn, revert=module_revert)
    assert t.revert_rebind == {"a": "a"}
    t.revert(a=1, result=5, flow_failures={})
    assert module_revert.calls == [(1, 5)]  # type: ignore[attr-defined]


def test_functor_task_validation() -> None:
    with pytest.raises(ValueError):
        task.FunctorTask(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        task.FunctorTask(module_fn, revert=42)  # type: ignore[arg-type]
    t = task.FunctorTask(module_fn, rebind={"a": "alpha"}, version=(2, 1), name="f")
    assert t.requires == {"alpha"}
    assert str(t) == "\"f==2.1\""


def square(v: int) -> int:
    return v * v


def test_map_functor_task() -> None:
    t = task.MapFunctorTask(square, requires=["a", "b", "c"], provides="squares")
    assert t.requires == {"a", "b", "c"}
    assert t.execute(c=3, a=1, b=2) == [1, 4, 9]
    with pytest.raises(ValueError):
        task.MapFunctorTask(module_fn, requires=["a"])
    with pytest.raises(TypeError):
        task.MapFunctorTask(square, requires="a")


def test_reduce_functor_task() -> None:
    t = task.ReduceFunctorTask(lambda x, y: x - y, requires=("a", "b", "c"), name="sub")
    assert t.execute(b=2, c=3, a=10) == 5
    with pytest.raises(ValueError):
        task.ReduceFunctorTask(lambda x, y: x, requires=["only"])
    with pytest.raises(ValueError):
        task.ReduceFunctorTask(square, requires=["a", "b"])  # type: ignore[arg-type]


# ----------------------------------------------------------------- retries


def _failure(exc: BaseException) -> Failure:
    return Failure.from_exception(exc)


def test_retry_constants_and_decision() -> None:
    assert retry.RETRY == "RETRY" and retry.REVERT == "REVERT" and retry.REVERT_ALL == "REVERT_ALL"
    assert retry.Decision.RETRY == "RETRY"
    assert retry.Decision("REVERT_ALL") is retry.Decision.REVERT_ALL


def test_history() -> None:
    h = retry.History([(1, {"a": _failure(ValueError("x"))}), (2, {"b": _failure(KeyError("k"))})])
    assert len(h) == 2
    assert list(h.provided_iter()) == [1, 2]
    assert [name for name, _f in h.outcomes_iter()] == ["a", "b"]
    assert [name for name, _f in h.outcomes_iter(1)] == ["b"]
    assert h.caused_by(ValueError)
    assert h.caused_by(KeyError, index=1)
    assert not h.caused_by(KeyError, index=0)
    assert not h.caused_by(TypeError)
    assert h[0][0] == 1
    assert [p for p, _o in h] == [1, 2]
    assert [n for n, _f in h.failures] == ["a", "b"]
    assert h.failure is None
    own = retry.History([], failure=_failure(TypeError("t")))
    assert not own.caused_by(TypeError)
    assert own.caused_by(TypeError, include_retry=True)
    assert len(retry.History()) == 0


def test_history_json_roundtrip() -> None:
    from celeryflow import serialization

    h = retry.History([(1, {"a": _failure(ValueError("x"))}), ("v", {})])
    data = serialization.roundtrip(h.to_list())
    back = retry.History.from_list(data)
    assert back == h
    assert back.caused_by(ValueError)
    assert retry.History.from_list(None) == retry.History()


def test_times() -> None:
    r = retry.Times(3)
    assert r.name is None  # named by the flow it is attached to
    assert r.requires == set()
    h = retry.History()
    assert r.execute(h) == 1
    h = retry.History([(1, {}), (2, {})])
    assert r.execute(h) == 3
    assert r.on_failure(h) == retry.RETRY
    h3 = retry.History([(1, {}), (2, {}), (3, {})])
    assert r.on_failure(h3) == retry.REVERT
    assert retry.Times(3, revert_all=True).on_failure(h3) == retry.REVERT_ALL


def test_for_each() -> None:
    r = retry.ForEach(["a", "b"], provides="value")
    assert r.execute(retry.History()) == "a"
    one = retry.History([("a", {})])
    assert r.execute(one) == "b"
    assert r.on_failure(one) == retry.RETRY
    both = retry.History([("a", {}), ("b", {})])
    assert r.on_failure(both) == retry.REVERT
    assert retry.ForEach(["a"], revert_all=True).on_failure(retry.History([("a", {})])) == retry.REVERT_ALL
    with pytest.raises(NotFound):
        r.execute(both)


def test_parameterized_for_each() -> None:
    r = retry.ParameterizedForEach(provides="value")
    assert r.requires == {"values"}
    assert r.execute(retry.History(), values=[1, 2]) == 1
    assert r.on_failure(retry.History([(1, {})]), values=[1, 2]) == retry.RETRY
    assert r.on_failure(retry.History([(1, {}), (2, {})]), values=[1, 2]) == retry.REVERT


def test_always_revert() -> None:
    assert retry.AlwaysRevert().on_failure(retry.History()) == retry.REVERT
    assert retry.AlwaysRevertAll().on_failure(retry.History()) == retry.REVERT_ALL


def test_retry_requires_exclude_history() -> None:
    class Custom(retry.Retry):
        def execute(self, history: retry.History, limit: int, mode: str = "x") -> int:
            return len(history)

        def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> str:
            return retry.RETRY

    r = Custom("c")
    assert r.requires == {"limit"}
    assert r.optional == {"mode"}
    assert "history" not in r.rebind


def test_retry_delay_backoff() -> None:
    r = retry.Times(5, delay=2.0, backoff=3.0)
    assert (r.delay, r.backoff) == (2.0, 3.0)
    assert r.countdown(0) == 0.0
    assert r.countdown(1) == 2.0
    assert r.countdown(2) == 6.0
    assert r.countdown(3) == 18.0
    assert retry.Times(2).countdown(3) == 0.0
    with pytest.raises(ValueError):
        retry.Times(2, delay=-1)
