"""The registry (never imports) and flow specs (describe, rebuild, identical compilation)."""

from __future__ import annotations

import datetime
import functools
import json
import math
import sys
from collections.abc import Iterator
from json import dumps as reexported_dumps
from typing import Any

import pytest

from celeryflow import compiler, registry, retry, serialization, spec, task
from celeryflow.exceptions import NotRegistered, SerializationError
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow

HERE = __name__


@pytest.fixture
def allowed() -> Iterator[None]:
    """Allow this module, as a worker allows the modules in CELERYFLOW_IMPORTS."""
    registry.allow_module(HERE)
    try:
        yield
    finally:
        registry.disallow_module(HERE)


class Hello(task.Task):
    default_provides = "greeting"

    def execute(self, who: str, punct: str = "!") -> str:
        return f"hello {who}{punct}"


class Shout(task.Task):
    def __init__(self, name: str, times: int = 1, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.times = times

    def execute(self, greeting: str) -> str:
        return greeting.upper() * self.times

    def revert(self, greeting: str, result: Any, flow_failures: Any) -> None:
        pass


def plain(x: int) -> int:
    return x + 1


def pair_sum(a: int, b: int) -> int:
    return a + b


def undo_plain(x: int, **kwargs: Any) -> None:
    pass


def always(history: dict[str, Any]) -> bool:
    return True


@registry.register
def registered_fn(x: int) -> int:
    return x


class Holder:
    @classmethod
    def make(cls, x: int) -> int:
        return x

    def method(self, x: int) -> int:
        return x


def build_flow(n: int, label: str = "f") -> linear_flow.Flow:
    return linear_flow.Flow(label).add(*[Hello(f"h{i}") for i in range(n)])


# ----------------------------------------------------------------- registry


def test_ref_of() -> None:
    assert registry.ref_of(plain) == f"{HERE}:plain"
    assert registry.ref_of(Hello) == f"{HERE}:Hello"
    assert registry.ref_of(Holder.make) == f"{HERE}:Holder.make"
    assert registry.ref_of(lambda: 1) is None

    def nested() -> None:
        pass

    class Local:
        pass

    assert registry.ref_of(nested) is None
    assert registry.ref_of(Local) is None
    assert registry.ref_of(Holder().method) is None
    assert registry.ref_of(len) is None
    assert registry.ref_of(math.sqrt) is None
    assert registry.ref_of(functools.partial(plain, 1)) is None
    assert registry.ref_of(42) is None


def test_register_forms() -> None:
    assert registry.lookup(f"{HERE}:registered_fn", "function") is registered_fn
    fn = registry.register(lambda x: x, ref=f"{HERE}:my_lambda")
    try:
        assert registry.ref_of(fn) == f"{HERE}:my_lambda"
        assert registry.lookup(f"{HERE}:my_lambda") is fn
    finally:
        assert registry.unregister(f"{HERE}:my_lambda")
    assert registry.ref_of(fn) is None

    @registry.register(ref="custom.place:thing")
    def thing() -> None:
        pass

    try:
        assert registry.lookup("custom.place:thing", "factory") is thing
        assert registry.is_registered("custom.place:thing")
    finally:
        registry.unregister("custom.place:thing")
    assert not registry.is_registered("custom.place:thing")
    with pytest.raises(ValueError):
        registry.register(lambda: None)


def test_atom_classes_register_themselves() -> None:
    assert registry.lookup(f"{HERE}:Hello", "atom") is Hello
    assert registry.lookup("celeryflow.retry:Times", "atom") is retry.Times
    with pytest.raises(NotRegistered):
        registry.lookup(f"{HERE}:registered_fn", "atom")


def test_lookup_needs_registration_or_allowed_module(allowed: None) -> None:
    assert registry.lookup(f"{HERE}:plain", "function") is plain
    assert registry.lookup(f"{HERE}:Holder.make", "function") == Holder.make
    assert HERE in registry.allowed_modules()
    # imported into this module from elsewhere: not defined here
    assert reexported_dumps is json.dumps
    with pytest.raises(NotRegistered):
        registry.lookup(f"{HERE}:reexported_dumps")
    for bad in (f"{HERE}:__builtins__", f"{HERE}:Holder.__init__", f"{HERE}:missing_name", f"{HERE}:HERE"):
        with pytest.raises(NotRegistered):
            registry.lookup(bad, "function")


def test_lookup_refuses_unallowed_module() -> None:
    with pytest.raises(NotRegistered) as info:
        registry.lookup(f"{HERE}:plain", "function")
    assert "CELERYFLOW_IMPORTS" in str(info.value)
    assert "celeryflow.registry.register" in str(info.value)


def test_lookup_never_imports() -> None:
    before = set(sys.modules)
    for ref in ("surely_not_a_module_xyz:thing", "surely.not.a.pkg:Thing", "wave:open"):
        name = ref.partition(":")[0]
        registry.allow_module(name)
        try:
            if name in before:
                continue
            with pytest.raises(NotRegistered):
                registry.lookup(ref)
        finally:
            registry.disallow_module(name)
    assert set(sys.modules) == before


def test_malformed_refs() -> None:
    for ref in ("nocolon", ":x", "mod:", 42):
        with pytest.raises(NotRegistered):
            registry.lookup(ref)  # type: ignore[arg-type]


# ----------------------------------------------------------------- specs


def _rich_flow() -> linear_flow.Flow:
    g = graph_flow.Flow("g", retry=retry.ForEach(["a", "b"], provides="choice", delay=0.5, backoff=2.0))
    hello = Hello("hello", inject={"when": datetime.datetime(2024, 1, 2, 3, 4, 5)})
    shout = Shout("shout", times=2, provides=("loud", "quiet"))
    functor = task.FunctorTask(plain, name="plain", rebind={"x": "n"}, revert=undo_plain, provides={"k"})
    g.add(hello, shout, functor)
    g.link(hello, functor, decider=always, decider_depth="NEIGHBORS")
    mapped = task.MapFunctorTask(plain, requires=["n", "m"], provides="mapped", name="map")
    reduced = task.ReduceFunctorTask(pair_sum, requires=("n", "m"), provides="total", name="reduce")
    u = unordered_flow.Flow("u", retry=retry.Times(3)).add(mapped, reduced)
    return linear_flow.Flow("root", retry=retry.ParameterizedForEach(name="pfe")).add(
        Hello("first", rebind=["person"], provides="g0"), g, u
    )


def test_spec_roundtrip_gives_identical_compilation(allowed: None) -> None:
    flow = _rich_flow()
    data = spec.flow_to_spec(flow, strict=True)
    text = serialization.dumps(data)
    rebuilt = spec.flow_from_spec(serialization.loads(text))
    assert compiler.compile(rebuilt) == compiler.compile(flow)
    assert compiler.compile(rebuilt).to_dict() == compiler.compile(flow).to_dict()
    assert data["spec_version"] == spec.SPEC_VERSION
    atoms = compiler.atoms_by_name(rebuilt)
    assert isinstance(atoms["shout"], Shout) and atoms["shout"].times == 2
    assert atoms["u_retry"].name == "u_retry"
    assert compiler.deciders(rebuilt)[0] is always
    assert atoms["g_retry"].countdown(2) == 1.0  # type: ignore[attr-defined]


def test_spec_keeps_tuples_sets_and_odd_dicts(allowed: None) -> None:
    r = retry.ForEach([(1, 2), {"k": {3, 4}}, {1: "int key"}, {"__cf__": "literal"}], name="fe")
    flow = linear_flow.Flow("f", retry=r).add(Hello("h"))
    data = json.loads(json.dumps(spec.flow_to_spec(flow)))
    back = spec.flow_from_spec(data).retry
    assert back is not None
    assert back.values == [(1, 2), {"k": {3, 4}}, {1: "int key"}, {"__cf__": "literal"}]  # type: ignore[attr-defined]


def test_spec_keeps_names_set_after_construction(allowed: None) -> None:
    h = Hello("before")
    h.name = "after"
    flow = linear_flow.Flow("f").add(h)
    rebuilt = spec.flow_from_spec(spec.flow_to_spec(flow))
    assert list(compiler.atoms_by_name(rebuilt)) == ["after"]


def test_strict_rejects_lambda_functor() -> None:
    flow = linear_flow.Flow("f").add(task.FunctorTask(lambda x: x, name="anon"))
    with pytest.raises(NotRegistered, match="anon"):
        spec.flow_to_spec(flow, strict=True)


def test_strict_rejects_local_class() -> None:
    class Local(task.Task):
        def execute(self) -> None:
            pass

    with pytest.raises(NotRegistered, match="'loc'"):
        spec.flow_to_spec(linear_flow.Flow("f").add(Local("loc")), strict=True)


def test_strict_rejects_non_json_ctor_args() -> None:
    flow = linear_flow.Flow("f").add(Shout("s", times=object()))  # type: ignore[arg-type]
    with pytest.raises(NotRegistered, match=r"'s'.*JSON"):
        spec.flow_to_spec(flow, strict=True)


def test_strict_rejects_lambda_decider() -> None:
    a, b = Hello("a"), Shout("b")
    g = graph_flow.Flow("g").add(a, b)
    g.link(a, b, decider=lambda history: True)
    with pytest.raises(NotRegistered, match="'a' -> 'b'"):
        spec.flow_to_spec(g, strict=True)


def test_strict_rejects_main_module_objects() -> None:
    def fn(x: int) -> int:
        return x

    fn.__module__ = "__main__"
    fn.__qualname__ = "cf_test_fn"
    main = sys.modules["__main__"]
    main.cf_test_fn = fn  # type: ignore[attr-defined]
    try:
        assert registry.ref_of(fn) == "__main__:cf_test_fn"
        with pytest.raises(NotRegistered, match="'m'"):
            spec.flow_to_spec(linear_flow.Flow("f").add(task.FunctorTask(fn, name="m")), strict=True)
    finally:
        del main.cf_test_fn


def test_non_strict_records_none_and_rebuild_refuses() -> None:
    a, b = Hello("a"), task.FunctorTask(lambda greeting: greeting, name="anon")
    g = graph_flow.Flow("g").add(a, b)
    g.link(a, b, decider=lambda history: True)
    data = spec.flow_to_spec(g, strict=False)
    assert data["items"][1]["args"] is None and "error" in data["items"][1]
    assert data["links"][0]["decider"] is None
    json.dumps(data)
    with pytest.raises(NotRegistered, match="anon"):
        spec.flow_from_spec(data)
    data["items"][1] = spec.flow_to_spec(linear_flow.Flow("x").add(Shout("other")))["items"][0]
    with pytest.raises(NotRegistered, match="decider"):
        spec.flow_from_spec(data)


def test_rebuild_refuses_unregistered_functions() -> None:
    flow = linear_flow.Flow("f").add(task.FunctorTask(plain, name="p"))
    data = spec.flow_to_spec(flow, strict=True)  # describable: module-level
    with pytest.raises(NotRegistered, match="'p'"):
        spec.flow_from_spec(data)  # but this module is not allowed here


def test_rebuild_refuses_unknown_class() -> None:
    data = spec.flow_to_spec(linear_flow.Flow("f").add(Hello("h")))
    data["items"][0]["class"] = "nowhere_module_q:Nope"
    before = set(sys.modules)
    with pytest.raises(NotRegistered, match="'h'"):
        spec.flow_from_spec(data)
    assert set(sys.modules) == before
    with pytest.raises(NotRegistered):
        spec.flow_from_spec({**data, "spec_version": 99})
    with pytest.raises(NotRegistered):
        spec.flow_from_spec({"type": "flow", "pattern": "spiral", "name": "x", "items": []})


def test_factory_spec_roundtrip(allowed: None) -> None:
    data = spec.factory_spec(build_flow, [3], {"label": "made"})
    data = json.loads(json.dumps(data))
    flow = spec.flow_from_factory_spec(data)
    assert compiler.compile(flow) == compiler.compile(build_flow(3, label="made"))


def test_factory_spec_errors(allowed: None) -> None:
    with pytest.raises(NotRegistered):
        spec.factory_spec(lambda: None, [], {})
    with pytest.raises(SerializationError):
        spec.factory_spec(build_flow, [object()], {})
    with pytest.raises(TypeError):
        spec.flow_from_factory_spec(spec.factory_spec(plain, [1], {}))
    registry.disallow_module(HERE)
    with pytest.raises(NotRegistered):
        spec.flow_from_factory_spec(spec.factory_spec(build_flow, [1], {}))
