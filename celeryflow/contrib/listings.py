"""Cheap read-only summaries of the logbook: flow listings, flow counts by state, workers seen.

No specs, no stores, no results: for ``celeryflow flows list``, ``celeryflow top`` and the
web view's flow list. One flow in full is :func:`celeryflow.contrib.snapshot.load_flow`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend


def seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (never negative); ``None`` if either is unknown."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass
class FlowSummary:
    """A row of ``celeryflow flows list`` / ``top``: no spec, no store, no results."""

    uuid: str
    name: str
    state: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress_at: dt.datetime | None
    total: int = 0
    done: int = 0
    running: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: queued atoms waiting for a worker that has their code (runtime.missing_code)
    waiting: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        end = self.finished_at or (None if self.state in states.FLOW_TERMINAL else utcnow())
        return seconds_between(self.created_at, end)


def list_flows(
    backend: Backend,
    state: str | Iterable[str] | None = None,
    older_than: dt.timedelta | None = None,
    newer_than: dt.timedelta | None = None,
    limit: int | None = 50,
    name: str | None = None,
) -> list[FlowSummary]:
    """Flows newest first, with atom counts (done / total) and the names of running atoms."""
    now = utcnow()

    def read(session: Session) -> list[FlowSummary]:
        query = select(
            FlowRow.uuid, FlowRow.name, FlowRow.state, FlowRow.created_at, FlowRow.finished_at, FlowRow.progress_at
        )
        if state is not None:
            query = query.where(FlowRow.state.in_([state] if isinstance(state, str) else list(state)))
        if older_than is not None:
            query = query.where(FlowRow.created_at < now - older_than)
        if newer_than is not None:
            query = query.where(FlowRow.created_at > now - newer_than)
        if name is not None:
            query = query.where(FlowRow.name == name)
        query = query.order_by(FlowRow.created_at.desc(), FlowRow.uuid).limit(limit)
        out = {r.uuid: FlowSummary(r.uuid, r.name, r.state, r.created_at, r.finished_at, r.progress_at)
               for r in session.execute(query)}
        add_counts(session, out)
        return list(out.values())

    return backend.run(read, readonly=True)


def add_counts(session: Session, flows: dict[str, FlowSummary]) -> None:
    """Fill in the atom counts and running/failed/waiting atom names of ``flows`` (by flow id)."""
    ids = list(flows)
    done_states = (states.SUCCESS, states.IGNORE)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        counts = session.execute(
            select(
                AtomRow.flow_uuid,
                func.count(),
                func.sum(case((AtomRow.state.in_(done_states), 1), else_=0)),
            )
            .where(AtomRow.flow_uuid.in_(chunk))
            .group_by(AtomRow.flow_uuid)
        )
        for flow_uuid, total, done in counts:
            flows[flow_uuid].total, flows[flow_uuid].done = int(total), int(done or 0)
        # an atom that failed keeps its failure after it was compensated (state REVERTED), so a
        # REVERTED flow still names the atom that failed
        has_failure = AtomRow.failure.is_not(None) | AtomRow.revert_failure.is_not(None)
        busy = session.execute(
            select(AtomRow.flow_uuid, AtomRow.name, AtomRow.state, has_failure.label("has_failure"))
            .where(AtomRow.flow_uuid.in_(chunk),
                   AtomRow.state.in_([states.RUNNING, states.REVERTING, states.FAILURE, states.REVERT_FAILURE])
                   | has_failure)
            .order_by(AtomRow.name)
        )
        waiting = session.execute(
            select(AtomRow.flow_uuid, AtomRow.name)
            .where(AtomRow.flow_uuid.in_(chunk), AtomRow.queued.is_(True), AtomRow.wait_reason.is_not(None))
            .order_by(AtomRow.name)
        )
        for flow_uuid, atom in waiting:
            flows[flow_uuid].waiting.append(atom)
        for flow_uuid, atom, atom_state, failed in busy:
            if atom_state in (states.RUNNING, states.REVERTING):
                flows[flow_uuid].running.append(atom)
            if failed or atom_state in (states.FAILURE, states.REVERT_FAILURE):
                flows[flow_uuid].failed.append(atom)


def count_by_state(backend: Backend, newer_than: dt.timedelta | None = None) -> dict[str, int]:
    """How many flows are in each state (created within ``newer_than``, if given)."""

    def read(session: Session) -> dict[str, int]:
        query = select(FlowRow.state, func.count()).group_by(FlowRow.state)
        if newer_than is not None:
            query = query.where(FlowRow.created_at > utcnow() - newer_than)
        return {s: int(n) for s, n in session.execute(query)}

    return backend.run(read, readonly=True)


@dataclass
class WorkerView:
    """A worker process as the logbook saw it (``host:pid``)."""

    worker: str
    running: list[str] = field(default_factory=list)  # "flow name / atom"
    finished: int = 0
    last_seen: dt.datetime | None = None

    @property
    def host(self) -> str:
        return self.worker.rsplit(":", 1)[0]


def worker_views(backend: Backend, since: dt.timedelta = dt.timedelta(minutes=10)) -> list[WorkerView]:
    """Workers that ran atoms recently: what they run now, how many they finished, when last seen.

    Read from the atoms table (each atom records the worker process that ran it and
    its heartbeat), so it needs no broker; ``celeryflow top`` adds Celery's own view
    when a broker is configured.
    """
    cutoff = utcnow() - since

    def read(session: Session) -> list[WorkerView]:
        found: dict[str, WorkerView] = {}
        rows = session.execute(
            select(AtomRow.worker, AtomRow.name, AtomRow.state, AtomRow.heartbeat_at, AtomRow.finished_at,
                   AtomRow.started_at, FlowRow.name)
            .join(FlowRow, FlowRow.uuid == AtomRow.flow_uuid)
            .where(AtomRow.worker.is_not(None))
            .where(
                AtomRow.state.in_([states.RUNNING, states.REVERTING])
                | (AtomRow.finished_at > cutoff)
            )
        )
        for worker, atom, atom_state, beat, finished, started, flow_name in rows:
            if worker is None:
                continue
            view = found.setdefault(worker, WorkerView(worker))
            if atom_state in (states.RUNNING, states.REVERTING):
                verb = "" if atom_state == states.RUNNING else " (revert)"
                view.running.append(f"{flow_name} / {atom}{verb}")
            else:
                view.finished += 1
            seen = max((t for t in (beat, finished, started) if t is not None), default=None)
            if seen is not None and (view.last_seen is None or seen > view.last_seen):
                view.last_seen = seen
        return sorted(found.values(), key=lambda w: w.worker)

    return backend.run(read, readonly=True)


__all__ = [
    "FlowSummary",
    "WorkerView",
    "add_counts",
    "count_by_state",
    "list_flows",
    "seconds_between",
    "worker_views",
]
