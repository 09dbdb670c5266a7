"""Flow -> :class:`Compilation`: the immutable execution graph of a flow. Pure: no I/O.

Edges come from the patterns (linear order, graph links, auto-linked data
dependencies) and from retry scoping: a retry controller runs before the atoms
of the flow it guards (it takes the flow's entry edges; the flow's entry atoms
depend on it). Between two items ``u -> v`` of a flow, every final atom of ``u``
precedes every entry atom of ``v``; an empty nested flow passes its
predecessors through.

Deciders: a link ``u -> v`` with a decider gives every entry atom of ``v`` one
:class:`CompiledDecider` per final atom of ``u`` (``pred``), all sharing the
link's ``link_id``. The decider of a link whose ``v`` is an empty flow is
dropped (there is nothing to skip).

Data: ``providers`` maps each symbol an atom needs (execute or revert) to the
upstream atom whose result gives it: among the atom's ancestors providing the
symbol, the latest in topological order wins. Computed per group of symbols
sharing the same providers, over only the region between providers and
consumers, so a linear flow of n atoms compiles in O(n log n).
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from celeryflow import registry, serialization
from celeryflow.atom import Atom
from celeryflow.exceptions import DependencyFailure, Duplicate, MissingDependencies
from celeryflow.flow import LINK_DECIDER, LINK_DECIDER_DEPTH, Depth, Flow, Item

__all__ = [
    "Compilation",
    "CompiledAtom",
    "CompiledDecider",
    "RetryScope",
    "atoms_by_name",
    "compile",
    "deciders",
]

_DEPTHS = frozenset(d.value for d in Depth)
# Shared empties: most atoms have no inject, deciders, optional arguments...
_EMPTY_MAP: Mapping[str, Any] = MappingProxyType({})
_EMPTY_SET: frozenset[str] = frozenset()


def _ro(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY_MAP


_gc_lock = threading.Lock()
_gc_state: dict[str, int] = {"depth": 0, "restore": 0}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic GC while building many small acyclic objects.

    Compiling 10,000 atoms allocates ~10^5 dicts and tuples, which triggers repeated
    collections of everything alive (a third of the time). Nothing built here forms
    cycles, so refcounting frees it all. Re-entrant and thread-safe: the GC is
    re-enabled when the last user leaves, and only if it was enabled before.
    """
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["restore"] = int(gc.isenabled())
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["restore"]:
                gc.enable()


def _names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names) if names else _EMPTY_SET


def _sorted(names: Iterable[str], rank: Mapping[str, int]) -> tuple[str, ...]:
    items = tuple(names)
    return items if len(items) < 2 else tuple(sorted(items, key=rank.__getitem__))


@dataclass(frozen=True, slots=True)
class CompiledDecider:
    """A decider on an edge into an atom.

    Attributes:
        pred: the edge's source atom (for a link from a flow: one of its final atoms).
        ref: registry reference of the callable, None when it has none (a lambda).
        depth: "ALL" | "FLOW" | "NEIGHBORS" | "ATOM".
        link_id: index into :attr:`Compilation.deciders` and :func:`deciders`.
    """

    pred: str
    ref: str | None
    depth: str
    link_id: int


@dataclass(frozen=True, slots=True)
class CompiledAtom:
    """One atom of a :class:`Compilation` (see the module docstring for the edge rules).

    ``retry`` is the nearest enclosing retry controller (for a controller: the one
    enclosing its flow). ``flow``/``flow_index`` name the innermost flow containing
    the atom (a controller belongs to the flow it guards); ``flow_index`` is unique
    per flow object (depth-first position), names need not be.
    """

    name: str
    kind: str
    index: int
    preds: tuple[str, ...]
    succs: tuple[str, ...]
    retry: str | None
    flow: str
    exec_args: Mapping[str, str]
    exec_optional: frozenset[str]
    revert_args: Mapping[str, str]
    revert_optional: frozenset[str]
    providers: Mapping[str, str]
    save_as: Mapping[str, int | str | None]
    inject: Mapping[str, Any]
    deciders: tuple[CompiledDecider, ...]
    flow_index: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; empty fields are left out (10,000-atom flows stay cheap)."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "index": self.index, "flow": self.flow}
        # Spelled out field by field: this runs once per atom of 10,000-atom flows.
        if self.preds:
            d["preds"] = list(self.preds)
        if self.succs:
            d["succs"] = list(self.succs)
        if self.retry is not None:
            d["retry"] = self.retry
        if self.flow_index:
            d["flow_index"] = self.flow_index
        if self.exec_args:
            d["exec_args"] = dict(self.exec_args)
        if self.exec_optional:
            d["exec_optional"] = sorted(self.exec_optional)
        if self.revert_args:
            d["revert_args"] = dict(self.revert_args)
        if self.revert_optional:
            d["revert_optional"] = sorted(self.revert_optional)
        if self.providers:
            d["providers"] = dict(self.providers)
        if self.save_as:
            d["save_as"] = dict(self.save_as)
        if self.inject:
            d["inject"] = dict(self.inject)
        if self.deciders:
            d["deciders"] = [[x.pred, x.ref, x.depth, x.link_id] for x in self.deciders]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompiledAtom:
        def mapping(key: str) -> Mapping[str, Any]:
            value = d.get(key)
            return MappingProxyType(dict(value)) if value else _EMPTY_MAP

        def names(key: str) -> frozenset[str]:
            value = d.get(key)
            return frozenset(value) if value else _EMPTY_SET

        return cls(
            name=d["name"], kind=d["kind"], index=d["index"], preds=tuple(d.get("preds", ())),
            succs=tuple(d.get("succs", ())), retry=d.get("retry"), flow=d["flow"],
            exec_args=mapping("exec_args"), exec_optional=names("exec_optional"),
            revert_args=mapping("revert_args"), revert_optional=names("revert_optional"),
            providers=mapping("providers"), save_as=mapping("save_as"), inject=mapping("inject"),
            deciders=tuple(CompiledDecider(p, r, dp, int(i)) for p, r, dp, i in d.get("deciders", ())),
            flow_index=d.get("flow_index", 0),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetryScope:
    """A retry controller and every atom (transitively) inside the flow it guards."""

    name: str
    parent: str | None
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Compilation:
    """The immutable execution graph of a flow, JSON round-trippable with :meth:`to_dict`.

    Attributes:
        flow_name: the root flow's name.
        atoms: ``{name: CompiledAtom}`` in topological order.
        order: atom names in that order.
        retries: ``{controller name: RetryScope}``.
        deciders: registry reference (or None) of each link decider, by ``link_id``.
    """

    flow_name: str
    atoms: Mapping[str, CompiledAtom]
    order: tuple[str, ...]
    retries: Mapping[str, RetryScope]
    deciders: tuple[str | None, ...] = ()
    _cache: dict[Any, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def sources(self) -> tuple[str, ...]:
        """Atoms without predecessors, in order."""
        return tuple(n for n in self.order if not self.atoms[n].preds)

    def sinks(self) -> tuple[str, ...]:
        """Atoms without successors, in order."""
        return tuple(n for n in self.order if not self.atoms[n].succs)

    def _walk(self, name: str, forward: bool) -> frozenset[str]:
        key = (name, forward)
        found = self._cache.get(key)
        if found is None:
            seen: set[str] = set()
            stack = [name]
            while stack:
                atom = self.atoms[stack.pop()]
                for nxt in atom.succs if forward else atom.preds:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            found = self._cache[key] = frozenset(seen)
        return found

    def ancestors(self, name: str) -> frozenset[str]:
        """Every atom that must finish before ``name`` (transitively)."""
        return self._walk(name, False)

    def descendants(self, name: str) -> frozenset[str]:
        """Every atom that runs after ``name`` (transitively)."""
        return self._walk(name, True)

    def ignore_set(self, atom_name: str, depth: str | Depth) -> frozenset[str]:
        """Atoms that end IGNORE when a decider into ``atom_name`` says no (TaskFlow's depths).

        ALL: the atom and all its descendants. FLOW: the atom and the successors
        reachable from it through tasks of its own flow (not into nested or outer
        flows, not through retry controllers). NEIGHBORS: the atom and its direct
        successor tasks in its own flow. ATOM: the atom only.
        """
        mode = Depth.translate(depth)
        target = self.atoms[atom_name]
        if mode is Depth.ATOM:
            return frozenset([atom_name])
        if mode is Depth.ALL:
            return self.descendants(atom_name) | {atom_name}

        def same_flow(name: str) -> bool:
            other = self.atoms[name]
            return other.kind == "task" and other.flow_index == target.flow_index

        if mode is Depth.NEIGHBORS:
            return frozenset([atom_name, *filter(same_flow, target.succs)])
        seen = {atom_name}
        stack = [atom_name]
        while stack:
            for nxt in self.atoms[stack.pop()].succs:
                if nxt not in seen and same_flow(nxt):
                    seen.add(nxt)
                    stack.append(nxt)
        return frozenset(seen)

    def missing(self, available: Iterable[str]) -> dict[str, list[str]]:
        """``{atom: sorted missing symbols}`` for required execute and revert arguments.

        A symbol is satisfied by the atom's ``inject`` (by symbol or parameter name),
        an upstream provider, or ``available`` (the store's keys).
        """
        have = set(available)
        result: dict[str, list[str]] = {}
        for name in self.order:
            atom = self.atoms[name]
            lacking: set[str] = set()
            pairs = ((atom.exec_args, atom.exec_optional), (atom.revert_args, atom.revert_optional))
            for args, optional in pairs:
                for param, symbol in args.items():
                    if param in optional or symbol in atom.inject or param in atom.inject:
                        continue
                    if symbol not in atom.providers and symbol not in have:
                        lacking.add(symbol)
            if lacking:
                result[name] = sorted(lacking)
        return result

    def check_missing(self, available: Iterable[str]) -> None:
        """Raise :class:`MissingDependencies` when :meth:`missing` finds anything."""
        found = self.missing(available)
        if found:
            raise MissingDependencies(self.flow_name, found)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (inject values may hold datetime/UUID/... for celeryflow's codec)."""
        with _gc_paused():
            return self._to_dict()

    def _to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "flow_name": self.flow_name,
            "order": list(self.order),
            "deciders": list(self.deciders),
            "atoms": [self.atoms[n].to_dict() for n in self.order],
            "retries": [[s.name, s.parent, list(s.members)] for s in self.retries.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Compilation:
        """Inverse of :meth:`to_dict`."""
        atoms = {a["name"]: CompiledAtom.from_dict(a) for a in data["atoms"]}
        for decider in (d for a in atoms.values() for d in a.deciders):
            if decider.depth not in _DEPTHS:
                raise ValueError(f"Unknown decider depth {decider.depth!r} in compilation")
        return cls(
            flow_name=data["flow_name"],
            atoms=MappingProxyType(atoms),
            order=tuple(data["order"]),
            retries=MappingProxyType({n: RetryScope(n, p, tuple(m)) for n, p, m in data["retries"]}),
            deciders=tuple(data.get("deciders", ())),
        )



def _decider_links(root: Flow) -> Iterator[tuple[Flow, Item, Item, dict[str, Any]]]:
    """Links carrying a decider, in link-id order (flows depth first, links in order)."""
    for current in root.iter_flows():
        if not current.supports_deciders:
            continue
        for u, v, meta in current.iter_links():
            if meta.get(LINK_DECIDER) is not None:
                yield current, u, v, meta


def deciders(flow: Flow) -> list[Callable[..., Any]]:
    """The live decider callables of ``flow``, indexed by :attr:`CompiledDecider.link_id`."""
    return [meta[LINK_DECIDER] for _f, _u, _v, meta in _decider_links(flow)]


def atoms_by_name(flow: Flow) -> dict[str, Atom]:
    """The live atom objects of ``flow`` (retry controllers included), by name.

    Raises:
        Duplicate: two atoms share a name.
    """
    found: dict[str, Atom] = {}
    for atom in flow.iter_atoms():
        name = _atom_name(atom)
        if name in found:
            raise Duplicate(_duplicate_message(name, flow.name))
        found[name] = atom
    return found


def _atom_name(atom: Atom) -> str:
    if atom.name is None:
        raise ValueError(f"An atom of type {type(atom).__qualname__} has no name")
    return atom.name


def _duplicate_message(name: str, flow_name: str) -> str:
    return (
        f"Atom name {name!r} is used twice in flow {flow_name!r}; atom names must be unique in the "
        "whole flow (pass name=... to tell them apart)"
    )


class _Builder:
    """One compilation: walks the flow tree and collects atoms and edges."""

    def __init__(self, root: Flow) -> None:
        self.root = root
        self.atoms: dict[str, Atom] = {}
        # name -> (kind, (flow name, flow index), enclosing retry)
        self.info: dict[str, tuple[str, tuple[str, int], str | None]] = {}
        # name -> predecessors (insertion-ordered, deduplicated); absent when none
        self.preds: dict[str, dict[str, None]] = {}
        self.in_deciders: dict[str, list[CompiledDecider]] = {}
        self.scopes: dict[str, tuple[str | None, list[str]]] = {}
        self.retry_stack: list[str] = []
        self.seen_flows: set[int] = set()
        self.flow_count = 0
        self.link_refs: list[str | None] = []
        self.link_ids: dict[tuple[int, int, int], int] = {}
        for link_id, (owner, u, v, meta) in enumerate(_decider_links(root)):
            self.link_ids[(id(owner), id(u), id(v))] = link_id
            self.link_refs.append(registry.ref_of(meta[LINK_DECIDER]))

    def register(self, atom: Atom, kind: str, flow_key: tuple[str, int], retry: str | None) -> str:
        name = _atom_name(atom)
        if name in self.atoms:
            raise Duplicate(_duplicate_message(name, self.root.name))
        self.atoms[name] = atom
        self.info[name] = (kind, flow_key, retry)
        for scope in self.retry_stack:
            self.scopes[scope][1].append(name)
        return name

    def edge(self, source: str, target: str) -> None:
        preds = self.preds.get(target)
        if preds is None:
            preds = self.preds[target] = {}
        preds[source] = None

    def visit(
        self, item: Item, parent: Flow, flow_key: tuple[str, int], retry: str | None
    ) -> tuple[list[str], list[str]]:
        """Compile ``item``; return its entry atoms and its final atoms (lists not to be mutated)."""
        if isinstance(item, Flow):
            return self.visit_flow(item, retry)
        if not isinstance(item, Atom):
            raise TypeError(f"Flow {parent.name!r} contains {item!r}, which is neither a task nor a flow")
        single = [self.register(item, "task", flow_key, retry)]
        return single, single

    def visit_flow(self, flow: Flow, retry: str | None) -> tuple[list[str], list[str]]:
        if id(flow) in self.seen_flows:
            raise Duplicate(f"Flow {flow.name!r} appears twice in flow {self.root.name!r}; build a new one")
        self.seen_flows.add(id(flow))
        flow_key = (flow.name, self.flow_count)
        self.flow_count += 1
        flow.validate()
        controller = flow.retry
        inner = retry
        if controller is not None:
            inner = self.register(controller, "retry", flow_key, retry)
            self.scopes[inner] = (retry, [])
            self.retry_stack.append(inner)
            head = inner
        items = [item for item, _meta in flow.iter_nodes()]
        parts = [self.visit(item, flow, flow_key, inner) for item in items]
        position = {id(item): i for i, item in enumerate(items)}
        links: list[tuple[int, int, dict[str, Any]]] = []
        for u, v, meta in flow.iter_links():
            if id(u) not in position or id(v) not in position:
                raise ValueError(f"Flow {flow.name!r} links an item that is not in it")
            links.append((position[id(u)], position[id(v)], meta))
        item_preds: list[list[int]] = [[] for _ in items]
        has_succ = [False] * len(items)
        for iu, iv, _meta in links:
            item_preds[iv].append(iu)
            has_succ[iu] = True
        eff_out: list[list[str]] = [[] for _ in items]
        entries: list[str] = []
        for i in _toposort(len(items), links, flow.name):
            sources = item_preds[i]
            if len(sources) == 1:
                incoming = eff_out[sources[0]]
            else:
                incoming = list(dict.fromkeys(name for p in sources for name in eff_out[p]))
            first, last = parts[i]
            for target in first:
                for source in incoming:
                    self.edge(source, target)
            if not incoming:
                entries.extend(first)
            eff_out[i] = last if last else incoming
        exits = list(dict.fromkeys(n for i in range(len(items)) if not has_succ[i] for n in eff_out[i]))
        for iu, iv, meta in links:
            decider = meta.get(LINK_DECIDER)
            if decider is None:
                continue
            link_id = self.link_ids[(id(flow), id(items[iu]), id(items[iv]))]
            depth = Depth.translate(meta.get(LINK_DECIDER_DEPTH)).value
            for target in parts[iv][0]:
                self.in_deciders.setdefault(target, []).extend(
                    CompiledDecider(source, self.link_refs[link_id], depth, link_id) for source in eff_out[iu]
                )
        if controller is not None:
            self.retry_stack.pop()
            for target in entries:
                self.edge(head, target)
            entries = [head]
            exits = exits or [head]
        return entries, exits

    def order(self) -> list[str]:
        """Deterministic topological order: ready atoms in declaration order."""
        rank = {name: i for i, name in enumerate(self.atoms)}
        succs: dict[str, list[str]] = {name: [] for name in self.atoms}
        waiting = {name: len(preds) for name, preds in self.preds.items()}
        for name, preds in self.preds.items():
            for pred in preds:
                succs[pred].append(name)
        ready = [(rank[n], n) for n in self.atoms if n not in waiting]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for succ in succs[name]:
                waiting[succ] -= 1
                if waiting[succ] == 0:
                    heapq.heappush(ready, (rank[succ], succ))
        if len(order) != len(self.atoms):
            raise DependencyFailure(f"Flow {self.root.name!r} has a dependency cycle")
        return order


def _toposort(count: int, links: list[tuple[int, int, dict[str, Any]]], flow_name: str) -> list[int]:
    succs: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for iu, iv, _meta in links:
        succs[iu].append(iv)
        waiting[iv] += 1
    ready = [i for i in range(count) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in succs[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != count:
        raise DependencyFailure(f"The links of flow {flow_name!r} make a cycle")
    return order


def _resolve_providers(
    order: list[str], atoms: Mapping[str, Atom], succs: Mapping[str, list[str]]
) -> dict[str, dict[str, str]]:
    """``{consumer: {symbol: provider}}``: the latest (topologically) ancestor providing each symbol."""
    index = {name: i for i, name in enumerate(order)}
    providers_of: dict[str, list[str]] = {}
    for name in order:
        for symbol in atoms[name].save_as:
            providers_of.setdefault(symbol, []).append(name)
    # group symbol needs by provider set: one propagation answers them all
    groups: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for name in order:
        atom = atoms[name]
        for symbol in dict.fromkeys([*atom.rebind.values(), *atom.revert_rebind.values()]):
            found = providers_of.get(symbol)
            if found:
                groups.setdefault(tuple(found), {}).setdefault(name, []).append(symbol)
    result: dict[str, dict[str, str]] = {}
    for providers, consumers in groups.items():
        if len(providers) == 1:
            # Fast path (pipelines): a lone provider feeding its direct successors.
            (only,) = providers
            direct = succs[only]
            if all(c in direct for c in consumers) if len(direct) < 8 else consumers.keys() <= set(direct):
                for consumer, symbols in consumers.items():
                    target = result.setdefault(consumer, {})
                    for symbol in symbols:
                        target[symbol] = only
                continue
        provider_set = set(providers)
        last = max(index[c] for c in consumers)
        label: dict[str, str] = {}
        heap = [(index[p], p) for p in providers]
        heapq.heapify(heap)
        queued = set(providers)
        while heap:
            _position, name = heapq.heappop(heap)
            out = name if name in provider_set else label.get(name)
            if out is None:
                continue
            for succ in succs[name]:
                if index[succ] > last:
                    continue
                current = label.get(succ)
                if current is None or index[out] > index[current]:
                    label[succ] = out
                if succ not in queued:
                    queued.add(succ)
                    heapq.heappush(heap, (index[succ], succ))
        for consumer, symbols in consumers.items():
            provider = label.get(consumer)
            if provider is not None:
                target = result.setdefault(consumer, {})
                for symbol in symbols:
                    target[symbol] = provider
    return result


def compile(flow: Flow) -> Compilation:
    """Compile ``flow`` into an immutable :class:`Compilation`.

    Raises:
        Duplicate: two atoms share a name, or a flow object appears twice.
        DependencyFailure: a cycle, or unordered siblings feeding each other.
        SerializationError: an atom's ``inject`` values are not JSON.
        TypeError / ValueError: a flow contains something that is not an atom or flow.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"compile() needs a flow, not {type(flow).__name__}")
    with _gc_paused():
        return _compile(flow)


def _compile(flow: Flow) -> Compilation:
    builder = _Builder(flow)
    builder.visit_flow(flow, None)
    order = builder.order()
    rank = {name: i for i, name in enumerate(order)}
    succs: dict[str, list[str]] = {name: [] for name in order}
    for name, preds in builder.preds.items():
        for pred in preds:
            succs[pred].append(name)
    providers = _resolve_providers(order, builder.atoms, succs)
    no_preds: dict[str, None] = {}
    compiled: dict[str, CompiledAtom] = {}
    for position, name in enumerate(order):
        atom = builder.atoms[name]
        inject: Any = {}
        if atom.inject:
            inject = serialization.roundtrip(dict(atom.inject), f"inject= of atom {name!r}")
        kind, (flow_name, flow_index), retry = builder.info[name]
        compiled[name] = CompiledAtom(
            name=name,
            kind=kind,
            index=position,
            preds=_sorted(builder.preds.get(name, no_preds), rank),
            succs=_sorted(succs[name], rank),
            retry=retry,
            flow=flow_name,
            exec_args=_ro(atom.rebind),
            exec_optional=_names(atom.optional_params),
            revert_args=_ro(atom.revert_rebind),
            revert_optional=_names(atom.revert_optional_params),
            providers=_ro(providers.get(name, {})),
            save_as=_ro(atom.save_as),
            inject=_ro(inject),
            deciders=tuple(builder.in_deciders.get(name, ())),
            flow_index=flow_index,
        )
    retries = {
        name: RetryScope(name=name, parent=parent, members=tuple(sorted(members, key=rank.__getitem__)))
        for name, (parent, members) in builder.scopes.items()
    }
    return Compilation(
        flow_name=flow.name,
        atoms=MappingProxyType(compiled),
        order=tuple(order),
        retries=MappingProxyType(retries),
        deciders=tuple(builder.link_refs),
    )
