"""What happens to a flow's claims when it is resumed, reclaimed or reverted on request."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from celeryflow import states
from celeryflow.exceptions import InvalidState


class Lost(enum.Enum):
    """What an execute or revert claim whose worker is gone (or fenced off) becomes."""

    POISON = "poison"  # its worker died max_deliveries times: fail it (WorkerLost), do not run it again
    FAIL = "fail"  # an execution in a compensating flow or scope: FAILURE, so it is reverted
    RERUN = "rerun"  # an execution: PENDING, run again from the start (at-least-once)
    REVERT_AGAIN = "revert_again"  # a revert: stays REVERTING, claimed again


@dataclass(frozen=True, slots=True)
class LostClaim:
    """The decision for one lost claim: the state it moves to and the event's reason."""

    outcome: Lost
    state: str
    reason: str


def lost_claim(state: str, compensating: bool, *, deaths: int = 0, max_deliveries: int | None = None,
               has_worker: bool = True) -> LostClaim:
    """The fate of a claim in ``state`` (RUNNING or REVERTING) whose worker is lost.

    ``compensating``: the flow, or the atom's retry scope, is being reverted: an execution
    that may have had effects is reverted, not re-run. ``deaths``/``max_deliveries``: the
    sweep counts worker deaths per atom (resume does not: ``max_deliveries`` None).
    """
    if max_deliveries is not None and deaths >= max_deliveries and has_worker:
        return LostClaim(Lost.POISON, state, "worker lost")
    if state == states.REVERTING:
        return LostClaim(Lost.REVERT_AGAIN, states.REVERTING, "worker lost")
    if state != states.RUNNING:
        raise ValueError(f"only claims are lost, not an atom in {state}")
    if compensating:
        return LostClaim(Lost.FAIL, states.FAILURE, "worker lost")
    return LostClaim(Lost.RERUN, states.PENDING, "re-run")


def requeue_after_loss(fate: Lost, intention: str, flow_state: str) -> str | None:
    """Whether a reclaimed claim is queued again at once: ``"execute"``, ``"revert"`` or None.

    A re-run execution is ready again at once (its predecessors were done when it started),
    if the flow still runs and the atom is still meant to execute; a revert is claimed again
    if the flow (or a retry scope of a running flow) is compensating. A FAILURE waits for
    the compensation plan; a poison atom is failed by the caller.
    """
    if fate is Lost.RERUN and flow_state == states.RUNNING and intention == states.EXECUTE:
        return "execute"
    if fate is Lost.REVERT_AGAIN and flow_state in (states.REVERTING, states.RUNNING):
        return "revert"
    return None


def in_flight_after_reclaim(republished: int, running: int, poison: int) -> int:
    """A reclaimed flow's outstanding count before its requeues: messages sent again under
    the new epoch, live claims (their results are still recorded), and poison atoms (still
    in hand until their failure is recorded)."""
    return republished + running + poison


class Start(enum.Enum):
    """What ``control.start`` (run, resume, re-drive) does with a flow in some state."""

    NOTHING = "nothing"  # SUCCESS / FAILURE: finished
    FIRST = "first"  # the very first start: queue the sources
    FROM_SCRATCH = "from_scratch"  # REVERTED: every atom back to PENDING, run again
    REDRIVE = "redrive"  # anything else: fence off old messages, re-drive what is stale or not started


def start_action(state: str, epoch: int, outstanding: int) -> Start:
    """The kind of start a flow in ``state`` (at ``epoch``, ``outstanding`` in flight) gets."""
    if state in (states.SUCCESS, states.FAILURE):
        return Start.NOTHING
    if state == states.PENDING and epoch == 0 and not outstanding:
        return Start.FIRST
    if state == states.REVERTED:
        return Start.FROM_SCRATCH
    return Start.REDRIVE


#: flow states a revert may be requested in (FlowHandle.revert, ``celeryflow flows revert``)
REVERTIBLE = (states.SUCCESS, states.FAILURE, states.SUSPENDED, states.RUNNING, states.SUSPENDING,
              states.REVERTING)


def revert_requested(state: str, flow_uuid: str) -> bool:
    """Whether a requested revert has work to do (False: already REVERTED, or never started).

    Raises:
        InvalidState: the flow is in a state a revert cannot start from.
    """
    if state in (states.REVERTED, states.PENDING):
        return False
    if state not in REVERTIBLE:
        raise InvalidState(f"Flow {flow_uuid} is {state}; it cannot be reverted now")
    return True


def on_revert_request(state: str) -> str | None:
    """The state an atom moves to when its flow's revert is requested (None: it stays).

    A failed compensation is retried on request: that revert runs again first, and what it
    depends on is only reverted after it succeeds. Claims in a worker's hands keep running;
    the compensation is planned once nothing runs.
    """
    return states.REVERTING if state == states.REVERT_FAILURE else None
