"""A dry explanation of a flow: execution order, what runs in parallel, the compensation if an atom fails.

Nothing runs: it reads the compilation. ``celeryflow graph MODULE:FACTORY --explain
[--fails ATOM]`` prints the same text.

::

    print(explain(make_flow(), fails="charge_card"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celeryflow import compiler
from celeryflow.compiler import Compilation
from celeryflow.flow import Flow
from celeryflow.scheduler.compensation import revert_plan


def _levels(comp: Compilation) -> list[list[str]]:
    """Execution steps: an atom's step is one more than its latest predecessor's (same step: parallel)."""
    level: dict[str, int] = {}
    for name in comp.order:
        level[name] = 1 + max((level[p] for p in comp.atoms[name].preds), default=0)
    steps: list[list[str]] = [[] for _ in range(max(level.values(), default=0))]
    for name in comp.order:
        steps[level[name] - 1].append(name)
    return steps


def _revert_levels(comp: Compilation, to_revert: set[str]) -> list[list[str]]:
    """Compensation steps: an atom is reverted one step after the last atom that must be reverted before it."""
    plan = revert_plan(comp, to_revert)
    before: dict[str, list[str]] = {name: [] for name in to_revert}  # atom -> reverted before it
    for name, preds in plan.items():
        for pred in preds:
            before[pred].append(name)
    level: dict[str, int] = {}
    for name in reversed(comp.order):
        if name in to_revert:
            level[name] = 1 + max((level[m] for m in before[name]), default=0)
    steps: list[list[str]] = [[] for _ in range(max(level.values(), default=0))]
    for name in sorted(level, key=lambda n: -comp.atoms[n].index):
        steps[level[name] - 1].append(name)
    return steps


@dataclass
class Explanation:
    """What :func:`explain` found.

    Attributes:
        comp: the flow's compilation.
        steps: execution steps in order; the atoms of one step may run in parallel.
        fails: the atom assumed to fail (None: no failure asked about).
        executed: atoms certainly executed when ``fails`` fails: its ancestors, and itself.
        maybe: atoms that may have run by then (they run in parallel with it) and are then reverted too.
        compensation: revert steps, first to last (one step's atoms may be reverted in parallel).
        retry: the retry controller whose scope holds ``fails`` (it decides first), or None.
    """

    comp: Compilation
    steps: list[list[str]]
    fails: str | None = None
    executed: list[str] = field(default_factory=list)
    maybe: list[str] = field(default_factory=list)
    compensation: list[list[str]] = field(default_factory=list)
    retry: str | None = None

    def _name(self, name: str) -> str:
        atom = self.comp.atoms[name]
        marks = []
        if atom.kind == "retry":
            marks.append("retry controller")
        if atom.deciders:
            marks.append("decider on the link from " + ", ".join(sorted({d.pred for d in atom.deciders})))
        return f"{name} ({'; '.join(marks)})" if marks else name

    def text(self) -> str:
        lines = [f"flow {self.comp.flow_name!r}: {len(self.comp.atoms)} atoms, {len(self.steps)} steps",
                 "execution order (atoms of one step may run in parallel):"]
        for i, step in enumerate(self.steps, 1):
            joined = " ∥ ".join(self._name(n) for n in step)
            lines.append(f"  {i}. {joined}")
        if self.fails is None:
            return "\n".join(lines)
        lines.append(f"if {self.fails} fails:")
        if self.retry is not None:
            lines.append(f"  its retry controller {self.retry} decides first (retry its scope, or give up); "
                         "if it gives up:")
        lines.append("  executed by then: " + (", ".join(self.executed) or "nothing"))
        if self.maybe:
            lines.append("  may have run by then (in parallel, reverted if they did): " + ", ".join(self.maybe))
        lines.append("  compensation order (atoms of one step may be reverted in parallel):")
        for i, step in enumerate(self.compensation, 1):
            lines.append(f"    {i}. revert " + " ∥ ".join(step))
        return "\n".join(lines)

    __str__ = text


def explain(flow: Flow | Compilation | Any, fails: str | None = None) -> Explanation:
    """Explain ``flow`` (a flow, a factory returning one, or a compilation) without running it.

    Args:
        fails: an atom name: also tell what is compensated, and in which order, if it fails.

    Raises:
        ValueError: ``fails`` is not an atom of the flow.
    """
    if isinstance(flow, Compilation):
        comp = flow
    else:
        built = flow if isinstance(flow, Flow) else flow()
        comp = compiler.compile(built)
    found = Explanation(comp, _levels(comp))
    if fails is None:
        return found
    if fails not in comp.atoms:
        raise ValueError(f"flow {comp.flow_name!r} has no atom {fails!r}; its atoms are: {', '.join(comp.order)}")
    before = comp.ancestors(fails)
    after = comp.descendants(fails)
    tasks = [n for n in comp.order if comp.atoms[n].kind == "task"]
    found.fails = fails
    found.executed = [n for n in comp.order if n in before or n == fails]
    found.maybe = [n for n in tasks if n not in before and n not in after and n != fails]
    found.compensation = _revert_levels(comp, {*found.executed, *found.maybe})
    found.retry = comp.atoms[fails].retry
    return found
