"""The web view's reads: index-backed, bounded, read-only.

* the flows list is keyset-paginated on ``(created_at, uuid)`` newest first (the
  ``ix_celeryflow_flows_created`` index) and never counts the whole table;
* a flow page's live updates read only the events after the last one the page has
  seen (the ``ix_celeryflow_events_flow_id`` index): two queries per poll however
  many atoms the flow has.

Nothing here is called by workers: the view adds no query to their hot path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, null, or_, select
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.contrib import listings, snapshot
from celeryflow.exceptions import NotFound
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

_HEX = set("0123456789abcdef-")


@dataclass
class FlowPage:
    """One page of the flows list and the cursor of the next (older) page."""

    rows: list[snapshot.FlowSummary]
    next_cursor: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)


def encode_cursor(created_at: dt.datetime | None, uuid: str) -> str:
    return f"{created_at.isoformat() if created_at else ''}|{uuid}"


def decode_cursor(text: str | None) -> tuple[dt.datetime, str] | None:
    """``(created_at, uuid)`` of a cursor, or None for a missing or malformed one (the first page)."""
    if not text or "|" not in text:
        return None
    stamp, _, uuid = text.partition("|")
    try:
        return dt.datetime.fromisoformat(stamp), uuid
    except ValueError:
        return None


def list_page(
    backend: Backend,
    *,
    states: Sequence[str] = (),
    name: str | None = None,
    search: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> FlowPage:
    """Flows newest first, ``limit`` per page, filtered by state/name, searched by id prefix or atom name.

    ``search``: 8 or more hex digits (dashes allowed) are a flow-id prefix (a primary-key
    range); anything else is a flow name or an atom name (indexes ``ix_celeryflow_flows_name_created``
    and ``ix_celeryflow_atoms_name_flow``).
    """
    after = decode_cursor(cursor)
    search = (search or "").strip() or None

    def read(session: Session) -> FlowPage:
        def keyset(*where: Any) -> list[Any]:
            query = select(FlowRow.uuid, FlowRow.name, FlowRow.state, FlowRow.created_at, FlowRow.finished_at,
                           FlowRow.progress_at).where(*where)
            if states:
                query = query.where(FlowRow.state.in_(list(states)))
            if name:
                query = query.where(FlowRow.name == name)
            if after is not None:
                stamp, uuid = after
                # "<= stamp" is the index range; the OR only breaks ties within one timestamp
                query = query.where(FlowRow.created_at <= stamp,
                                    or_(FlowRow.created_at < stamp, FlowRow.uuid < uuid))
            query = query.order_by(FlowRow.created_at.desc(), FlowRow.uuid.desc()).limit(limit + 1)
            return list(session.execute(query))

        if not search:
            found = keyset()
        else:
            # one index-friendly query per meaning of the search (an OR of them defeats every index);
            # 8+ hex digits are an id prefix only (names are not searched: an id is what was meant)
            lowered = search.lower()
            looks_like_id = set(lowered) <= _HEX and len(lowered.replace("-", "")) >= 4
            found = keyset(*_id_prefix(lowered)) if looks_like_id else []
            if not looks_like_id or len(lowered) < 8:
                found += keyset(FlowRow.name == search)
                found += keyset(FlowRow.uuid.in_(select(AtomRow.flow_uuid).where(AtomRow.name == search)))
            unique = {r.uuid: r for r in found}
            found = sorted(unique.values(), key=lambda r: (r.created_at, r.uuid), reverse=True)[: limit + 1]
        more = len(found) > limit
        found = found[:limit]
        rows = {r.uuid: snapshot.FlowSummary(r.uuid, r.name, r.state, r.created_at, r.finished_at, r.progress_at)
                for r in found}
        listings.add_counts(session, rows)  # two IN (...) queries for the page's flows
        next_cursor = encode_cursor(found[-1].created_at, found[-1].uuid) if more and found else None
        return FlowPage(list(rows.values()), next_cursor)

    return backend.run(read, readonly=True)


def _id_prefix(prefix: str) -> tuple[Any, ...]:
    """A flow-id prefix as a primary-key range (plus LIKE for exactness under any collation)."""
    if len(prefix) == 36:
        return (FlowRow.uuid == prefix,)
    stem = prefix.rstrip("-")
    last = stem[-1]
    upper = stem[:-1] + ("a" if last == "9" else chr(ord(last) + 1))  # hex: digits sort before letters
    return FlowRow.uuid >= stem, FlowRow.uuid < upper, FlowRow.uuid.startswith(prefix)


def flow_names(backend: Backend, limit: int = 200) -> list[str]:
    """Distinct flow names among the newest flows (for the name filter), bounded."""

    def read(session: Session) -> list[str]:
        recent = select(FlowRow.name).order_by(FlowRow.created_at.desc()).limit(2000).subquery()
        return sorted(n for n in session.scalars(select(recent.c.name).distinct().limit(limit)) if n)

    return backend.run(read, readonly=True)


def last_event_id(backend: Backend, flow_uuid: str) -> int:
    def read(session: Session) -> int:
        value = session.scalar(select(func.max(EventRow.id)).where(EventRow.flow_uuid == flow_uuid))
        return int(value or 0)

    return backend.run(read, readonly=True)


def changes(backend: Backend, flow_uuid: str, after: int, limit: int = 500) -> dict[str, Any] | None:
    """What changed in a flow since event ``after``: its state and the atoms' new states.

    Returns None when there is no such flow. ``more`` is true when ``limit`` events came
    back (the page asks again at once).
    """

    def read(session: Session) -> dict[str, Any] | None:
        row = session.execute(
            select(FlowRow.state, FlowRow.epoch, FlowRow.finished_at).where(FlowRow.uuid == flow_uuid)
        ).first()
        if row is None:
            return None
        events = session.execute(
            select(EventRow.id, EventRow.kind, EventRow.atom_name, EventRow.new_state, EventRow.details)
            .where(EventRow.flow_uuid == flow_uuid, EventRow.id > after)
            .order_by(EventRow.id).limit(limit)
        ).all()
        atoms: dict[str, str] = {}
        progress: dict[str, float] = {}
        for event in events:
            if event.kind == "atom" and event.atom_name and event.new_state:
                atoms[event.atom_name] = event.new_state
            elif event.kind == "progress" and event.atom_name and event.details:
                value = (serialization.loads(event.details) or {}).get("progress")
                if isinstance(value, int | float):
                    progress[event.atom_name] = float(value)
        return {
            "state": row.state, "epoch": row.epoch,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "last_event": events[-1].id if events else after, "atoms": atoms, "progress": progress,
            "more": len(events) == limit,
        }

    return backend.run(read, readonly=True)


def task_ids(backend: Backend, flow_uuid: str, names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The Celery tasks that claimed each of ``names`` (from the claims' events): name -> [(mode, task id)].

    One indexed read of the flow's claim events for the atoms a page shows.
    """
    from celeryflow.runtime.logbook import TASK_ID_KEY

    if not names:
        return {}

    def read(session: Session) -> dict[str, list[tuple[str, str]]]:
        rows = session.execute(
            select(EventRow.atom_name, EventRow.new_state, EventRow.details)
            .where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "atom", EventRow.atom_name.in_(names),
                   EventRow.new_state.in_((states.RUNNING, states.REVERTING)), EventRow.details.is_not(None))
            .order_by(EventRow.id)
        ).all()
        found: dict[str, list[tuple[str, str]]] = {}
        for atom, state, details in rows:
            task_id = (serialization.loads(details) or {}).get(TASK_ID_KEY)
            if isinstance(task_id, str) and atom:
                found.setdefault(atom, []).append(("revert" if state == states.REVERTING else "execute", task_id))
        return found

    return backend.run(read, readonly=True)


#: flows with more atoms than this are read with results only for the atoms a page shows
BIG_FLOW = 1000


def compilation(backend: Backend, flow_uuid: str) -> Any:
    """The flow's compiled spec (None when it has none). Raises NotFound for an unknown flow."""

    def read(session: Session) -> Any:
        found = session.execute(select(FlowRow.spec).where(FlowRow.uuid == flow_uuid)).first()
        if found is None:
            raise NotFound(f"No flow {flow_uuid!r} in the logbook {backend.url.masked}; check the id")
        return snapshot._compilation(found.spec)

    return backend.run(read, readonly=True)


def load_big_flow(backend: Backend, flow_uuid: str, comp: Any, shown: Sequence[str]) -> snapshot.FlowView:
    """A big flow's view with every atom's state and timings, but results and retry history only for
    ``shown`` (the page's atoms): decoding 10,000 results to show 200 is the page's whole cost."""
    wanted = list(shown)
    shown_here = AtomRow.name.in_(wanted) if wanted else AtomRow.name.is_(None)

    def read(session: Session) -> snapshot.FlowView:
        row = session.scalars(select(FlowRow).where(FlowRow.uuid == flow_uuid)).first()
        if row is None:
            raise NotFound(f"No flow {flow_uuid!r} in the logbook {backend.url.masked}; check the id")
        atoms = session.execute(select(
            AtomRow.name, AtomRow.kind, AtomRow.state, AtomRow.intention, AtomRow.attempts, AtomRow.worker,
            AtomRow.queued, AtomRow.progress, AtomRow.queued_at, AtomRow.started_at, AtomRow.finished_at,
            AtomRow.heartbeat_at, AtomRow.failure, AtomRow.revert_failure,
            case((shown_here, AtomRow.result), else_=null()).label("result"),
            case((shown_here, AtomRow.history), else_=null()).label("history"),
        ).where(AtomRow.flow_uuid == flow_uuid)).all()
        reverted = session.scalars(
            select(EventRow.atom_name).where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "atom",
                                             EventRow.new_state.in_(["REVERTED", "REVERT_FAILURE"]))
            .order_by(EventRow.id)).all()
        return snapshot._build(row, atoms, [n for n in reverted if n], compilation=comp)  # type: ignore[arg-type]

    return backend.run(read, readonly=True)


def atom_counts(backend: Backend, flow_uuid: str) -> dict[str, Any]:
    """``{"done": n, "total": n, "by_state": {...}}`` of one flow (the atoms' flow/state index)."""

    def read(session: Session) -> dict[str, Any]:
        by_state = {s: int(n) for s, n in session.execute(
            select(AtomRow.state, func.count()).where(AtomRow.flow_uuid == flow_uuid).group_by(AtomRow.state))}
        done = by_state.get("SUCCESS", 0) + by_state.get("IGNORE", 0)
        return {"done": done, "total": sum(by_state.values()), "by_state": by_state}

    return backend.run(read, readonly=True)


@dataclass
class EventItem:
    """One row of a flow's event timeline."""

    id: int
    at: dt.datetime
    epoch: int
    kind: str
    atom: str | None
    old_state: str | None
    new_state: str | None
    worker: str | None
    details: dict[str, Any]


def timeline(backend: Backend, flow_uuid: str, before: int | None = None, limit: int = 100) -> list[EventItem]:
    """The flow's events newest first, ``limit`` at a time (``before``: an event id, for older pages)."""

    def read(session: Session) -> list[EventItem]:
        query = select(EventRow).where(EventRow.flow_uuid == flow_uuid)
        if before is not None:
            query = query.where(EventRow.id < before)
        out = []
        for e in session.scalars(query.order_by(EventRow.id.desc()).limit(limit)):
            try:
                details = dict(serialization.loads(e.details) or {}) if e.details else {}
            except (TypeError, ValueError):
                details = {"details": e.details}
            out.append(EventItem(e.id, e.at, e.epoch or 0, e.kind, e.atom_name, e.old_state, e.new_state,
                                 e.worker, details))
        return out

    return backend.run(read, readonly=True)


__all__ = ["BIG_FLOW", "EventItem", "FlowPage", "atom_counts", "changes", "compilation", "decode_cursor",
           "encode_cursor", "flow_names", "last_event_id", "list_page", "load_big_flow", "timeline"]
