"""Logbook, flow and atom details read from and merged into their ORM rows.

The row-level half of the TaskFlow-style logbook API of :class:`~celeryflow.persistence.backends.base.Backend`:
each function works inside the caller's session (one ``Backend.run`` transaction)
and never commits.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from celeryflow.exceptions import NotFound
from celeryflow.persistence.models import AtomDetail, FlowDetail, LogBook
from celeryflow.persistence.tables import AtomRow, FlowRow, LogBookRow
from celeryflow.states import FLOW_TERMINAL

#: rows per IN (...) list and per prune batch: well under every database's parameter limit.
CHUNK = 500


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most :data:`CHUNK`."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def load_logbook(session: Session, book_uuid: str, *, lazy: bool) -> LogBook:
    """The logbook with that uuid (``lazy``: without its flow details).

    Raises:
        NotFound: no such logbook.
    """
    row = session.get(LogBookRow, book_uuid)
    if row is None:
        raise NotFound(f"No logbook {book_uuid!r}")
    flows = [] if lazy else load_flows(session, FlowRow.logbook_uuid == book_uuid, lazy=False)
    return LogBook.from_row(row, flows)


def load_flows(
    session: Session,
    *where: ColumnElement[bool],
    lazy: bool,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[FlowDetail]:
    """The flow details whose rows match ``where`` (``lazy``: without atom details)."""
    order = FlowRow.created_at.desc() if newest_first else FlowRow.created_at
    rows = session.scalars(select(FlowRow).where(*where).order_by(order, FlowRow.uuid).limit(limit)).all()
    atoms: dict[str, list[AtomRow]] = defaultdict(list)
    if not lazy:
        for chunk in chunks([r.uuid for r in rows]):
            query = select(AtomRow).where(AtomRow.flow_uuid.in_(chunk)).order_by(AtomRow.name)
            for atom in session.scalars(query):
                atoms[atom.flow_uuid].append(atom)
    return [FlowDetail.from_row(row, atoms[row.uuid]) for row in rows]


def merge_flow(session: Session, fd: FlowDetail, now: dt.datetime) -> None:
    """Insert or update the flow row of ``fd`` and the rows of its atom details."""
    values = fd.to_row_values()
    finished = now if values["state"] in FLOW_TERMINAL else None
    row = session.get(FlowRow, fd.uuid)
    by_uuid: dict[str, AtomRow] = {}
    by_name: dict[str, AtomRow] = {}
    if row is None:
        session.add(FlowRow(**values, created_at=now, updated_at=now, progress_at=now, finished_at=finished))
        session.flush()  # the atoms' foreign key needs the flow row first
    else:
        if row.state != values["state"]:
            # a state change is progress: it restarts the sweep's and prune's clocks
            row.progress_at, row.finished_at = now, finished
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = now
        for atom in session.scalars(select(AtomRow).where(AtomRow.flow_uuid == fd.uuid)):
            by_uuid[atom.uuid] = by_name[atom.name] = atom
    for ad in fd:
        merge_atom(session, fd.uuid, ad, by_uuid.get(ad.uuid) or by_name.get(ad.name))


def merge_atom(session: Session, flow_uuid: str, ad: AtomDetail, row: AtomRow | None) -> None:
    """Insert ``ad`` as an atom row of ``flow_uuid``, or write it over ``row``."""
    values = ad.to_row_values()
    ad.flow_uuid = flow_uuid
    if row is None:
        session.add(AtomRow(flow_uuid=flow_uuid, **values))
        return
    del values["name"]  # part of the primary key
    for key, value in values.items():
        setattr(row, key, value)


__all__ = ["CHUNK", "chunks", "load_flows", "load_logbook", "merge_atom", "merge_flow"]
