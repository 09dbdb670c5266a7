"""What a failure inside retry scopes leads to: TaskFlow's completer, as a pure rule.

The failing atom's enclosing controllers are consulted nearest first. RETRY: that
controller's subflow is reverted and run again. REVERT: the enclosing controller is
consulted in turn; without ``defer_reverts`` a parent that decides RETRY or REVERT_ALL
wins, else only this subflow (and what depends on it) is reverted; with
``defer_reverts=True`` the parent's resolution is used (no parent: the whole flow).
REVERT_ALL, no controller, or a controller that could not decide: the whole flow.

The controllers' ``on_failure`` is user code: it never runs here. :func:`resolve` says
which controller's verdict it needs next; the caller asks it (outside any lock), records
it, and calls again with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeryflow import states
from celeryflow.scheduler.liveness import IN_HAND
from celeryflow.scheduler.snapshot import AtomSnap

#: states of a revert the window may hold: executed, not yet claimed for reverting
HELD_REVERT = (states.SUCCESS, states.FAILURE, states.RETRYING)

RETRY = states.RETRY
REVERT = "REVERT"
REVERT_ALL = "REVERT_ALL"


@dataclass(frozen=True)
class ScopeVerdict:
    """A controller's answer: its decision, the countdown before a retry, or the problem it had."""

    decision: str
    countdown: float = 0.0
    problem: dict[str, Any] | None = None


@dataclass(frozen=True)
class Resolution:
    """RETRY / REVERT a controller's subflow, or REVERT_ALL (``failures``: a controller that raised)."""

    kind: str
    controller: str | None = None
    countdown: float = 0.0
    failures: Mapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Ask:
    """The verdict of ``controller`` is needed (on the failure of ``failed``, its atom or sub-controller)."""

    controller: str
    failed: str


def resolve(atom: str, chain: Sequence[str], verdicts: Mapping[str, ScopeVerdict], defer: bool) -> Resolution | Ask:
    """The resolution of ``atom``'s failure, or the next verdict to ask for.

    ``chain``: the controllers enclosing ``atom``, nearest first; ``verdicts``: those known.
    """
    return _process(atom, list(chain), 0, verdicts, defer)


def _process(atom: str, chain: list[str], level: int, verdicts: Mapping[str, ScopeVerdict],
             defer: bool) -> Resolution | Ask:
    if level >= len(chain):
        return Resolution(REVERT_ALL)
    controller = chain[level]
    verdict = verdicts.get(controller)
    if verdict is None:
        return Ask(controller, atom if level == 0 else chain[level - 1])
    if verdict.problem is not None:
        return Resolution(REVERT_ALL, failures={controller: verdict.problem})
    if verdict.decision == RETRY:
        return Resolution(RETRY, controller, verdict.countdown)
    if verdict.decision == REVERT:
        above = _process(atom, chain, level + 1, verdicts, defer)
        if isinstance(above, Ask) or defer:
            return above
        has_parent = level + 1 < len(chain)
        if has_parent and above.kind != REVERT:
            return above
        return Resolution(REVERT, controller, failures=above.failures)
    return Resolution(REVERT_ALL)


def round_busy(members: Mapping[str, AtomSnap], plan: Mapping[str, Any], lost: frozenset[str] | None) -> bool:
    """Whether a retry round must wait: a member is queued or in a worker's hands, or a planned
    revert is held by the dispatch window (waiting, not quiet).

    ``lost``: members whose RUNNING/REVERTING state no worker holds any more (None: all of
    them, as on resume after the epoch bump); they do not count as in flight.
    """
    for name, atom in members.items():
        if atom.queued or (atom.state in IN_HAND and lost is not None and name not in lost):
            return True
        if name in plan and atom.intention == states.REVERT and atom.rwaiting <= 0 and atom.state in HELD_REVERT:
            return True
    return False
