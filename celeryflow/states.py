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

_ALLOWED_ATOM: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        (PENDING, RUNNING),
        (PENDING, IGNORE),
        (PENDING, REVERTED),  # a retry controller that never ran is closed off
        (RUNNING, SUCCESS),
        (RUNNING, FAILURE),
        (RUNNING, PENDING),  # reclaimed from a dead worker: executed again from the start
        (PENDING, FAILURE),  # reset after a lost claim, not run again when its flow reverts: it may have run
        (SUCCESS, REVERTING),
        (FAILURE, REVERTING),
        (REVERTING, REVERTED),
        (REVERTING, REVERT_FAILURE),
        (REVERTING, REVERTING),  # reclaimed mid-revert: reverted again (new epoch)
        (REVERT_FAILURE, REVERTING),  # an operator asks to try the compensation again
        (SUCCESS, RETRYING),  # retry controller decided to retry its subflow
        (RETRYING, RUNNING),
        (RETRYING, PENDING),
        (RETRYING, REVERTING),
        # reset (re-run after REVERTED, engine.reset(), retry of a subflow)
        (REVERTED, PENDING),
        (IGNORE, PENDING),
        (SUCCESS, PENDING),
        (FAILURE, PENDING),
        (REVERT_FAILURE, PENDING),
        (SUCCESS, IGNORE),
        (FAILURE, IGNORE),
        (REVERTED, IGNORE),
    }
)

_ALLOWED_FLOW: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        (PENDING, RUNNING),
        (PENDING, SUSPENDED),
        (RUNNING, SUCCESS),
        (RUNNING, REVERTING),
        (RUNNING, FAILURE),
        (RUNNING, SUSPENDING),
        (RUNNING, RUNNING),  # epoch bump on reclaim
        (REVERTING, REVERTED),
        (REVERTING, FAILURE),
        (REVERTING, REVERTING),  # epoch bump on reclaim
        (REVERTING, RUNNING),  # a retry controller decided to retry a subflow
        (REVERTING, SUSPENDING),
        (SUSPENDING, SUSPENDED),
        (SUSPENDING, REVERTING),
        (SUSPENDING, RUNNING),  # resumed before the suspension completed
        (SUSPENDING, SUCCESS),
        (SUSPENDING, FAILURE),
        (SUSPENDING, REVERTED),
        (SUSPENDED, RESUMING),
        (SUSPENDED, RUNNING),
        (SUSPENDED, REVERTING),
        (RESUMING, RUNNING),
        (RESUMING, REVERTING),
        (RESUMING, SUSPENDED),
        # explicit actions on finished flows
        (SUCCESS, REVERTING),  # FlowHandle.revert(): compensate a finished flow
        (FAILURE, REVERTING),  # an operator retries a failed compensation
        (FAILURE, RUNNING),
        (REVERTED, RUNNING),  # a REVERTED flow re-runs from scratch on a new run()
        (REVERTED, PENDING),
        (SUCCESS, PENDING),  # engine.reset()
        (FAILURE, PENDING),
        (SUSPENDED, PENDING),
    }
)


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
