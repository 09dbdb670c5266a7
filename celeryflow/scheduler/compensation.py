"""Compensation: what must be reverted, and in which order (reverse dependencies)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from celeryflow import states
from celeryflow.scheduler.snapshot import AtomSnap

if TYPE_CHECKING:
    from celeryflow.compilation import Compilation

#: States of atoms that executed and therefore must be compensated (RETRYING: a retry
#: controller whose subflow was being retried when the flow gave up).
EXECUTED = (states.SUCCESS, states.FAILURE, states.REVERTING, states.RETRYING)


def may_have_run(atom: AtomSnap) -> bool:
    """A PENDING atom that was claimed for execute and then put back: it may have run.

    A reclaim from a dead worker, or a resume, resets RUNNING -> PENDING but keeps
    ``started_at``; every full reset (re-run from scratch, ``engine.reset()``, a retry
    round) clears it, so the mark only covers the claim of the current attempt. Such an
    atom is compensated (as FAILURE, WorkerLost) when its flow or scope is reverted.
    """
    return atom.state == states.PENDING and atom.started_at is not None and not atom.queued


def revert_plan(comp: Compilation, to_revert: set[str]) -> dict[str, list[str]]:
    """For each atom to revert, the atoms that may only be reverted after it.

    Those are its nearest ancestors that also executed. Atoms in between that did not
    execute (IGNOREd by a decider) are walked through, so ordering holds across them.
    """
    plan: dict[str, list[str]] = {}
    for name in to_revert:
        found: list[str] = []
        seen: set[str] = set()
        stack = list(comp.atoms[name].preds)
        while stack:
            pred = stack.pop()
            if pred in seen:
                continue
            seen.add(pred)
            if pred in to_revert:
                found.append(pred)
            else:
                stack.extend(comp.atoms[pred].preds)
        plan[name] = sorted(found, key=lambda n: comp.atoms[n].index)
    return plan


def waiting_counts(plan: Mapping[str, Iterable[str]], members: Iterable[str]) -> dict[str, int]:
    """Per atom of ``members``: how many planned reverts must end before its own (``rwaiting``)."""
    chosen = set(members)
    counts = {name: 0 for name in chosen}
    for name, preds in plan.items():
        if name not in chosen:
            continue
        for pred in preds:
            if pred in counts:
                counts[pred] += 1
    return counts


def first_wave(counts: Mapping[str, int], states_by_name: Mapping[str, str], comp: Compilation) -> list[str]:
    """The reverts to queue first: nothing to revert before them; REVERTING ones (retried on
    request, never held by the window) first, then the latest atoms first."""
    return sorted((n for n, c in counts.items() if c == 0),
                  key=lambda n: (states_by_name[n] != states.REVERTING, -comp.atoms[n].index))


def under_failed_reverts(plan: Mapping[str, Iterable[str]], failed: Iterable[str]) -> set[str]:
    """Atoms a REVERT_FAILURE atom depends on, transitively through the plan: they stay unreverted.

    Compensating under a failed compensation is unsafe.
    """
    blocked: set[str] = set()
    stack = [n for n in failed if n in plan]
    while stack:
        for pred in plan.get(stack.pop(), []):
            if pred not in blocked:
                blocked.add(pred)
                stack.append(pred)
    return blocked


def revertible_now(atom: AtomSnap) -> bool:
    """An executed atom with nothing left to revert before it, not yet queued for its revert."""
    return atom.rwaiting <= 0 and atom.state in EXECUTED and not atom.queued
