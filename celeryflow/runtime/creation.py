"""Persisting a new flow: its row, its atoms' rows and its first event, in the caller's transaction.

A flow is created once, by the process that submits it (``engine.prepare()``); from
then on only the scheduler's transactions (:mod:`celeryflow.runtime.control`,
:mod:`celeryflow.runtime.steps`, ...) change it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.persistence.tables import DEFAULT_NAMESPACE, AtomRow, FlowRow, LogBookRow, utcnow
from celeryflow.runtime.logbook import Events

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation


def create_flow(
    session: Session,
    *,
    flow_uuid: str,
    name: str,
    comp: Compilation,
    spec: Mapping[str, Any],
    store: Mapping[str, Any],
    meta: Mapping[str, Any],
    logbook_uuid: str | None,
    logbook_name: str | None,
    owner: str | None = None,
    versions: Mapping[str, str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> bool:
    """Write a new flow, its atoms and its spec in the caller's transaction.

    ``versions`` (atom name -> version string, TaskFlow's ``atom.version``) go into the
    atom rows' metadata, where ``AtomDetail.version`` reads them.
    ``namespace``: the deployment the flow belongs to (see :mod:`celeryflow.namespaces`).

    Returns False, writing nothing, when this very flow (same id, name and spec) is
    already there: the caller's earlier commit landed though its connection died
    before the client heard back, and ``backend.run`` ran the transaction again.
    A different flow under that id still fails (IntegrityError).
    """
    spec_json = serialization.dumps(dict(spec), f"spec of flow {name!r}")
    existing = session.execute(
        select(FlowRow.name, FlowRow.spec).where(FlowRow.uuid == flow_uuid)
    ).first()
    if existing is not None and tuple(existing) == (name, spec_json):
        return False
    if logbook_uuid is not None and session.get(LogBookRow, logbook_uuid) is None:
        session.add(LogBookRow(uuid=logbook_uuid, name=logbook_name or name))
        session.flush()
    now = utcnow()
    session.add(
        FlowRow(
            uuid=flow_uuid,
            logbook_uuid=logbook_uuid,
            name=name,
            state=states.PENDING,
            epoch=0,
            spec=spec_json,
            store=serialization.dumps(dict(store), f"store of flow {name!r}"),
            meta=serialization.dumps(dict(meta), f"options of flow {name!r}"),
            outstanding=0,
            owner=owner,
            namespace=namespace,
            progress_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    rows = [
        {
            "flow_uuid": flow_uuid,
            "name": atom.name,
            "uuid": str(uuidlib.uuid4()),
            "kind": atom.kind,
            "state": states.PENDING,
            "intention": states.EXECUTE,
            "queued": False,
            "waiting": len(atom.preds),
            "rwaiting": 0,
            "attempts": 0,
            "progress": 0.0,
            "meta": _version_meta(versions, atom.name),
        }
        for atom in comp.atoms.values()
    ]
    if len(rows) >= COPY_THRESHOLD and session.connection().dialect.driver == "psycopg":
        _copy_rows(session, AtomRow.__tablename__, rows)
    elif rows:
        session.execute(insert(AtomRow), rows)
    events = Events(flow_uuid, 0, owner)
    events.add("flow", None, states.PENDING)
    events.flush(session)
    return True


def _version_meta(versions: Mapping[str, str] | None, name: str) -> str | None:
    version = versions.get(name) if versions else None
    return None if version is None else serialization.dumps({"__version__": version})


#: atoms per flow from which PostgreSQL gets them with COPY (one round trip) instead of
#: an INSERT per row: 10,000 atoms take 0.1 s instead of 0.45 s
COPY_THRESHOLD = 200


def _copy_rows(session: Session, table: str, rows: list[dict[str, Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` on the session's own connection and transaction (psycopg 3)."""
    columns = list(rows[0])
    raw = session.connection().connection.driver_connection
    assert raw is not None
    quoted = ", ".join(f'"{name}"' for name in columns)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])
