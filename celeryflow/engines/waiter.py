"""Following a flow from the caller's process: replay logbook events to notifiers, wait for the end."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select

from celeryflow import serialization, states
from celeryflow.exceptions import BackendClosed, NotFound, StorageFailure, Timeout
from celeryflow.persistence.tables import EventRow, FlowRow
from celeryflow.runtime import localbus
from celeryflow.runtime.logbook import TASK_ID_KEY

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

# Event ids come from a sequence shared by every flow: a transaction that took a lower
# id may commit after one that took a higher id. The follower re-reads everything of
# its flow above its LOOKBACK-th newest delivered event: a look-back counted in this
# flow's own events, so no amount of other flows' traffic pushes a late event out.
LOOKBACK = 256
MIN_INTERVAL = 0.005
MAX_INTERVAL = 0.05
#: how long a follower keeps retrying while the logbook is unreachable
OUTAGE_TOLERANCE = 120.0

LOG = logging.getLogger(__name__)

_events = EventRow.__table__
_EVENTS_AFTER = (
    select(_events)
    .where(_events.c.flow_uuid == bindparam("b_flow"), _events.c.id > bindparam("b_low"))
    .order_by(_events.c.id)
    .limit(5000)
)
_FLOW_STATE = select(FlowRow.__table__.c.state, FlowRow.__table__.c.epoch,
                     FlowRow.__table__.c.outstanding + FlowRow.__table__.c.held).where(
    FlowRow.__table__.c.uuid == bindparam("b_flow")
)


def last_event_id(backend: Backend, flow_uuid: str) -> int:
    def read(session: Any) -> int:
        return int(session.scalar(select(func.max(EventRow.id)).where(EventRow.flow_uuid == flow_uuid)) or 0)

    return backend.run(read)


class Follower:
    """Reads a flow's events in commit order and hands each to ``on_event`` once."""

    def __init__(self, backend: Backend, flow_uuid: str, after_id: int = 0) -> None:
        self.backend = backend
        self.flow_uuid = flow_uuid
        # Events of this flow with ids up to _floor were delivered (or predate us); _recent
        # holds the ids (sorted, all above _floor) of the newest delivered ones, at most LOOKBACK.
        self._floor = after_id
        self._recent: list[int] = []
        self._seen: set[int] = set()
        #: atoms of the flow queued, running or held back by its dispatch window, at the last poll
        self.scheduled = 0

    def poll(self, on_event: Callable[[EventRow], None]) -> tuple[str, int]:
        """Deliver new events; return the flow's current (state, epoch)."""
        low = self._floor

        def read(conn: Any) -> tuple[list[Any], tuple[str, int, int] | None]:
            # Core rows (attribute access like EventRow): the lookback re-reads up to
            # LOOKBACK events every poll, and ORM objects for them cost several times more.
            rows = list(conn.execute(_EVENTS_AFTER, {"b_flow": self.flow_uuid, "b_low": low}))
            flow = conn.execute(_FLOW_STATE, {"b_flow": self.flow_uuid}).first()
            return rows, (flow[0], flow[1], flow[2]) if flow else None

        rows, flow = self.backend.run_core(read, readonly=True)
        if flow is None:
            raise NotFound(f"Flow {self.flow_uuid} is not in the logbook {self.backend!r}")
        self.scheduled = int(flow[2] or 0)
        for row in rows:
            if row.id in self._seen:
                continue
            self._seen.add(row.id)
            bisect.insort(self._recent, row.id)
            on_event(row)
        if len(self._recent) > LOOKBACK:
            evicted = self._recent[: len(self._recent) - LOOKBACK]
            del self._recent[: len(evicted)]
            self._seen.difference_update(evicted)
            self._floor = evicted[-1]
        return flow[0], flow[1]

    def follow(
        self,
        on_event: Callable[[EventRow], None],
        timeout: float | None = None,
        stop_states: frozenset[str] = states.FLOW_TERMINAL,
        tap: localbus.Tap | None = None,
    ) -> str:
        """Deliver events until the flow reaches one of ``stop_states``; return that state.

        Atoms this process's workers claimed run their code once their RUNNING event was
        delivered (see :mod:`celeryflow.runtime.localbus`): every poll releases them. Pass the
        ``tap`` taken before the flow's first atoms were sent, or one is taken here.
        """
        if tap is None:
            with localbus.tapping(self.flow_uuid) as own:
                return self.follow(on_event, timeout, stop_states, own)
        last = ""
        for last in self.polls(on_event, timeout, stop_states, tap):  # noqa: B007 - the last one is returned
            tap.release()
        return last

    def polls(
        self,
        on_event: Callable[[EventRow], None],
        timeout: float | None = None,
        stop_states: frozenset[str] = states.FLOW_TERMINAL,
        tap: localbus.Tap | None = None,
    ) -> Generator[str, None, None]:
        """Deliver events, yielding the flow's state after each poll, up to one of ``stop_states``.

        Polls come at once after a commit in this process, else every 5 to 50 ms.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = MIN_INTERVAL
        outage_started: float | None = None
        while True:
            generation = localbus.generation()
            if tap is not None:
                tap.poll_begins()
            try:
                state, _ = self.poll(on_event)
            except BackendClosed:
                raise  # closed by this process: it will not come back
            except StorageFailure:
                # The logbook is briefly unreachable (a database restart, a failover): the
                # flow goes on without us, so keep following for a while before giving up.
                now = time.monotonic()
                outage_started = outage_started or now
                if now - outage_started > OUTAGE_TOLERANCE or (deadline is not None and now >= deadline):
                    raise
                LOG.warning("logbook unreachable while following flow %s; retrying", self.flow_uuid)
                time.sleep(min(1.0, interval * 4))
                interval = min(MAX_INTERVAL, interval * 2)
                continue
            outage_started = None
            if state in stop_states:
                # One more read so events committed with the final transition are delivered.
                self.poll(on_event)
                yield state
                return
            yield state
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"Flow {self.flow_uuid} is still {state} after {timeout} s")
            wait = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            if localbus.wait(generation, wait) != generation:
                interval = MIN_INTERVAL
            else:
                interval = min(MAX_INTERVAL, interval * 1.5)


def event_details(row: EventRow) -> dict[str, Any]:
    """An event's details as notifications carry them (the claim's Celery task id is the logbook's)."""
    details = dict(serialization.loads(row.details) or {})
    details.pop(TASK_ID_KEY, None)
    return details
