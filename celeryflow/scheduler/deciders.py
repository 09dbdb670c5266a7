"""Deciders on graph links: what their verdicts leave out of the run (IGNORE).

A decider is user code: its verdict is asked by the worker that finished the link's
source (outside any lock) and recorded; this rule only reads verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.compilation import Compilation


@dataclass(frozen=True)
class Decided:
    """The verdicts on an atom's incoming links, taken together.

    ``ignored``: the atoms to move to IGNORE (empty: the atom runs); ``failure``: a decider
    raised (its Failure dict): the flow fails and is compensated.
    """

    ignored: frozenset[str] = field(default_factory=frozenset)
    failure: dict[str, Any] | None = None


def decide(comp: Compilation, name: str, verdicts: Sequence[Any]) -> Decided:
    """Apply the verdicts of ``name``'s deciders (in the compilation's order).

    A false verdict ignores what its ``decider_depth`` covers (ALL: everything after the
    atom, nested subflows included; FLOW/NEIGHBORS: its flow's successors; ATOM: just it).
    """
    ignored: set[str] = set()
    for decider, verdict in zip(comp.atoms[name].deciders, verdicts, strict=True):
        if isinstance(verdict, dict):
            return Decided(failure=verdict)
        if not verdict:
            ignored |= set(comp.ignore_set(name, decider.depth))
    return Decided(frozenset(ignored))
