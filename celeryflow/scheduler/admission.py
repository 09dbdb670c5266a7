"""The dispatch window: which ready atoms to queue now, which to hold, how many to refill.

At most ``window`` atoms of a flow are queued or running, whichever wave made them ready
(a start, a finishing atom, a retry round, a compensation wave). The rest are held
(counted in ``flows.held``) and queued as the in-flight count falls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celeryflow import states


def ready_to_execute(waiting: int, state: str, intention: str, queued: bool) -> bool:
    """An atom whose predecessors are all done and that waits to be queued for execute."""
    return waiting <= 0 and state == states.PENDING and intention == states.EXECUTE and not queued


@dataclass(frozen=True, slots=True)
class Admitted:
    """What to queue now, and the flow's held count after."""

    queue: tuple[str, ...]
    held: int


def admit(ready: Sequence[str], outstanding: int, held: int, window: int) -> Admitted:
    """Of atoms that just became ready (in order), those the window has room for.

    ``outstanding``: the flow's queued-or-running atoms now. ``held`` only grows here (a
    start or resume zeroes it first), so atoms held by earlier waves stay counted.
    """
    room = max(0, window - outstanding)
    return Admitted(tuple(ready[:room]), held + max(0, len(ready) - room))


def admit_successors(successors: Sequence[str], joins: Mapping[str, Any], outstanding: int, held: int,
                     window: int) -> Admitted:
    """Which successors of a just-finished atom to queue (the success path's admission).

    ``joins``: each successor's join state after the finished atom was counted in
    (attributes ``waiting``, ``state``, ``intention``, ``queued``); ``outstanding``: the
    flow's in-flight count *before* the finished atom left it.
    """
    ready = [
        s for s in successors
        if (row := joins.get(s)) is not None and ready_to_execute(row.waiting, row.state, row.intention, row.queued)
    ]
    return admit(ready, outstanding - 1, held, window)


def refill_due(held: int, outstanding: int, window: int, state: str) -> int:
    """How many held atoms to look for now (0: none).

    Once the in-flight count falls to half the window, a running flow refills its held
    executions (and a retry round's reverts), a reverting one its reverts.
    """
    if not held or outstanding > window // 2 or state not in (states.RUNNING, states.REVERTING):
        return 0
    return max(1, min(held, window - outstanding))


def held_after_refill(held: int, wanted: int, found: int) -> int:
    """The held count after a refill that looked for ``wanted`` and found ``found``.

    Fewer than asked for: none is held any more (a retry scope, a failure or a reset took
    the others).
    """
    return held - found if found == wanted else 0


def finish_needs_general_path(held: int, outstanding: int, window: int) -> bool:
    """Whether a success may bring held atoms due (the fast paths leave refills to the general path)."""
    return bool(held) and outstanding - 1 <= window // 2
