"""What a quiet flow (nothing queued or running, nothing just dispatched) does next."""

from __future__ import annotations

import enum

from celeryflow import states


class Next(enum.Enum):
    """The decision for a flow after a transaction's writes."""

    NOTHING = "nothing"  # work is in flight (or the state has nothing to settle)
    SUCCEED = "succeed"  # RUNNING, every atom done -> SUCCESS
    QUIET = "quiet"  # RUNNING, nothing in flight, atoms unfinished: the sweep looks at it
    SUSPEND = "suspend"  # SUSPENDING -> SUSPENDED
    PLAN_REVERT = "plan_revert"  # REVERTING and nothing runs any more: plan the compensation now
    END_REVERTED = "reverted"  # the compensation is over -> REVERTED
    END_FAILED = "failed"  # the compensation is over and a revert failed -> FAILURE


#: the flow state each ending decision moves to
TARGET = {
    Next.SUCCEED: states.SUCCESS,
    Next.SUSPEND: states.SUSPENDED,
    Next.END_REVERTED: states.REVERTED,
    Next.END_FAILED: states.FAILURE,
}


def is_quiet(outstanding: int, dispatched: bool) -> bool:
    """Nothing of the flow is queued or running, and the transaction dispatched nothing."""
    return outstanding <= 0 and not dispatched


def needs_unfinished_count(state: str, outstanding: int, dispatched: bool) -> bool:
    """Whether :func:`decide` needs the count of unfinished atoms (a statement the caller runs)."""
    return state == states.RUNNING and is_quiet(outstanding, dispatched)


def decide(state: str, outstanding: int, dispatched: bool, *, unfinished: int | None = None,
           revert_planned: bool = False, revert_failed: bool = False) -> Next:
    """The next step of a flow in ``state`` (after the window was refilled).

    ``unfinished``: atoms not in a done state (needed when :func:`needs_unfinished_count`);
    ``revert_planned``: its compensation plan is written; ``revert_failed``: a revert of it
    ended REVERT_FAILURE.
    """
    if not is_quiet(outstanding, dispatched):
        return Next.NOTHING
    if state == states.RUNNING:
        if unfinished is None:
            raise ValueError("a quiet running flow is settled by its unfinished atoms: count them")
        return Next.SUCCEED if unfinished == 0 else Next.QUIET
    if state == states.SUSPENDING:
        return Next.SUSPEND
    if state == states.REVERTING:
        if not revert_planned:
            return Next.PLAN_REVERT
        return Next.END_FAILED if revert_failed else Next.END_REVERTED
    return Next.NOTHING


def after_plan(ready: int, revert_failed: bool) -> Next:
    """A compensation just planned with ``ready`` reverts to queue: nothing to revert ends it at once."""
    if ready:
        return Next.NOTHING
    return Next.END_FAILED if revert_failed else Next.END_REVERTED
