"""The base of flow patterns (TaskFlow's ``flow`` module).

A flow is a named container of items (atoms, i.e. tasks, and nested flows),
optionally guarded by a retry controller. The patterns in
:mod:`celeryflow.patterns` decide how the items are ordered;
:func:`celeryflow.compiler.compile` turns the whole tree into an execution
graph.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Union

from celeryflow.atom import Atom
from celeryflow.exceptions import Duplicate

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations only (python_requires >= 3.10)

    from celeryflow.retry import Retry

# Link metadata keys (TaskFlow's names).
LINK_INVARIANT = "invariant"
LINK_MANUAL = "manual"
LINK_REASONS = "reasons"
LINK_DECIDER = "decider"
LINK_DECIDER_DEPTH = "decider_depth"
LINK_RETRY = "retry"


class Depth(str, enum.Enum):
    """How far a decider's "no" reaches (TaskFlow's ``deciders.Depth``).

    ALL: the target and everything after it, nested flows included (default).
    FLOW: the target and its successors in the same flow (not nested flows).
    NEIGHBORS: the target and its direct successor tasks in the same flow.
    ATOM: just the target.
    """

    ALL = "ALL"
    FLOW = "FLOW"
    NEIGHBORS = "NEIGHBORS"
    ATOM = "ATOM"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def translate(cls, value: Depth | str | None) -> Depth:  # type: ignore[override]
        """A :class:`Depth` from a member or its (case-insensitive) name; None means ALL."""
        if value is None:
            return cls.ALL
        if isinstance(value, Depth):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(
                f"Unknown decider depth {value!r}; use one of {[d.value for d in cls]}"
            ) from None


Item = Union[Atom, "Flow"]


def iter_tree_atoms(item: Item) -> Iterator[Atom]:
    """Every atom of ``item``'s tree (retry controllers first, then items, depth first)."""
    if isinstance(item, Flow):
        yield from item.iter_atoms()
    else:
        yield item


class Flow:
    """Base of flow patterns.

    Args:
        name: the flow's name.
        retry: optional retry controller guarding the flow's items; an unnamed
            controller is named ``"<name>_retry"``.
    """

    #: Pattern name used by specs: "linear", "unordered" or "graph".
    pattern: ClassVar[str] = "flow"
    #: Whether links may carry deciders (only graph flows have ``link()``).
    supports_deciders: ClassVar[bool] = False

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        from celeryflow.retry import Retry

        self._name = str(name)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a celeryflow.retry.Retry, not {type(retry).__name__}")
        self._retry = retry
        if retry is not None and retry.name is None:
            retry.name = f"{self._name}_retry"
        self._items: list[Item] = []
        self._item_ids: set[int] = set()
        # Atom names of the whole tree as known at add() time: detects duplicates early.
        # (A nested flow changed after being added is re-checked by the compiler.)
        self._tree_names: dict[str, Atom] = {}
        if retry is not None:
            self._tree_names[str(retry.name)] = retry

    @property
    def name(self) -> str:
        return self._name

    @property
    def retry(self) -> Retry | None:
        return self._retry

    def add(self, *items: Item) -> Self:
        """Add tasks and/or flows; returns the flow."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def iter_nodes(self) -> Iterator[tuple[Item, dict[str, Any]]]:
        """``(item, metadata)`` for each direct item, in the order added."""
        for item in self._items:
            yield item, {}

    def iter_links(self) -> Iterator[tuple[Item, Item, dict[str, Any]]]:
        """``(u, v, metadata)`` for each ordering link between direct items (``v`` runs after ``u``)."""
        return iter(())

    def iter_atoms(self) -> Iterator[Atom]:
        """Every atom of the tree: the retry controller, then items depth first."""
        if self._retry is not None:
            yield self._retry
        for item in self._items:
            yield from iter_tree_atoms(item)

    def iter_flows(self) -> Iterator[Flow]:
        """This flow and every nested flow, depth first."""
        yield self
        for item in self._items:
            if isinstance(item, Flow):
                yield from item.iter_flows()

    @property
    def provides(self) -> frozenset[str]:
        """Every symbol provided by the retry controller or any item."""
        provides: set[str] = set()
        if self._retry is not None:
            provides.update(self._retry.provides)
        for item in self._items:
            provides.update(item.provides)
        return frozenset(provides)

    @property
    def requires(self) -> frozenset[str]:
        """Symbols required by items (or the retry) and not provided inside the flow before them."""
        raise NotImplementedError

    def validate(self) -> None:
        """Check pattern invariants that later changes to nested flows may have broken."""

    def _prepare_items(self, items: Iterable[Any]) -> tuple[list[Item], dict[str, Atom]]:
        """Check items to add: types, self-containment, duplicate names. Mutates nothing.

        Returns:
            the items not already present (an item added twice is ignored, as in
            TaskFlow) and the atom names they bring.
        """
        from celeryflow.retry import Retry

        new: list[Item] = []
        new_ids: set[int] = set()
        names: dict[str, Atom] = {}
        for item in items:
            if isinstance(item, Retry):
                raise TypeError(
                    f"Retry controller {item.name!r} cannot be added as an item; "
                    "attach it with Flow(name, retry=...)"
                )
            if not isinstance(item, (Atom, Flow)):
                raise TypeError(f"Flow {self._name!r} can only contain tasks and flows, not {item!r}")
            if id(item) in self._item_ids or id(item) in new_ids:
                continue
            if isinstance(item, Flow) and any(f is self for f in item.iter_flows()):
                raise Duplicate(f"Flow {self._name!r} cannot contain itself (through {item.name!r})")
            for atom in iter_tree_atoms(item):
                if atom.name is None:
                    kind = type(atom).__qualname__
                    raise ValueError(f"An atom of type {kind} added to {self._name!r} has no name")
                if atom.name in self._tree_names or atom.name in names:
                    raise Duplicate(
                        f"Atom name {atom.name!r} is used twice in flow {self._name!r}; atom names must be "
                        "unique in the whole flow (pass name=... to tell them apart)"
                    )
                names[atom.name] = atom
            new.append(item)
            new_ids.add(id(item))
        return new, names

    def _commit_items(self, new: list[Item], names: dict[str, Atom]) -> None:
        self._items.extend(new)
        self._item_ids.update(id(i) for i in new)
        self._tree_names.update(names)

    def __str__(self) -> str:
        retry = f"; retry={self._retry.name}" if self._retry is not None else ""
        pattern = type(self).__module__.rpartition(".")[2]
        return f"{pattern}.{type(self).__name__}: {self._name}({len(self)}){retry}"

    def __repr__(self) -> str:
        return f"<{self}>"


__all__ = [
    "LINK_DECIDER",
    "LINK_DECIDER_DEPTH",
    "LINK_INVARIANT",
    "LINK_MANUAL",
    "LINK_REASONS",
    "LINK_RETRY",
    "Depth",
    "Flow",
    "Item",
    "iter_tree_atoms",
]
