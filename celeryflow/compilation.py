"""The immutable result of compiling a flow: :class:`Compilation` and its parts.

Pure data, JSON-round-trippable (``to_dict``/``from_dict``): it is stored in the
logbook so any worker or conductor can schedule a flow without rebuilding it.
Built by :func:`celeryflow.compiler.compile`.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from celeryflow.exceptions import MissingDependencies
from celeryflow.flow import Depth

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
    #: Celery options of the execute / revert message (celeryflow.celery_options)
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY_MAP)
    revert_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY_MAP)

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
        if self.options:
            d["options"] = dict(self.options)
        if self.revert_options:
            d["revert_options"] = dict(self.revert_options)
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
            flow_index=d.get("flow_index", 0), options=mapping("options"),
            revert_options=mapping("revert_options"),
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
        max_in_flight: the engine's per-flow limit on atoms queued or running (None: none).
    """

    flow_name: str
    atoms: Mapping[str, CompiledAtom]
    order: tuple[str, ...]
    retries: Mapping[str, RetryScope]
    deciders: tuple[str | None, ...] = ()
    #: most atoms of this flow queued or running at once (``engine="serial"``: 1; ``max_workers=``)
    max_in_flight: int | None = None
    _cache: dict[Any, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def window(self, default: int) -> int:
        """This flow's dispatch window: ``default`` (``CELERYFLOW_DISPATCH_WINDOW``) or its own, if smaller."""
        return default if self.max_in_flight is None else max(1, min(default, self.max_in_flight))

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
            **({} if self.max_in_flight is None else {"max_in_flight": self.max_in_flight}),
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
            max_in_flight=data.get("max_in_flight"),
        )
