"""The compiler: execution edges, retry scopes, providers, deciders, validation helpers, JSON form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from celeryflow import compiler, retry, serialization, task
from celeryflow.compiler import Compilation, CompiledDecider
from celeryflow.exceptions import DependencyFailure, Duplicate, MissingDependencies, SerializationError
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow


class T(task.Task):
    def __init__(self, name: str, provides: Any = None, requires: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, provides=provides, requires=requires, **kwargs)

    def execute(self, **kwargs: Any) -> Any:
        return None


class Rev(task.Task):
    def execute(self, a: int, opt: int = 0) -> int:
        return a

    def revert(self, a: int, undo: str, result: Any, flow_failures: Any, maybe: int = 0) -> None:
        pass


def edges(comp: Compilation) -> set[tuple[str, str]]:
    return {(p, n) for n, a in comp.atoms.items() for p in a.preds}


def check_consistent(comp: Compilation) -> None:
    for name, atom in comp.atoms.items():
        for p in atom.preds:
            assert name in comp.atoms[p].succs
            assert comp.atoms[p].index < atom.index
    assert list(comp.atoms) == list(comp.order)
    assert [a.index for a in comp.atoms.values()] == list(range(len(comp.order)))


def is_decider(history: dict[str, Any]) -> bool:
    return bool(history)


# ----------------------------------------------------------------- edges


def test_linear_edges_and_order() -> None:
    comp = compiler.compile(linear_flow.Flow("f").add(T("a"), T("b"), T("c")))
    assert comp.order == ("a", "b", "c")
    assert edges(comp) == {("a", "b"), ("b", "c")}
    assert comp.sources() == ("a",) and comp.sinks() == ("c",)
    assert comp.atoms["b"].kind == "task" and comp.atoms["b"].flow == "f"
    assert comp.flow_name == "f"
    check_consistent(comp)


def test_unordered_edges() -> None:
    comp = compiler.compile(unordered_flow.Flow("u").add(T("b"), T("a"), T("c")))
    assert edges(comp) == set()
    assert comp.order == ("b", "a", "c")  # declaration order breaks ties
    assert comp.sources() == comp.sinks() == ("b", "a", "c")


def test_nested_unordered_in_linear_is_a_fan_out_and_join() -> None:
    f = linear_flow.Flow("f").add(T("a"), unordered_flow.Flow("u").add(T("b"), T("c")), T("d"))
    comp = compiler.compile(f)
    assert edges(comp) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert comp.atoms["d"].preds == ("b", "c")
    assert comp.atoms["b"].flow == "u" and comp.atoms["a"].flow == "f"
    assert comp.atoms["b"].flow_index != comp.atoms["a"].flow_index
    check_consistent(comp)


def test_empty_subflows_pass_through() -> None:
    f = linear_flow.Flow("f").add(T("a"), linear_flow.Flow("empty"), unordered_flow.Flow("e2"), T("b"))
    comp = compiler.compile(f)
    assert edges(comp) == {("a", "b")}
    assert compiler.compile(linear_flow.Flow("nothing")).order == ()


def test_graph_edges_with_subflow_links() -> None:
    sub = unordered_flow.Flow("sub").add(T("s1"), T("s2"))
    head, tail = T("head"), T("tail")
    g = graph_flow.Flow("g").add(head, sub, tail)
    g.link(head, sub)
    g.link(sub, tail)
    comp = compiler.compile(g)
    assert edges(comp) == {("head", "s1"), ("head", "s2"), ("s1", "tail"), ("s2", "tail")}
    check_consistent(comp)


def test_graph_data_edges() -> None:
    g = graph_flow.Flow("g").add(T("c", requires=["x", "y"]), T("b", provides="y"), T("a", provides="x"))
    comp = compiler.compile(g)
    assert edges(comp) == {("a", "c"), ("b", "c")}
    assert comp.order.index("c") == 2


def test_graph_nested_in_linear() -> None:
    g = graph_flow.Flow("g").add(T("p", provides="x"), T("q", requires="x"), T("r"))
    f = linear_flow.Flow("f").add(T("start"), g, T("end"))
    comp = compiler.compile(f)
    assert edges(comp) == {
        ("start", "p"), ("start", "r"), ("p", "q"), ("q", "end"), ("r", "end"),
    }


# ----------------------------------------------------------------- retries


def test_retry_runs_before_its_subflow() -> None:
    sub = linear_flow.Flow("sub", retry=retry.Times(3)).add(T("a"), T("b"))
    f = linear_flow.Flow("f").add(T("x"), sub, T("y"))
    comp = compiler.compile(f)
    assert edges(comp) == {("x", "sub_retry"), ("sub_retry", "a"), ("a", "b"), ("b", "y")}
    r = comp.atoms["sub_retry"]
    assert r.kind == "retry" and r.retry is None and r.flow == "sub"
    assert comp.atoms["a"].retry == "sub_retry"
    assert comp.atoms["x"].retry is None and comp.atoms["y"].retry is None
    assert comp.retries["sub_retry"].members == ("a", "b")
    assert comp.retries["sub_retry"].parent is None


def test_retry_on_unordered_and_empty_flows() -> None:
    u = unordered_flow.Flow("u", retry=retry.Times(2, name="r")).add(T("a"), T("b"))
    comp = compiler.compile(linear_flow.Flow("f").add(T("x"), u, T("y")))
    assert edges(comp) == {("x", "r"), ("r", "a"), ("r", "b"), ("a", "y"), ("b", "y")}
    empty = linear_flow.Flow("e", retry=retry.Times(2, name="r2"))
    comp2 = compiler.compile(linear_flow.Flow("f").add(T("x"), empty, T("y")))
    assert edges(comp2) == {("x", "r2"), ("r2", "y")}
    assert comp2.retries["r2"].members == ()


def test_nested_retry_scopes() -> None:
    inner = linear_flow.Flow("inner", retry=retry.Times(2, name="r_in")).add(T("c"))
    outer = linear_flow.Flow("outer", retry=retry.Times(2, name="r_out")).add(T("b"), inner)
    root = linear_flow.Flow("root").add(T("a"), outer, T("d"))
    comp = compiler.compile(root)
    assert comp.order == ("a", "r_out", "b", "r_in", "c", "d")
    assert comp.retries["r_out"].members == ("b", "r_in", "c")
    assert comp.retries["r_in"] == compiler.RetryScope("r_in", "r_out", ("c",))
    assert comp.atoms["r_in"].retry == "r_out"
    assert comp.atoms["c"].retry == "r_in"
    assert comp.atoms["b"].retry == "r_out"


def test_root_retry() -> None:
    comp = compiler.compile(linear_flow.Flow("f", retry=retry.Times(2)).add(T("a")))
    assert comp.sources() == ("f_retry",)
    assert comp.retries["f_retry"].members == ("a",)


# ----------------------------------------------------------------- data


def test_provider_nearest_wins_in_linear() -> None:
    f = linear_flow.Flow("f").add(
        T("p1", provides="x"), T("p2", provides="x"), T("c", requires="x"), T("p3", provides="x")
    )
    comp = compiler.compile(f)
    assert dict(comp.atoms["c"].providers) == {"x": "p2"}
    assert dict(comp.atoms["p2"].providers) == {}


def test_provider_from_nested_subflow_and_outer_scope() -> None:
    sub = unordered_flow.Flow("sub").add(T("p", provides="y"), T("q", requires="x"))
    f = linear_flow.Flow("f").add(T("a", provides="x"), sub, T("c", requires=["x", "y"]))
    comp = compiler.compile(f)
    assert dict(comp.atoms["q"].providers) == {"x": "a"}
    assert dict(comp.atoms["c"].providers) == {"x": "a", "y": "p"}


def test_provider_must_be_an_ancestor() -> None:
    g = graph_flow.Flow("g").add(T("p", provides="x"))
    g.add(T("c", requires="x"), resolve_requires=False)
    comp = compiler.compile(g)
    assert dict(comp.atoms["c"].providers) == {}
    assert comp.missing([]) == {"c": ["x"]}
    assert comp.missing(["x"]) == {}


def test_provider_latest_in_topological_order_across_branches() -> None:
    g = graph_flow.Flow("g")
    a, b, c = T("a", provides="x"), T("b"), T("c")
    g.add(a, b, c)
    late = T("late", provides="x")
    g.add(late, resolve_existing=False)
    g.link(a, b)
    g.link(b, late)
    g.link(late, c)
    comp = compiler.compile(linear_flow.Flow("f").add(g, T("z", requires="x")))
    assert dict(comp.atoms["z"].providers) == {"x": "late"}


def test_providers_cover_revert_arguments_and_save_as() -> None:
    f = linear_flow.Flow("f").add(T("p", provides=("a", "undo")), Rev("r"))
    comp = compiler.compile(f)
    atom = comp.atoms["r"]
    assert dict(atom.providers) == {"a": "p", "undo": "p"}
    assert dict(comp.atoms["p"].save_as) == {"a": 0, "undo": 1}
    assert dict(atom.exec_args) == {"a": "a", "opt": "opt"}
    assert atom.exec_optional == {"opt"}
    assert dict(atom.revert_args) == {"a": "a", "undo": "undo", "maybe": "maybe"}
    assert atom.revert_optional == {"maybe"}


def test_missing_includes_revert_requirements() -> None:
    comp = compiler.compile(linear_flow.Flow("f").add(Rev("r")))
    assert comp.missing([]) == {"r": ["a", "undo"]}
    assert comp.missing(["a"]) == {"r": ["undo"]}
    assert comp.missing(["a", "undo"]) == {}
    with pytest.raises(MissingDependencies) as info:
        comp.check_missing(["a"])
    assert info.value.missing_requirements == {"r": ["undo"]}


def test_missing_respects_inject_and_rebind() -> None:
    f = linear_flow.Flow("f").add(
        Rev("r1", inject={"a": 1, "undo": "u"}),
        Rev("r2", rebind={"a": "alpha"}, revert_rebind={"undo": "u2"}),
    )
    comp = compiler.compile(f)
    assert dict(comp.atoms["r1"].inject) == {"a": 1, "undo": "u"}
    assert comp.missing([]) == {"r2": ["alpha", "u2"]}


def test_inject_must_be_json() -> None:
    with pytest.raises(SerializationError, match="r1"):
        compiler.compile(linear_flow.Flow("f").add(Rev("r1", inject={"a": object()})))


def test_retry_provides_feed_subflow() -> None:
    controller = retry.ParameterizedForEach(name="r", provides="v")
    f = linear_flow.Flow("f", retry=controller).add(T("a", requires="v"))
    comp = compiler.compile(f)
    assert dict(comp.atoms["a"].providers) == {"v": "r"}
    assert comp.missing([]) == {"r": ["values"]}


# ----------------------------------------------------------------- deciders


def test_deciders_compiled_on_target() -> None:
    a, b, c = T("a"), T("b"), T("c")
    g = graph_flow.Flow("g").add(a, b, c)
    g.link(a, b, decider=is_decider, decider_depth="ATOM")
    g.link(b, c, decider=lambda history: True)
    comp = compiler.compile(g)
    assert comp.atoms["b"].deciders == (CompiledDecider("a", f"{__name__}:is_decider", "ATOM", 0),)
    assert comp.atoms["c"].deciders == (CompiledDecider("b", None, "ALL", 1),)
    assert comp.deciders == (f"{__name__}:is_decider", None)
    live = compiler.deciders(g)
    assert live[0] is is_decider and live[1]({}) is True


def test_flow_level_decider_links() -> None:
    src = unordered_flow.Flow("src").add(T("s1"), T("s2"))
    dst = linear_flow.Flow("dst", retry=retry.Times(2, name="r")).add(T("d1"), T("d2"))
    g = graph_flow.Flow("g").add(src, dst)
    g.link(src, dst, decider=is_decider, decider_depth="FLOW")
    comp = compiler.compile(linear_flow.Flow("root").add(T("before"), g))
    assert {d.pred for d in comp.atoms["r"].deciders} == {"s1", "s2"}
    assert {d.link_id for d in comp.atoms["r"].deciders} == {0}
    assert comp.atoms["d1"].deciders == ()


def test_ignore_set_depths() -> None:
    inner = linear_flow.Flow("inner").add(T("i1"), T("i2"))
    g = graph_flow.Flow("g")
    a, b, c, d = T("a"), T("b"), T("c"), T("d")
    g.add(a, b, c, inner, d)
    g.link(a, b)
    g.link(b, c)
    g.link(b, inner)
    g.link(c, d)
    comp = compiler.compile(linear_flow.Flow("root").add(g, T("after")))
    assert comp.ignore_set("b", "ATOM") == {"b"}
    assert comp.ignore_set("b", "NEIGHBORS") == {"b", "c"}
    assert comp.ignore_set("b", "FLOW") == {"b", "c", "d"}
    assert comp.ignore_set("b", "ALL") == {"b", "c", "d", "i1", "i2", "after"}
    assert comp.ignore_set("i1", "FLOW") == {"i1", "i2"}
    assert comp.ignore_set("b", graph_flow.Depth.ATOM) == {"b"}
    with pytest.raises(ValueError):
        comp.ignore_set("b", "SOME")


def test_ancestors_descendants() -> None:
    u = unordered_flow.Flow("u").add(T("b"), T("c"))
    comp = compiler.compile(linear_flow.Flow("f").add(T("a"), u, T("d")))
    assert comp.ancestors("d") == {"a", "b", "c"}
    assert comp.descendants("a") == {"b", "c", "d"}
    assert comp.ancestors("a") == frozenset()
    assert comp.descendants("b") == {"d"}


# ----------------------------------------------------------------- validation


def test_duplicate_names_found_at_compile() -> None:
    sub = linear_flow.Flow("sub")
    f = linear_flow.Flow("f").add(T("a"), sub)
    sub.add(T("a"))  # not detectable when added: sub did not know its parent
    with pytest.raises(Duplicate):
        compiler.compile(f)
    with pytest.raises(Duplicate):
        compiler.atoms_by_name(f)


def test_same_flow_object_twice() -> None:
    shared = linear_flow.Flow("shared")
    f = linear_flow.Flow("f").add(linear_flow.Flow("x").add(shared), linear_flow.Flow("y").add(shared))
    with pytest.raises(Duplicate):
        compiler.compile(f)


def test_unordered_invariant_rechecked_at_compile() -> None:
    sub = linear_flow.Flow("sub")
    f = unordered_flow.Flow("u").add(sub, T("b", requires="x"))
    sub.add(T("a", provides="x"))
    with pytest.raises(DependencyFailure):
        compiler.compile(f)


def test_compile_rejects_non_flows() -> None:
    with pytest.raises(TypeError):
        compiler.compile(T("a"))  # type: ignore[arg-type]


def test_atoms_by_name() -> None:
    r = retry.Times(2)
    a = T("a")
    f = linear_flow.Flow("f", retry=r).add(a)
    assert compiler.atoms_by_name(f) == {"f_retry": r, "a": a}


# ----------------------------------------------------------------- immutability and JSON


def test_compilation_is_immutable() -> None:
    comp = compiler.compile(linear_flow.Flow("f").add(Rev("r")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.flow_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        comp.atoms["r"].exec_args["a"] = "b"  # type: ignore[index]
    with pytest.raises(TypeError):
        comp.atoms["x"] = comp.atoms["r"]  # type: ignore[index]


def _complex_flow() -> linear_flow.Flow:
    g = graph_flow.Flow("g", retry=retry.ForEach([1, 2], name="fe", provides="v"))
    p, q = T("p", provides={"k1", "k2"}), T("q", requires=["k1", "v"], inject={"when": "now"})
    g.add(p, q)
    g.link(p, q, decider=is_decider, decider_depth="NEIGHBORS")
    return linear_flow.Flow("root", retry=retry.Times(3, name="t")).add(
        T("a", provides=("x", "y")), g, unordered_flow.Flow("u").add(Rev("r", rebind={"a": "x"}), T("z"))
    )


def test_to_dict_from_dict_roundtrip() -> None:
    comp = compiler.compile(_complex_flow())
    data = comp.to_dict()
    text = json.dumps(data)  # plain JSON
    back = Compilation.from_dict(json.loads(text))
    assert back == comp
    assert back.to_dict() == data
    assert Compilation.from_dict(serialization.loads(serialization.dumps(data))) == comp
    assert back.atoms["q"].deciders[0].depth == "NEIGHBORS"
    assert back.missing(["undo"]) == comp.missing(["undo"])
    assert back.ignore_set("q", "ALL") == comp.ignore_set("q", "ALL")


def test_compile_is_deterministic() -> None:
    assert compiler.compile(_complex_flow()) == compiler.compile(_complex_flow())


def test_large_linear_flow() -> None:
    f = linear_flow.Flow("big")
    f.add(*[T(f"n{i}", provides=f"v{i}", requires=[f"v{i - 1}"] if i else None) for i in range(10_000)])
    comp = compiler.compile(f)
    assert len(comp.order) == 10_000
    assert comp.atoms["n9999"].preds == ("n9998",)
    assert dict(comp.atoms["n5000"].providers) == {"v4999": "n4999"}
    assert comp.missing([]) == {}
    assert len(comp.to_dict()["atoms"]) == 10_000
