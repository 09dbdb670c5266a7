"""Unordered flow: items are independent and may run in parallel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from celeryflow import flow
from celeryflow.exceptions import DependencyFailure
from celeryflow.flow import Item

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations only (python_requires >= 3.10)

    from celeryflow.retry import Retry


class Flow(flow.Flow):
    """Runs its items in any order, possibly at once. Siblings may not feed each other.

    Args:
        name: the flow's name.
        retry: optional retry controller (its provides are visible to every item).
    """

    pattern = "unordered"

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        # symbol -> name of the first sibling providing / requiring it (kept incrementally:
        # checking each add() against all siblings again would be quadratic).
        self._providers: dict[str, str] = {}
        self._requirers: dict[str, str] = {}

    def add(self, *items: Item) -> Self:
        """Add independent items; returns the flow.

        Raises:
            DependencyFailure: an item requires what a sibling provides (or the reverse).
        """
        new, names = self._prepare_items(items)
        providers, requirers = _scan(self._name, new, self._providers, self._requirers)
        self._commit_items(new, names)
        for symbol, owner in providers.items():
            self._providers.setdefault(symbol, owner)
        for symbol, owner in requirers.items():
            self._requirers.setdefault(symbol, owner)
        return self

    def validate(self) -> None:
        # A nested flow may have gained items since it was added here.
        _scan(self._name, self._items, {}, {})

    @property
    def requires(self) -> frozenset[str]:
        requires: set[str] = set()
        retry_provides: frozenset[str] = frozenset()
        if self._retry is not None:
            requires.update(self._retry.requires)
            retry_provides = frozenset(self._retry.provides)
        for item in self._items:
            requires.update(name for name in item.requires if name not in retry_provides)
        return frozenset(requires)


def _scan(
    flow_name: str, items: Iterable[Item], providers: Mapping[str, str], requirers: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Check ``items`` against known siblings and each other; return what they add.

    Raises:
        DependencyFailure: one sibling requires what another provides.
    """
    new_p: dict[str, str] = {}
    new_r: dict[str, str] = {}
    for item in items:
        name = str(item.name)
        requires, provides = item.requires, item.provides
        for symbol in requires:
            other = providers.get(symbol) or new_p.get(symbol)
            if other is not None and other != name:
                raise DependencyFailure(_message(name, "requires", symbol, other, "provides", flow_name))
        for symbol in provides:
            other = requirers.get(symbol) or new_r.get(symbol)
            if other is not None and other != name:
                raise DependencyFailure(_message(name, "provides", symbol, other, "requires", flow_name))
        for symbol in provides:
            new_p.setdefault(symbol, name)
        for symbol in requires:
            new_r.setdefault(symbol, name)
    return new_p, new_r


def _message(name: str, verb: str, symbol: str, other: str, other_verb: str, flow_name: str) -> str:
    return (
        f"{name!r} {verb} {symbol!r}, which its sibling {other!r} {other_verb}, in unordered flow "
        f"{flow_name!r}: siblings of an unordered flow run independently; use a linear or graph flow "
        "to order them"
    )
