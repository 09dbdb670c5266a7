"""Running a flow into a flow detail the caller made (TaskFlow's ``load(flow, flow_detail=fd)``).

TaskFlow programs create a :class:`~celeryflow.persistence.models.FlowDetail`, save it
with ``save_logbook`` (often with metadata such as ``save_factory_details``) and then
load their flow into it. Such a detail has a row but no spec: nothing ran in it yet.
The engine takes it over in the transaction that persists the flow: the empty row (and
any atom rows the caller saved with it) is replaced by the flow's, under the same uuid,
keeping the detail's name, logbook, metadata and store (the engine's store wins on a
clash). A detail that already has a spec is resumed instead (``load_from_detail``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from celeryflow import serialization
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow


def _decoded(text: str | None) -> dict[str, Any]:
    value = serialization.loads(text)
    return dict(value) if isinstance(value, dict) else {}


def create_args(
    session: Session,
    fd: Any,
    *,
    store: Mapping[str, Any],
    meta: Mapping[str, Any],
    logbook_uuid: str | None,
    logbook_name: str | None,
) -> dict[str, Any]:
    """``control.create_flow`` keyword arguments that put the flow into the caller's detail ``fd``.

    Removes the detail's empty row first, in the caller's transaction. A row that already
    has a spec is left alone (this very transaction committed before and runs again).
    """
    name = str(fd.name)
    args: dict[str, Any] = {
        "name": name,
        "store": dict(store),
        "meta": {**dict(getattr(fd, "meta", None) or {}), **dict(meta)},
        "logbook_uuid": logbook_uuid or getattr(fd, "logbook_uuid", None),
        "logbook_name": logbook_name,
    }
    row = session.execute(
        select(FlowRow.spec, FlowRow.store, FlowRow.meta, FlowRow.logbook_uuid).where(FlowRow.uuid == fd.uuid)
    ).first()
    if row is None or row.spec is not None:
        return args
    args["store"] = {**_decoded(row.store), **dict(store)}
    args["meta"] = {**_decoded(row.meta), **dict(meta)}
    args["logbook_uuid"] = logbook_uuid or row.logbook_uuid
    for table in (EventRow, AtomRow):
        session.execute(delete(table).where(table.flow_uuid == fd.uuid))
    session.execute(delete(FlowRow).where(FlowRow.uuid == fd.uuid))
    return args


def is_empty_detail(session: Session, flow_uuid: str) -> bool | None:
    """``None``: no such flow; ``True``: a detail with no flow in it yet; ``False``: a flow ran in it."""
    row = session.execute(select(FlowRow.spec).where(FlowRow.uuid == flow_uuid)).first()
    return None if row is None else row.spec is None


__all__ = ["create_args", "is_empty_detail"]
