"""Liveness: which claims are fresh, which are stale, and the sweep's cases.

Every time here is the database's clock (heartbeats, queue times and the sweep's "now"
are all read or written with it), so machines with skewed clocks never make a live
worker look dead.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from celeryflow import states
from celeryflow.scheduler.snapshot import AtomSnap

#: atom states of an atom in a worker's hands (claimed for execute or revert)
IN_HAND = (states.RUNNING, states.REVERTING)
#: flow states the sweep looks after
ACTIVE = (states.RUNNING, states.REVERTING, states.SUSPENDING)
#: resends of a flow that still makes no progress back off up to 2**this timeouts
MAX_BACKOFF_EXP = 3


def older(when: dt.datetime | None, cutoff: dt.datetime) -> bool:
    """A timestamp before ``cutoff`` (none at all counts as old)."""
    return when is None or when < cutoff


def claim_is_fresh(heartbeat_at: dt.datetime | None, heartbeat_timeout: float, now: dt.datetime) -> bool:
    """Whether a claim's last heartbeat is younger than ``heartbeat_timeout``: its worker lives.

    No heartbeat at all counts as stale. ``now`` is the database's clock.
    """
    return heartbeat_at is not None and heartbeat_at > now - dt.timedelta(seconds=heartbeat_timeout)


def in_hand(atom: AtomSnap) -> bool:
    """Claimed by a worker (RUNNING or REVERTING) and not waiting for a message."""
    return atom.state in IN_HAND and not atom.queued


def resend_wait(timeout: float, resends: int, countdown: float = 0.0) -> float:
    """Seconds a flow's queued atoms must have waited before they are sent again.

    ``resends``: earlier resends while the flow made no progress (back-off T, 2T, 4T, 8T);
    ``countdown``: a retry controller dispatched with a delay is not late before it is over.
    """
    return timeout * 2 ** min(resends, MAX_BACKOFF_EXP) + countdown


class Case(enum.Enum):
    """What the sweep found in one flow."""

    HEALTHY = "healthy"
    ORPHANED = "orphaned atoms"  # claims whose heartbeat is stale: reclaim them
    LOST = "lost messages"  # queued for longer than the resend wait, no progress: send again
    STUCK = "nothing in flight"  # no claim, nothing queued, no progress: re-drive


@dataclass(frozen=True)
class Found:
    """The sweep's case for a flow, with the atoms it concerns."""

    case: Case
    stale: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()


def sweep_case(atoms: Sequence[AtomSnap], progress_at: dt.datetime | None, now: dt.datetime, timeout: float,
               wait: float, *, stale_atoms: bool = True) -> Found:
    """Classify an active flow for the sweep (under its row lock).

    ``wait``: :func:`resend_wait`; ``stale_atoms``: judge heartbeats (False right after a
    logbook outage, when every heartbeat is old because nobody could write).
    """
    cutoff = now - dt.timedelta(seconds=timeout)
    held = [a for a in atoms if in_hand(a)]
    stale = [a.name for a in held if older(a.heartbeat_at, cutoff)] if stale_atoms else []
    running = [a.name for a in held if a.name not in stale]
    queued = [a for a in atoms if a.queued]
    resend_cutoff = now - dt.timedelta(seconds=wait)
    lost = [a.name for a in queued if older(a.queued_at, resend_cutoff)]
    if stale:
        return Found(Case.ORPHANED, tuple(stale), tuple(running))
    if lost and older(progress_at, resend_cutoff):
        return Found(Case.LOST, running=tuple(running), lost=tuple(lost))
    if older(progress_at, cutoff) and not running and not queued:
        return Found(Case.STUCK)
    return Found(Case.HEALTHY, running=tuple(running))
