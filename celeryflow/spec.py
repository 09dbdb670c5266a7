"""Flow specs: a JSON description of a flow that a worker rebuilds through the registry only.

A spec names each atom's class by reference (``"module:QualName"``) with the
arguments its constructor was called with, each flow's pattern, name, retry
controller and items, and each graph link (with its decider's reference). A
worker rebuilds the same flow with :func:`flow_from_spec`; nothing is imported
because a spec names it (see :mod:`celeryflow.registry`).

Constructor arguments must be JSON values (plus datetime, UUID, Decimal,
bytes); tuples, sets, non-str-keyed dicts and module-level functions/classes
(functor tasks' functions) are tagged so they come back as they were.

``strict=True`` (flows run by remote workers) raises :class:`NotRegistered`
naming the atom or link that cannot be described; ``strict=False`` (the
embedded engine, which keeps the live objects) records ``None`` instead and
:func:`flow_from_spec` refuses such a spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeryflow import registry, serialization
from celeryflow.atom import Atom
from celeryflow.exceptions import CorruptSpec, NotRegistered, SerializationError
from celeryflow.flow import LINK_DECIDER, LINK_DECIDER_DEPTH, LINK_MANUAL, LINK_REASONS, Depth, Flow, Item
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow

if TYPE_CHECKING:
    from celeryflow.compilation import Compilation

SPEC_VERSION = 1
#: the version of the whole stored spec (flow, factory, compilation) that engines write
STORED_VERSION = 1
_TAG = "__cf__"
_PATTERNS: dict[str, type[Flow]] = {
    "linear": linear_flow.Flow,
    "unordered": unordered_flow.Flow,
    "graph": graph_flow.Flow,
}
_WORKER_HINT = "define it at module level in a module workers import (CELERYFLOW_IMPORTS)"


class _Unencodable(Exception):
    """A value that a spec cannot describe (internal)."""


def _ref_for_worker(obj: Any) -> str | None:
    ref = registry.ref_of(obj)
    # A worker never has the submitting script's __main__.
    return None if ref is None or ref.startswith("__main__:") else ref


def _encode(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        try:
            items = sorted(value)
        except TypeError:
            items = list(value)
        return {_TAG: "set", "v": [_encode(v, f"{path}{{}}") for v in items]}
    if isinstance(value, dict):
        if _TAG not in value and all(isinstance(k, str) for k in value):
            return {k: _encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        pairs = [[_encode(k, path), _encode(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {_TAG: "dict", "v": pairs}
    if callable(value) and hasattr(value, "__qualname__"):
        ref = _ref_for_worker(value)
        if ref is None:
            raise _Unencodable(f"{path} is {value!r}, which has no importable module-level name")
        return {_TAG: "ref", "v": ref}
    try:
        serialization.dumps(value, path)
    except SerializationError as exc:
        raise _Unencodable(str(exc)) from None
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        tag = value.get(_TAG)
        if tag is None:
            return {k: _decode(v) for k, v in value.items()}
        if tag == "tuple":
            return tuple(_decode(v) for v in value["v"])
        if tag == "set":
            return {_decode(v) for v in value["v"]}
        if tag == "dict":
            return {_decode(k): _decode(v) for k, v in value["v"]}
        if tag == "ref":
            return registry.lookup(value["v"], "function")
        raise NotRegistered(f"Unknown tag {tag!r} in a flow spec")
    return value


def _atom_spec(atom: Atom, strict: bool) -> dict[str, Any]:
    name = atom.name
    node: dict[str, Any] = {"type": "atom", "name": name, "class": None, "args": None, "kwargs": None}
    cls_ref = _ref_for_worker(type(atom))
    problem = None
    if cls_ref is None:
        problem = f"its class {type(atom).__qualname__} has no importable module-level name; {_WORKER_HINT}"
    else:
        node["class"] = cls_ref
        try:
            node["args"] = _encode(list(getattr(atom, "_ctor_args", ())), "args")
            node["kwargs"] = _encode(dict(getattr(atom, "_ctor_kwargs", {})), "kwargs")
        except _Unencodable as exc:
            node["args"] = node["kwargs"] = None
            problem = (
                f"its constructor arguments cannot be stored as JSON: {exc}. Pass JSON values; functions "
                "must be module-level in a module workers import (CELERYFLOW_IMPORTS) or registered with "
                "@celeryflow.registry.register"
            )
    if problem is not None:
        message = f"Atom {name!r} cannot be rebuilt by a worker: {problem}"
        if strict:
            raise NotRegistered(message)
        node["error"] = message
    return node


def _flow_spec(flow: Flow, strict: bool) -> dict[str, Any]:
    pattern = flow.pattern
    if pattern not in _PATTERNS:
        message = f"Flow {flow.name!r} is a {type(flow).__qualname__}, not a linear, unordered or graph flow"
        if strict:
            raise NotRegistered(message)
    retry = flow.retry
    items = [item for item, _meta in flow.iter_nodes()]
    node: dict[str, Any] = {
        "type": "flow",
        "pattern": pattern,
        "name": flow.name,
        "retry": _atom_spec(retry, strict) if retry is not None else None,
        "items": [_item_spec(item, strict) for item in items],
    }
    if pattern == "graph":
        position = {id(item): i for i, item in enumerate(items)}
        links = []
        for u, v, meta in flow.iter_links():
            link: dict[str, Any] = {
                "u": position[id(u)],
                "v": position[id(v)],
                "reasons": sorted(meta.get(LINK_REASONS, ())),
                "manual": bool(meta.get(LINK_MANUAL, False)),
            }
            decider = meta.get(LINK_DECIDER)
            if decider is not None:
                link["decider"] = _ref_for_worker(decider)
                link["depth"] = Depth.translate(meta.get(LINK_DECIDER_DEPTH)).value
                if link["decider"] is None:
                    message = (
                        f"The decider {decider!r} on link {u.name!r} -> {v.name!r} in flow {flow.name!r} "
                        f"cannot be rebuilt by a worker; {_WORKER_HINT}, or decorate it with "
                        "@celeryflow.registry.register"
                    )
                    if strict:
                        raise NotRegistered(message)
                    link["error"] = message
            links.append(link)
        node["links"] = links
    return node


def _item_spec(item: Item, strict: bool) -> dict[str, Any]:
    if isinstance(item, Flow):
        return _flow_spec(item, strict)
    return _atom_spec(item, strict)


def flow_to_spec(flow: Flow, strict: bool = True) -> dict[str, Any]:
    """Describe ``flow`` as JSON-able data for :func:`flow_from_spec`.

    Args:
        flow: the flow to describe.
        strict: raise instead of recording ``None`` for what a worker could not rebuild.

    Raises:
        NotRegistered: (strict) an atom class, functor function or decider is not
            module-level, or an atom's constructor arguments are not JSON; the
            message names the atom or link.
    """
    spec = _flow_spec(flow, strict)
    spec["spec_version"] = SPEC_VERSION
    return spec


def _atom_from(node: Mapping[str, Any]) -> Atom:
    name = node.get("name")
    if node.get("error") or node.get("class") is None or node.get("args") is None:
        raise NotRegistered(node.get("error") or f"Atom {name!r} was not described well enough to rebuild it")
    try:
        cls = registry.lookup(node["class"], "atom")
        args = _decode(node["args"])
        kwargs = _decode(node["kwargs"] or {})
    except NotRegistered as exc:
        raise NotRegistered(f"Cannot rebuild atom {name!r}: {exc}") from exc
    atom: Atom = cls(*args, **kwargs)
    if name is not None and atom.name != name:
        atom.name = name  # renamed after construction (e.g. a retry named by its flow)
    return atom


def _flow_from(node: Mapping[str, Any]) -> Flow:
    if node.get("type") != "flow":
        raise NotRegistered(f"Not a flow spec: {dict(node)!r:.200}")
    pattern = node.get("pattern")
    cls = _PATTERNS.get(str(pattern))
    if cls is None:
        raise NotRegistered(f"Flow {node.get('name')!r} has the unknown pattern {pattern!r}")
    retry = _atom_from(node["retry"]) if node.get("retry") else None
    flow = cls(node["name"], retry=retry)  # type: ignore[arg-type]
    items: list[Item] = [_item_from(item) for item in node.get("items", ())]
    if isinstance(flow, graph_flow.Flow):
        flow.add(*items, resolve_requires=False, resolve_existing=False)
        for link in node.get("links", ()):
            _restore_link(flow, items, link)
    else:
        flow.add(*items)
    return flow


def _restore_link(flow: graph_flow.Flow, items: Sequence[Item], link: Mapping[str, Any]) -> None:
    u, v = items[link["u"]], items[link["v"]]
    meta: dict[str, Any] = {}
    if link.get("reasons"):
        meta[LINK_REASONS] = set(link["reasons"])
    if link.get("manual"):
        meta[LINK_MANUAL] = True
    if "decider" in link:
        if link.get("error") or link["decider"] is None:
            raise NotRegistered(link.get("error") or f"The decider on {u.name!r} -> {v.name!r} has no ref")
        try:
            decider: Callable[..., Any] = registry.lookup(link["decider"], "decider")
        except NotRegistered as exc:
            raise NotRegistered(f"Cannot rebuild the decider on {u.name!r} -> {v.name!r}: {exc}") from exc
        meta[LINK_DECIDER] = decider
        meta[LINK_DECIDER_DEPTH] = Depth.translate(link.get("depth"))
    flow._restore_link(u, v, meta)


def _item_from(node: Mapping[str, Any]) -> Item:
    if node.get("type") == "flow":
        return _flow_from(node)
    return _atom_from(node)


def flow_from_spec(spec: Mapping[str, Any]) -> Flow:
    """Rebuild a flow from :func:`flow_to_spec` output, through registry lookups only.

    Raises:
        NotRegistered: an atom class, function or decider is not registered here
            (the message names the atom or link), or the spec was recorded
            non-strictly with something a worker cannot rebuild.
    """
    version = spec.get("spec_version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise NotRegistered(f"Flow spec version {version!r} is not supported (expected {SPEC_VERSION})")
    return _flow_from(spec)


def decode_stored(text: str | bytes, flow_uuid: str) -> tuple[dict[str, Any], Compilation]:
    """Decode the spec a flow row stores (``{"version", "flow", "factory", "compilation"}``).

    Returns:
        The spec and its compilation.

    Raises:
        CorruptSpec: the text is not JSON, not a spec of a version this code knows, or
            its compilation is incomplete; the message says which.
    """
    from celeryflow.compilation import Compilation

    def corrupt(why: str) -> CorruptSpec:
        return CorruptSpec(f"The stored spec of flow {flow_uuid} cannot be decoded: {why}; the flow cannot run")

    try:
        spec = serialization.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and kombu's decode errors
        raise corrupt(f"it is not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, dict):
        raise corrupt(f"it is a JSON {type(spec).__name__}, not an object")
    version = spec.get("version", STORED_VERSION)
    if version != STORED_VERSION:
        raise corrupt(f"its version {version!r} is not supported (expected {STORED_VERSION})")
    data = spec.get("compilation")
    if not isinstance(data, dict):
        raise corrupt("it holds no compilation")
    try:
        comp = Compilation.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise corrupt(f"its compilation is malformed ({type(exc).__name__}: {exc})") from None
    return spec, comp


def factory_spec(
    factory: Callable[..., Any], args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Describe a flow factory call for :func:`flow_from_factory_spec`.

    Raises:
        NotRegistered: the factory (or a function among the arguments) is not module-level.
        SerializationError: an argument is not JSON.
    """
    ref = _ref_for_worker(factory)
    if ref is None:
        raise NotRegistered(
            f"The flow factory {factory!r} cannot be rebuilt by a worker; {_WORKER_HINT}, or decorate it "
            "with @celeryflow.registry.register"
        )
    try:
        return {
            "ref": ref,
            "args": _encode(list(args or ()), "factory args"),
            "kwargs": _encode(dict(kwargs or {}), "factory kwargs"),
            "spec_version": SPEC_VERSION,
        }
    except _Unencodable as exc:
        raise SerializationError(f"Arguments of flow factory {ref!r}: {exc}") from None


def flow_from_factory_spec(data: Mapping[str, Any]) -> Flow:
    """Call the registered factory a :func:`factory_spec` names, with its arguments.

    Raises:
        NotRegistered: the factory is not registered here.
        TypeError: the factory did not return a flow.
    """
    factory = registry.lookup(data["ref"], "factory")
    flow = factory(*_decode(data.get("args") or []), **_decode(data.get("kwargs") or {}))
    if not isinstance(flow, Flow):
        raise TypeError(f"Flow factory {data['ref']!r} returned {type(flow).__name__}, not a flow")
    return flow


__all__ = ["SPEC_VERSION", "decode_stored", "factory_spec", "flow_from_factory_spec", "flow_from_spec", "flow_to_spec"]
