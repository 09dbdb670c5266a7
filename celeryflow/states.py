"""States of atoms and flows, and the transitions allowed between them.

The allowed pairs are data, checked in one place (:func:`check_atom_transition`,
:func:`check_flow_transition`). Every logbook write of a state goes through
these checks before its compare-and-set, so no state can move outside its
state machine.

The names are plain strings (TaskFlow's ``states`` module exposes strings too),
so ``states.SUCCESS == "SUCCESS"`` and values round-trip through the logbook.
"""

from __future__ import annotations

from typing import Final

from celeryflow.exceptions import InvalidState

# Atom and flow states.
PENDING: Final = "PENDING"
RUNNING: Final = "RUNNING"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
REVERTING: Final = "REVERTING"
REVERTED: Final = "REVERTED"
REVERT_FAILURE: Final = "REVERT_FAILURE"
RETRYING: Final = "RETRYING"
IGNORE: Final = "IGNORE"
# Flow-only states.
SUSPENDING: Final = "SUSPENDING"
SUSPENDED: Final = "SUSPENDED"
RESUMING: Final = "RESUMING"

# Engine states ``Engine.run_iter()`` yields (TaskFlow's action-engine states; see
# celeryflow/engines/iteration.py for what each means here)
SCHEDULING: Final = "SCHEDULING"
WAITING: Final = "WAITING"
ANALYZING: Final = "ANALYZING"

# Intentions: what the engine means to do with an atom next.
EXECUTE: Final = "EXECUTE"
REVERT: Final = "REVERT"
RETRY: Final = "RETRY"
# IGNORE doubles as an intention, as in TaskFlow.

# Job states (jobboards).
UNCLAIMED: Final = "UNCLAIMED"
CLAIMED: Final = "CLAIMED"
COMPLETE: Final = "COMPLETE"

ATOM_STATES: Final = frozenset(
    {PENDING, RUNNING, SUCCESS, FAILURE, REVERTING, REVERTED, REVERT_FAILURE, RETRYING, IGNORE}
)
# REVERTING is a celeryflow extension for flows: the flow is compensating.
FLOW_STATES: Final = frozenset(
    {PENDING, RUNNING, SUCCESS, FAILURE, REVERTED, SUSPENDING, SUSPENDED, RESUMING, REVERTING}
)
INTENTIONS: Final = frozenset({EXECUTE, REVERT, RETRY, IGNORE})

#: Flow states in which nothing more will happen without an explicit action.
FLOW_TERMINAL: Final = frozenset({SUCCESS, FAILURE, REVERTED, SUSPENDED})
#: Atom states that count as "done" for the purpose of running successors.
ATOM_DONE: Final = frozenset({SUCCESS, IGNORE})

#: every allowed atom transition, with why it exists (docs/architecture.md's table is made from it)
ATOM_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (PENDING, RUNNING): "claimed by a worker (execute)",
    (PENDING, IGNORE): "a decider said no, or its flow will not run it",
    (PENDING, REVERTED): "a retry controller that never ran is closed off",
    (PENDING, FAILURE): "reset after a lost claim and not run again when its flow reverts: it may have run",
    (RUNNING, SUCCESS): "its execute returned (recorded by the current claim)",
    (RUNNING, FAILURE): "its execute raised, or its inputs could not be resolved, or its worker kept dying",
    (RUNNING, PENDING): "reclaimed from a dead worker (stale heartbeat): executed again from the start",
    (SUCCESS, REVERTING): "claimed for compensation",
    (FAILURE, REVERTING): "claimed for compensation (the failed atom is reverted too)",
    (REVERTING, REVERTED): "its revert returned",
    (REVERTING, REVERT_FAILURE): "its revert raised",
    (REVERTING, REVERTING): "reclaimed mid-revert: reverted again under a new epoch",
    (REVERT_FAILURE, REVERTING): "an operator asks to try the compensation again",
    (SUCCESS, RETRYING): "its retry controller decided to retry its subflow",
    (RETRYING, RUNNING): "the retry controller runs again",
    (RETRYING, PENDING): "reset for the next attempt",
    (RETRYING, REVERTING): "the retry controller is compensated",
    (REVERTED, PENDING): "reset: a REVERTED flow re-runs, a subflow is retried",
    (IGNORE, PENDING): "reset (engine.reset(), a re-run)",
    (SUCCESS, PENDING): "reset (engine.reset(), a retried subflow)",
    (FAILURE, PENDING): "reset (engine.reset(), a retried subflow)",
    (REVERT_FAILURE, PENDING): "reset (engine.reset())",
    (SUCCESS, IGNORE): "a retried subflow's decider now says no",
    (FAILURE, IGNORE): "a retried subflow's decider now says no",
    (REVERTED, IGNORE): "a retried subflow's decider now says no",
}

#: every allowed flow transition, with why it exists
FLOW_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (PENDING, RUNNING): "started (run(), submit(), a conductor)",
    (PENDING, SUSPENDED): "suspended before it started",
    (RUNNING, SUCCESS): "its last atom finished",
    (RUNNING, REVERTING): "an atom failed: compensation starts once nothing runs",
    (RUNNING, FAILURE): "a flow that cannot run (a corrupt spec) fails with a reason",
    (RUNNING, SUSPENDING): "suspend(): running atoms finish, nothing new starts",
    (RUNNING, RUNNING): "epoch bump on reclaim or resume",
    (REVERTING, REVERTED): "every executed atom was compensated",
    (REVERTING, FAILURE): "a revert failed",
    (REVERTING, REVERTING): "epoch bump on reclaim",
    (REVERTING, RUNNING): "a retry controller decided to retry a subflow",
    (REVERTING, SUSPENDING): "suspend() during compensation",
    (SUSPENDING, SUSPENDED): "nothing runs any more",
    (SUSPENDING, REVERTING): "an atom failed while suspending",
    (SUSPENDING, RUNNING): "resumed before the suspension completed",
    (SUSPENDING, SUCCESS): "the last running atom finished the flow",
    (SUSPENDING, FAILURE): "a revert failed while suspending",
    (SUSPENDING, REVERTED): "the last running revert finished the compensation",
    (SUSPENDED, RESUMING): "resume() began",
    (SUSPENDED, RUNNING): "resumed",
    (SUSPENDED, REVERTING): "revert() of a suspended flow",
    (RESUMING, RUNNING): "resumed",
    (RESUMING, REVERTING): "resumed into its compensation",
    (RESUMING, SUSPENDED): "resume found nothing to do",
    (SUCCESS, REVERTING): "FlowHandle.revert(): compensate a finished flow",
    (FAILURE, REVERTING): "an operator retries a failed compensation",
    (FAILURE, RUNNING): "resume() of a failed flow",
    (REVERTED, RUNNING): "a REVERTED flow re-runs from scratch on a new run()",
    (REVERTED, PENDING): "reset",
    (SUCCESS, PENDING): "engine.reset()",
    (FAILURE, PENDING): "engine.reset()",
    (SUSPENDED, PENDING): "engine.reset()",
}

_ALLOWED_ATOM: Final[frozenset[tuple[str, str]]] = frozenset(ATOM_TRANSITIONS)
_ALLOWED_FLOW: Final[frozenset[tuple[str, str]]] = frozenset(FLOW_TRANSITIONS)


def atom_transition_allowed(old: str, new: str) -> bool:
    """Return True when an atom may move from ``old`` to ``new``."""
    return (old, new) in _ALLOWED_ATOM


def flow_transition_allowed(old: str, new: str) -> bool:
    """Return True when a flow may move from ``old`` to ``new``."""
    return (old, new) in _ALLOWED_FLOW


def check_atom_transition(old: str, new: str, who: str = "atom") -> None:
    """Raise :class:`InvalidState` unless the atom transition is allowed."""
    if not atom_transition_allowed(old, new):
        raise InvalidState(f"{who}: atom transition {old} -> {new} is not allowed")


def check_flow_transition(old: str, new: str, who: str = "flow") -> None:
    """Raise :class:`InvalidState` unless the flow transition is allowed."""
    if not flow_transition_allowed(old, new):
        raise InvalidState(f"{who}: flow transition {old} -> {new} is not allowed")


def atom_sources(new: str) -> frozenset[str]:
    """All states an atom may move to ``new`` from (used to build CAS guards)."""
    return frozenset(old for old, target in _ALLOWED_ATOM if target == new)


def flow_sources(new: str) -> frozenset[str]:
    """All states a flow may move to ``new`` from (used to build CAS guards)."""
    return frozenset(old for old, target in _ALLOWED_FLOW if target == new)

