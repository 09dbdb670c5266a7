"""Linear flow: items run one after the other, in the order added."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from celeryflow import flow
from celeryflow.flow import Item

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations only (python_requires >= 3.10)


class Flow(flow.Flow):
    """Runs its items in sequence; each sees the outputs of those before it.

    Args:
        name: the flow's name.
        retry: optional retry controller for the whole sequence.
    """

    pattern = "linear"

    def add(self, *items: Item) -> Self:
        """Append items (an item already in the flow is ignored); returns the flow."""
        new, names = self._prepare_items(items)
        self._commit_items(new, names)
        return self

    def iter_links(self) -> Iterator[tuple[Item, Item, dict[str, Any]]]:
        for index in range(1, len(self._items)):
            yield self._items[index - 1], self._items[index], {flow.LINK_INVARIANT: True}

    @property
    def requires(self) -> frozenset[str]:
        requires: set[str] = set()
        prior: set[str] = set()
        if self._retry is not None:
            requires.update(self._retry.requires)
            prior.update(self._retry.provides)
        for item in self._items:
            requires.update(name for name in item.requires if name not in prior)
            prior.update(item.provides)
        return frozenset(requires)
