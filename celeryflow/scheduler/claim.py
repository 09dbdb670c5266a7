"""May a message claim its atom? The rule ``steps.begin`` (both its paths) applies."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from celeryflow import states
from celeryflow.scheduler.compensation import EXECUTED
from celeryflow.scheduler.snapshot import FlowSnap

#: the modes of a worker message
EXECUTE = "execute"
REVERT = "revert"


class Verdict(enum.Enum):
    RUN = "run"  # claimed: run it
    SKIP = "skip"  # duplicate, stale epoch or unknown flow: do nothing
    REFUSE = "refuse"  # the flow no longer wants it (failing, suspending): un-queue it


@dataclass(frozen=True, slots=True)
class Claim:
    """The claim to attempt: move the atom from one of ``olds`` to ``new``, if it is queued for ``intention``.

    Only a ``RUN`` verdict carries a transition; the compare-and-set on the atom row
    (state, intention, queued) is still the last word: a lost one is a duplicate.
    """

    verdict: Verdict
    reason: str = ""
    olds: tuple[str, ...] = ()
    new: str = ""
    intention: str = ""


#: the claims a RUN verdict makes: execute (a retry controller runs again from RETRYING once
#: its scope is reverted), and revert (an atom that executed, or a revert being claimed again)
EXECUTE_CLAIM = Claim(Verdict.RUN, olds=(states.PENDING, states.RETRYING), new=states.RUNNING,
                      intention=states.EXECUTE)
REVERT_CLAIM = Claim(Verdict.RUN, olds=EXECUTED, new=states.REVERTING, intention=states.REVERT)


def decide(flow: FlowSnap | None, epoch: int, mode: str, scope_blocked: bool) -> Claim:
    """The claim a message of ``epoch`` for ``mode`` may make on an atom of ``flow``.

    ``scope_blocked``: the atom's retry scope is being reverted for another attempt (it runs
    in the next one). A message of another epoch is fenced off, whatever it asks.
    """
    if flow is None:
        return Claim(Verdict.SKIP, "the flow is not in the logbook")
    if flow.epoch != epoch:
        return Claim(Verdict.SKIP, f"stale message: epoch {epoch}, flow is at {flow.epoch}")
    if mode == EXECUTE:
        if flow.state != states.RUNNING:
            return Claim(Verdict.REFUSE, f"flow is {flow.state}")
        if scope_blocked:
            return Claim(Verdict.REFUSE, "its retry scope is being reverted for another attempt")
        return EXECUTE_CLAIM
    if flow.state not in (states.REVERTING, states.RUNNING):  # RUNNING: a retry scope's round
        return Claim(Verdict.REFUSE, f"flow is {flow.state}")
    return REVERT_CLAIM


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claim ends: the atom moves from ``old`` to ``new`` with ``progress``.

    TaskFlow's convention: a finished or reverted atom is at 1.0, a failed one at 0.0.
    """

    mode: str
    old: str
    new: str
    progress: float


def outcome(mode: str, failed: bool) -> Outcome:
    """The transition that records an execution's (``mode`` execute) or a revert's result."""
    if mode == EXECUTE:
        return Outcome(mode, states.RUNNING, states.FAILURE if failed else states.SUCCESS, 0.0 if failed else 1.0)
    return Outcome(mode, states.REVERTING, states.REVERT_FAILURE if failed else states.REVERTED,
                   0.0 if failed else 1.0)


#: the fast paths' only outcome
EXECUTE_SUCCESS = outcome(EXECUTE, failed=False)


def is_plain(state: str, flow_epoch: int, scope_retrying: bool, epoch: int, atom_kind: str) -> bool:
    """The fast paths' case: the flow runs at this epoch with no scope being retried; the atom is a task.

    Anything else goes to the general transaction before anything is written. Plain values,
    not a snapshot: every fast-path claim and finish asks, straight from the row it read.
    """
    return flow_epoch == epoch and state == states.RUNNING and not scope_retrying and atom_kind != "retry"
