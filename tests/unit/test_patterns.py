"""Flow patterns: linear, unordered and graph flows; nesting; invariants checked at add time."""

from __future__ import annotations

from typing import Any

import pytest

from celeryflow import retry, task
from celeryflow.exceptions import AmbiguousDependency, DependencyFailure, Duplicate
from celeryflow.flow import LINK_DECIDER, LINK_DECIDER_DEPTH, LINK_INVARIANT, LINK_MANUAL, LINK_REASONS, Depth
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow


class T(task.Task):
    """A task whose requirements and provides are given at construction."""

    def __init__(self, name: str, provides: Any = None, requires: Any = None, **kwargs: Any) -> None:
        super().__init__(name=name, provides=provides, requires=requires, **kwargs)

    def execute(self, **kwargs: Any) -> Any:
        return None


def names(items: Any) -> list[str]:
    return [i.name for i in items]


def links(flow: Any) -> list[tuple[str, str]]:
    return [(u.name, v.name) for u, v, _meta in flow.iter_links()]


# ----------------------------------------------------------------- linear


def test_linear_order_links_and_len() -> None:
    a, b, c = T("a"), T("b"), T("c")
    f = linear_flow.Flow("lin")
    assert f.add(a, b) is f
    f.add(c)
    assert len(f) == 3
    assert names(f) == ["a", "b", "c"]
    assert names(i for i, _m in f.iter_nodes()) == ["a", "b", "c"]
    assert links(f) == [("a", "b"), ("b", "c")]
    assert all(meta == {LINK_INVARIANT: True} for _u, _v, meta in f.iter_links())


def test_linear_requires_and_provides() -> None:
    f = linear_flow.Flow("lin").add(T("a", provides="x", requires="in"), T("b", requires=["x", "other"]))
    assert f.provides == {"x"}
    assert f.requires == {"in", "other"}


def test_linear_adding_same_item_twice_is_ignored() -> None:
    a = T("a")
    f = linear_flow.Flow("lin").add(a, a)
    f.add(a)
    assert len(f) == 1


def test_linear_with_retry() -> None:
    r = retry.Times(2, provides="attempt")
    f = linear_flow.Flow("lin", retry=r).add(T("a", requires="attempt"))
    assert r.name == "lin_retry"
    assert f.retry is r
    assert f.requires == frozenset()
    assert f.provides == {"attempt"}
    named = retry.Times(2, name="mine")
    linear_flow.Flow("x", retry=named)
    assert named.name == "mine"


def test_retry_must_be_a_retry_and_cannot_be_an_item() -> None:
    with pytest.raises(TypeError):
        linear_flow.Flow("x", retry=T("a"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        linear_flow.Flow("x").add(retry.Times(2, name="r"))
    with pytest.raises(TypeError):
        linear_flow.Flow("x").add("not an atom")  # type: ignore[arg-type]


def test_nested_flows() -> None:
    inner = unordered_flow.Flow("inner").add(T("b", provides="y"), T("c", provides="z"))
    outer = linear_flow.Flow("outer").add(T("a", provides="x"), inner, T("d", requires=["y", "z", "w"]))
    assert names(outer) == ["a", "inner", "d"]
    assert outer.provides == {"x", "y", "z"}
    assert outer.requires == {"w"}
    assert names(outer.iter_atoms()) == ["a", "b", "c", "d"]
    assert [f.name for f in outer.iter_flows()] == ["outer", "inner"]
    assert "outer" in str(outer)


# ----------------------------------------------------------------- duplicates


def test_duplicate_names_detected_at_add() -> None:
    with pytest.raises(Duplicate):
        linear_flow.Flow("f").add(T("a"), T("a"))
    f = linear_flow.Flow("f").add(T("a"))
    with pytest.raises(Duplicate):
        f.add(T("a"))
    assert len(f) == 1


def test_duplicate_names_across_nesting() -> None:
    f = linear_flow.Flow("f").add(T("a"))
    with pytest.raises(Duplicate):
        f.add(unordered_flow.Flow("sub").add(T("a")))
    with pytest.raises(Duplicate):
        graph_flow.Flow("g").add(linear_flow.Flow("s1").add(T("x")), linear_flow.Flow("s2").add(T("x")))


def test_duplicate_with_retry_name() -> None:
    f = linear_flow.Flow("f", retry=retry.Times(2, name="r"))
    with pytest.raises(Duplicate):
        f.add(T("r"))


def test_flow_cannot_contain_itself() -> None:
    f = linear_flow.Flow("f")
    with pytest.raises(Duplicate):
        f.add(f)
    outer = linear_flow.Flow("outer")
    inner = linear_flow.Flow("inner").add(outer)
    with pytest.raises(Duplicate):
        outer.add(inner)


# ----------------------------------------------------------------- unordered


def test_unordered_has_no_links() -> None:
    f = unordered_flow.Flow("u").add(T("a", provides="x"), T("b", provides="y"))
    assert links(f) == []
    assert f.provides == {"x", "y"}


def test_unordered_siblings_cannot_feed_each_other() -> None:
    f = unordered_flow.Flow("u").add(T("a", provides="x"))
    with pytest.raises(DependencyFailure, match="sibling"):
        f.add(T("b", requires="x"))
    assert len(f) == 1
    g = unordered_flow.Flow("u2").add(T("b", requires="x"))
    with pytest.raises(DependencyFailure):
        g.add(T("a", provides="x"))
    with pytest.raises(DependencyFailure):
        unordered_flow.Flow("u3").add(T("a", provides="x"), T("b", requires="x"))


def test_unordered_nested_subflow_feeding_sibling() -> None:
    sub = linear_flow.Flow("sub").add(T("a", provides="x"))
    with pytest.raises(DependencyFailure):
        unordered_flow.Flow("u").add(sub, T("b", requires="x"))
    # a subflow that satisfies its own requirement is fine
    ok = linear_flow.Flow("ok").add(T("p", provides="x"), T("c", requires="x"))
    unordered_flow.Flow("u").add(ok, T("d", provides="y"))


def test_unordered_retry_provides_are_not_siblings() -> None:
    f = unordered_flow.Flow("u", retry=retry.ForEach([1, 2], provides="v")).add(T("a", requires="v"))
    assert f.requires == frozenset()


def test_unordered_validate_catches_later_changes() -> None:
    sub = linear_flow.Flow("sub")
    f = unordered_flow.Flow("u").add(sub, T("b", requires="x"))
    f.validate()
    sub.add(T("a", provides="x"))
    with pytest.raises(DependencyFailure):
        f.validate()


# ----------------------------------------------------------------- graph


def test_graph_auto_links_by_data() -> None:
    a, b, c = T("a", provides="x"), T("b", requires="x", provides="y"), T("c", requires=["x", "y"])
    g = graph_flow.Flow("g").add(c, b, a)
    assert sorted(links(g)) == [("a", "b"), ("a", "c"), ("b", "c")]
    meta = {(u.name, v.name): m for u, v, m in g.iter_links()}
    assert meta[("b", "c")][LINK_REASONS] == {"y"}
    assert LINK_MANUAL not in meta[("b", "c")]
    assert g.requires == frozenset()
    assert g.provides == {"x", "y"}


def test_graph_requires_unsatisfied_only() -> None:
    g = graph_flow.Flow("g").add(T("a", provides="x", requires="in"), T("b", requires=["x", "w"]))
    assert g.requires == {"in", "w"}


def test_graph_resolve_flags() -> None:
    g = graph_flow.Flow("g").add(T("a", provides="x"))
    g.add(T("b", requires="x"), resolve_requires=False)
    assert links(g) == []
    g2 = graph_flow.Flow("g2").add(T("b", requires="x"))
    g2.add(T("a", provides="x"), resolve_existing=False)
    assert links(g2) == []
    g2.add(T("c", provides="x"))
    assert links(g2) == [("c", "b")]


def test_graph_ambiguous_providers() -> None:
    g = graph_flow.Flow("g").add(T("p1", provides="x"), T("p2", provides="x"))
    with pytest.raises(AmbiguousDependency, match="p1"):
        g.add(T("c", requires="x"))
    assert len(g) == 2
    assert links(g) == []


def test_graph_ambiguity_does_not_depend_on_add_order() -> None:
    g = graph_flow.Flow("g").add(T("c", requires="x"), T("p1", provides="x"))
    with pytest.raises(AmbiguousDependency):
        g.add(T("p2", provides="x"))
    g2 = graph_flow.Flow("g").add(T("p1", provides="x"), T("c", requires="x"))
    with pytest.raises(AmbiguousDependency):
        g2.add(T("p2", provides="x"))
    assert names(g2) == ["p1", "c"] and links(g2) == [("p1", "c")]


def test_graph_two_providers_without_consumer_is_fine() -> None:
    g = graph_flow.Flow("g").add(T("p1", provides="x"), T("p2", provides="x"))
    assert g.provides == {"x"}


def test_graph_cycle_by_data_is_rejected_and_rolled_back() -> None:
    g = graph_flow.Flow("g").add(T("a", provides="x", requires="y"))
    with pytest.raises(DependencyFailure, match="cycle"):
        g.add(T("b", provides="y", requires="x"))
    assert names(g) == ["a"]
    assert links(g) == []
    g.add(T("c", provides="y"))
    assert links(g) == [("c", "a")]


def test_graph_link_and_cycle() -> None:
    a, b, c = T("a"), T("b"), T("c")
    g = graph_flow.Flow("g").add(a, b, c)
    assert g.link(a, b) is g
    g.link(b, c)
    with pytest.raises(DependencyFailure):
        g.link(c, a)
    with pytest.raises(DependencyFailure):
        g.link(a, a)
    assert links(g) == [("a", "b"), ("b", "c")]
    with pytest.raises(ValueError):
        g.link(a, T("z"))
    assert g.predecessors(b) == [a] and g.successors(b) == [c]


def test_graph_link_decider_metadata() -> None:
    a, b = T("a", provides="x"), T("b", requires="x")

    def decide(history: dict[str, Any]) -> bool:
        return True

    g = graph_flow.Flow("g").add(a, b)
    g.link(a, b, decider=decide, decider_depth="flow")
    (_u, _v, meta), = list(g.iter_links())
    assert meta[LINK_DECIDER] is decide
    assert meta[LINK_DECIDER_DEPTH] is Depth.FLOW
    assert meta[LINK_MANUAL] is True
    assert meta[LINK_REASONS] == {"x"}
    with pytest.raises(ValueError):
        g.link(a, b, decider=decide, decider_depth="sideways")
    with pytest.raises(ValueError):
        g.link(a, b, decider=42)  # type: ignore[arg-type]


def test_depth_translate() -> None:
    assert Depth.translate(None) is Depth.ALL
    assert Depth.translate("neighbors") is Depth.NEIGHBORS
    assert Depth.translate(Depth.ATOM) is Depth.ATOM
    assert graph_flow.Depth is Depth
    assert str(Depth.FLOW) == "FLOW"


def test_graph_with_subflows() -> None:
    sub = linear_flow.Flow("sub").add(T("s1", provides="x"), T("s2", requires="x", provides="y"))
    consumer = T("c", requires="y")
    g = graph_flow.Flow("g").add(consumer, sub)
    assert links(g) == [("sub", "c")]
    other = T("o")
    g.add(other)
    g.link(consumer, other)
    assert ("c", "o") in links(g)


def test_graph_retry_provides_not_linked() -> None:
    r = retry.ForEach([1, 2], provides="v")
    g = graph_flow.Flow("g", retry=r).add(T("a", provides="v"), T("b", requires="v"))
    assert links(g) == []
    assert g.requires == frozenset()


def test_graph_manual_ancestor_satisfies_requirement() -> None:
    p1, c = T("p1", provides="x"), T("c", requires="x")
    g = graph_flow.Flow("g").add(p1)
    g.add(c, resolve_requires=False)
    g.link(p1, c)
    g.add(T("p2", provides="x"))  # c already gets x from its ancestor p1: not linked
    assert sorted(links(g)) == [("p1", "c")]


def test_graph_duplicate_rolls_back() -> None:
    g = graph_flow.Flow("g").add(T("a", provides="x"))
    with pytest.raises(Duplicate):
        g.add(T("b", requires="x"), T("a"))
    assert names(g) == ["a"]
    assert links(g) == []
    g.add(T("b", requires="x"))
    assert links(g) == [("a", "b")]
