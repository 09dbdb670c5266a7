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

import heapq
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from celeryflow import celery_options, registry, serialization
from celeryflow.atom import Atom
from celeryflow.compilation import (
    Compilation,
    CompiledAtom,
    CompiledDecider,
    RetryScope,
    _gc_paused,
    _names,
    _ro,
    _sorted,
)
from celeryflow.exceptions import DependencyFailure, Duplicate
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


def _options(defaults: Mapping[str, Any], own: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if not own:
        return defaults  # shared: most atoms set nothing of their own
    return _ro({**defaults, **celery_options.check(own, f"atom {name!r}")})


def compile(flow: Flow, celery_defaults: Mapping[str, Any] | None = None,
            revert_celery_defaults: Mapping[str, Any] | None = None) -> Compilation:
    """Compile ``flow`` into an immutable :class:`Compilation`.

    ``celery_defaults`` / ``revert_celery_defaults``: flow-level Celery options of the
    execute / revert messages (an atom's own ``celery_options`` win).

    Raises:
        Duplicate: two atoms share a name, or a flow object appears twice.
        DependencyFailure: a cycle, or unordered siblings feeding each other.
        SerializationError: an atom's ``inject`` values are not JSON.
        TypeError / ValueError: a flow contains something that is not an atom or flow.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"compile() needs a flow, not {type(flow).__name__}")
    with _gc_paused():
        return _compile(flow, celery_defaults, revert_celery_defaults)


def _compile(flow: Flow, celery_defaults: Mapping[str, Any] | None = None,
             revert_celery_defaults: Mapping[str, Any] | None = None) -> Compilation:
    builder = _Builder(flow)
    builder.visit_flow(flow, None)
    order = builder.order()
    rank = {name: i for i, name in enumerate(order)}
    succs: dict[str, list[str]] = {name: [] for name in order}
    for name, preds in builder.preds.items():
        for pred in preds:
            succs[pred].append(name)
    providers = _resolve_providers(order, builder.atoms, succs)
    exec_defaults = _ro(celery_options.check(celery_defaults or {}, "engine option celery_options"))
    revert_defaults = _ro(celery_options.check(revert_celery_defaults or {}, "engine option revert_celery_options"))
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
            options=_options(exec_defaults, atom.celery_options, name),
            revert_options=_options(revert_defaults, atom.revert_celery_options, name),
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
