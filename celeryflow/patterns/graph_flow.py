"""Graph flow: items ordered by their data dependencies and explicit links.

``add()`` links each provider to its consumers automatically; ``link(u, v)``
adds an ordering edge, optionally with a *decider* that may skip ``v`` at run
time. The graph must stay acyclic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from celeryflow import flow
from celeryflow.exceptions import AmbiguousDependency, DependencyFailure
from celeryflow.flow import Depth, Item

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations only (python_requires >= 3.10)

__all__ = ["Depth", "Flow", "TargetedFlow"]


class Flow(flow.Flow):
    """A directed acyclic graph of items.

    Args:
        name: the flow's name.
        retry: optional retry controller; symbols it provides are not linked
            to providers inside the graph (the controller runs first).
    """

    pattern = "graph"
    supports_deciders = True

    def __init__(self, name: str, retry: Any = None) -> None:
        super().__init__(name, retry)
        self._by_id: dict[int, Item] = {}
        self._succ: dict[int, dict[int, dict[str, Any]]] = {}
        self._pred: dict[int, dict[int, None]] = {}
        self._provided: dict[str, list[Item]] = {}
        # Items whose requirement of a symbol no provider satisfied yet.
        self._required: dict[str, list[Item]] = {}
        # symbol -> {consumer id: provider linked automatically for it}.
        self._auto: dict[str, dict[int, Item]] = {}

    # ------------------------------------------------------------------ building
    def add(self, *items: Item, resolve_requires: bool = True, resolve_existing: bool = True) -> Self:
        """Add items, linking producers to consumers by the symbols they provide and require.

        Args:
            items: tasks and/or flows (an item already in the graph is ignored).
            resolve_requires: link each new item from the existing item providing
                what it requires.
            resolve_existing: link each new item to existing items still requiring
                what it provides.

        Raises:
            AmbiguousDependency: two items of the graph provide a symbol an item requires.
            DependencyFailure: the links would make a cycle.
            Duplicate: an atom name is already used in the flow.

        Nothing is changed when an exception is raised.
        """
        new, names = self._prepare_items(items)
        if not new:
            return self
        undo: list[Callable[[], None]] = []
        try:
            edges: list[tuple[Item, Item]] = []
            retry_provides = frozenset(self._retry.provides) if self._retry is not None else frozenset()
            for node in new:
                self._add_node(node, undo)
                for value in (v for v in node.requires if v not in retry_provides):
                    providers = [p for p in self._provided.get(value, ()) if p is not node]
                    if resolve_requires and len(providers) > 1:
                        raise AmbiguousDependency(_ambiguous(node, value, providers, self._name))
                    if resolve_requires and providers:
                        edges.append(self._auto_link(providers[0], node, value, undo))
                    else:
                        _push(self._required, value, node, undo)
                for value in node.provides:
                    _push(self._provided, value, node, undo)
                if resolve_existing:
                    for value in node.provides:
                        edges.extend(self._feed_existing(node, value, undo))
            for u, v in edges:
                self._check_no_cycle(u, v)
        except BaseException:
            for action in reversed(undo):
                action()
            raise
        self._commit_items(new, names)
        return self

    def link(
        self,
        u: Item,
        v: Item,
        decider: Callable[..., Any] | None = None,
        decider_depth: Depth | str | None = Depth.ALL,
    ) -> Self:
        """Make ``v`` run after ``u`` (both must already be in this graph).

        Args:
            u: the item to link from.
            v: the item to link to.
            decider: optional ``decider(history)`` with ``history = {u atom name: result}``;
                when it returns False, ``v`` (and per ``decider_depth`` what follows) is
                IGNOREd. For a flow ``u``, its final atoms feed the history.
            decider_depth: a :class:`Depth` or its name (default ALL).

        Raises:
            ValueError: ``u`` or ``v`` is not in this graph.
            DependencyFailure: the link would make a cycle.
        """
        for node in (u, v):
            if id(node) not in self._by_id:
                raise ValueError(f"Item {getattr(node, 'name', node)!r} is not in graph flow {self._name!r}")
        if decider is not None and not callable(decider):
            raise ValueError("A decider must be callable")
        depth = Depth.translate(decider_depth)
        if u is v:
            raise DependencyFailure(f"Cannot link {u.name!r} to itself in graph flow {self._name!r}")
        existed = id(v) in self._succ[id(u)]
        meta = self._succ[id(u)].get(id(v), {})
        before = dict(meta)
        self._set_edge(u, v, meta)
        meta[flow.LINK_MANUAL] = True
        if decider is not None:
            meta[flow.LINK_DECIDER] = decider
            meta[flow.LINK_DECIDER_DEPTH] = depth
        try:
            self._check_no_cycle(u, v)
        except DependencyFailure:
            if existed:
                meta.clear()
                meta.update(before)
            else:
                self._remove_edge(u, v)
            raise
        return self

    def _restore_link(self, u: Item, v: Item, meta: dict[str, Any]) -> None:
        """Re-create an edge with exactly this metadata (used by :mod:`celeryflow.spec`)."""
        self._set_edge(u, v, self._succ[id(u)].get(id(v), {}))
        self._succ[id(u)][id(v)].update(meta)
        self._check_no_cycle(u, v)

    def _add_node(self, node: Item, undo: list[Callable[[], None]]) -> None:
        key = id(node)
        self._by_id[key] = node
        self._succ[key] = {}
        self._pred[key] = {}

        def remove() -> None:
            for other in list(self._pred.get(key, ())):
                self._succ[other].pop(key, None)
            for other in list(self._succ.get(key, ())):
                self._pred[other].pop(key, None)
            self._by_id.pop(key, None)
            self._succ.pop(key, None)
            self._pred.pop(key, None)

        undo.append(remove)

    def _set_edge(self, u: Item, v: Item, meta: dict[str, Any]) -> None:
        self._succ[id(u)][id(v)] = meta
        self._pred[id(v)][id(u)] = None

    def _remove_edge(self, u: Item, v: Item) -> None:
        self._succ[id(u)].pop(id(v), None)
        self._pred[id(v)].pop(id(u), None)

    def _auto_link(self, u: Item, v: Item, value: str, undo: list[Callable[[], None]]) -> tuple[Item, Item]:
        existed = id(v) in self._succ[id(u)]
        meta = self._succ[id(u)].get(id(v), {})
        reasons: set[str] = meta.setdefault(flow.LINK_REASONS, set())
        had_reason = value in reasons
        self._set_edge(u, v, meta)
        reasons.add(value)
        self._auto.setdefault(value, {})[id(v)] = u

        def revert() -> None:
            self._auto.get(value, {}).pop(id(v), None)
            if not had_reason:
                reasons.discard(value)
            if not existed:
                self._remove_edge(u, v)

        undo.append(revert)
        return u, v

    def _feed_existing(
        self, node: Item, value: str, undo: list[Callable[[], None]]
    ) -> list[tuple[Item, Item]]:
        """Link ``node`` to the items that still require ``value``; detect double providers."""
        edges: list[tuple[Item, Item]] = []
        waiting = self._required.get(value, [])
        for requiree in list(waiting):
            if requiree is node:
                continue
            if self._provided_by_ancestor(requiree, value):
                _remove(waiting, requiree, undo)
                continue
            edges.append(self._auto_link(node, requiree, value, undo))
            _remove(waiting, requiree, undo)
        # celeryflow: the order of add() calls must not decide whether a graph is ambiguous.
        for consumer_id, provider in self._auto.get(value, {}).items():
            if provider is not node and consumer_id != id(node):
                consumer = self._by_id[consumer_id]
                raise AmbiguousDependency(_ambiguous(consumer, value, [provider, node], self._name))
        return edges

    def _provided_by_ancestor(self, node: Item, value: str) -> bool:
        return any(value in self._by_id[key].provides for key in self._ancestor_ids(id(node)))

    def _ancestor_ids(self, key: int) -> set[int]:
        seen: set[int] = set()
        stack = list(self._pred[key])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._pred[current])
        return seen

    def _check_no_cycle(self, u: Item, v: Item) -> None:
        # u -> v closes a cycle iff u is reachable from v.
        target, seen, stack = id(u), set(), [id(v)]
        while stack:
            current = stack.pop()
            if current == target:
                raise DependencyFailure(
                    f"Linking {u.name!r} -> {v.name!r} in graph flow {self._name!r} makes a cycle: no order "
                    "of the items satisfies every link"
                )
            if current not in seen:
                seen.add(current)
                stack.extend(self._succ[current])

    # ------------------------------------------------------------------ reading
    def iter_links(self) -> Iterator[tuple[Item, Item, dict[str, Any]]]:
        for item in self._items:
            for target, meta in self._succ[id(item)].items():
                copy = dict(meta)
                if flow.LINK_REASONS in copy:
                    copy[flow.LINK_REASONS] = set(copy[flow.LINK_REASONS])
                yield item, self._by_id[target], copy

    def iter_nodes(self) -> Iterator[tuple[Item, dict[str, Any]]]:
        for item in self._items:
            yield item, {}

    def predecessors(self, item: Item) -> list[Item]:
        """Direct predecessors of ``item`` in this graph."""
        return [self._by_id[k] for k in self._pred[id(item)]]

    def successors(self, item: Item) -> list[Item]:
        """Direct successors of ``item`` in this graph."""
        return [self._by_id[k] for k in self._succ[id(item)]]

    @property
    def requires(self) -> frozenset[str]:
        requires: set[str] = set()
        retry_provides: frozenset[str] = frozenset()
        if self._retry is not None:
            requires.update(self._retry.requires)
            retry_provides = frozenset(self._retry.provides)
        for item in self._items:
            wanted = [v for v in item.requires if v not in retry_provides]
            if not wanted:
                continue
            ancestors = self._ancestor_ids(id(item))
            provided = {s for key in ancestors for s in self._by_id[key].provides}
            requires.update(v for v in wanted if v not in provided)
        return frozenset(requires)


class TargetedFlow(Flow):
    """A graph flow that runs only up to a target item (TaskFlow's ``TargetedFlow``).

    After ``set_target(item)`` the flow is the target and everything it depends on
    (its ancestors in the graph); the other items are left out of the flow, as if
    not added, until ``reset_target()``. What is stored and run is that subgraph.
    """

    def __init__(self, name: str, retry: Any = None) -> None:
        super().__init__(name, retry)
        self._target: Item | None = None

    def set_target(self, target_node: Item) -> None:
        """Run only ``target_node`` and the items it needs.

        Raises:
            ValueError: ``target_node`` is not an item of this flow.
        """
        if id(target_node) not in self._by_id:
            raise ValueError(f"Node '{target_node}' not found")
        self._target = target_node

    def reset_target(self) -> None:
        """Run every item again."""
        self._target = None

    @property
    def target(self) -> Item | None:
        """The target item, or ``None``."""
        return self._target

    def _visible(self) -> list[Item]:
        if self._target is None:
            return list(self._items)
        keep = self._ancestor_ids(id(self._target)) | {id(self._target)}
        return [item for item in self._items if id(item) in keep]

    def __len__(self) -> int:
        return len(self._visible())

    def __iter__(self) -> Iterator[Item]:
        return iter(self._visible())

    def iter_nodes(self) -> Iterator[tuple[Item, dict[str, Any]]]:
        for item in self._visible():
            yield item, {}

    def iter_links(self) -> Iterator[tuple[Item, Item, dict[str, Any]]]:
        keep = {id(item) for item in self._visible()}
        for u, v, meta in super().iter_links():
            if id(u) in keep and id(v) in keep:
                yield u, v, meta

    def iter_atoms(self) -> Iterator[Any]:
        if self._retry is not None:
            yield self._retry
        for item in self._visible():
            yield from flow.iter_tree_atoms(item)

    def iter_flows(self) -> Iterator[flow.Flow]:
        yield self
        for item in self._visible():
            if isinstance(item, flow.Flow):
                yield from item.iter_flows()

    @property
    def provides(self) -> frozenset[str]:
        provides: set[str] = set(self._retry.provides) if self._retry is not None else set()
        for item in self._visible():
            provides.update(item.provides)
        return frozenset(provides)

    @property
    def requires(self) -> frozenset[str]:
        keep = {id(item) for item in self._visible()}
        retry_provides = frozenset(self._retry.provides) if self._retry is not None else frozenset()
        requires: set[str] = set(self._retry.requires) if self._retry is not None else set()
        for item in self._visible():
            ancestors = self._ancestor_ids(id(item)) & keep
            provided = {sym for key in ancestors for sym in self._by_id[key].provides}
            requires.update(v for v in item.requires if v not in retry_provides and v not in provided)
        return frozenset(requires)


def _push(index: dict[str, list[Item]], key: str, node: Item, undo: list[Callable[[], None]]) -> None:
    bucket = index.setdefault(key, [])
    bucket.append(node)

    def revert() -> None:
        bucket.remove(node)
        if not bucket and index.get(key) is bucket:
            del index[key]

    undo.append(revert)


def _remove(bucket: list[Item], node: Item, undo: list[Callable[[], None]]) -> None:
    position = bucket.index(node)
    bucket.pop(position)
    undo.append(lambda: bucket.insert(position, node))


def _ambiguous(node: Item, value: str, providers: list[Item], flow_name: str) -> str:
    names = sorted(str(p.name) for p in providers)
    return (
        f"{node.name!r} requires {value!r}, which several items of graph flow {flow_name!r} provide: "
        f"{names}. Rename one of the provides= or rebind= the requirement"
    )
