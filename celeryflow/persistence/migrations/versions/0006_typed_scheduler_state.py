"""The scheduler's bookkeeping in typed columns; indexes for the web view's name searches.

Until now the scheduler kept its state in the free-form ``meta`` JSON of flows and
atoms, where user metadata and engine options also live. It moves to columns of its
own, so ``meta`` holds only what users and engine options put there:

* ``celeryflow_flows``: ``retry_scopes`` (JSON: the retry scopes being reverted for a
  retry, was ``meta["retrying"]``), ``revert_scope`` (JSON: the atoms a compensation is
  restricted to), ``revert_plan`` (JSON: the compensation's plan), ``revert_failed``
  (a revert of the current compensation failed), ``resends`` and ``resend_progress_at``
  (the sweep's back-off for lost messages, was ``meta["sweep_resends"]``).
  ``meta["revert_failures"]`` is dropped: each atom's ``revert_failure`` holds it.
* ``celeryflow_atoms``: ``lost_execute`` / ``lost_revert`` (worker deaths seen by the
  sweep, was ``meta["worker_lost"]``), ``verdicts`` (JSON: the deciders' recorded
  verdicts on the atom's outgoing links) and ``on_failure`` (JSON: a retry controller's
  recorded verdict).
* indexes ``ix_celeryflow_flows_name_created`` and ``ix_celeryflow_atoms_name_flow``: the
  web view finds flows by flow name (newest first) and by atom name (the atoms' primary
  key starts with the flow, so it could not).

Flows in flight when the schema is upgraded carry these keys in their meta: the
upgrade moves them to the columns (and the downgrade back), so they go on running.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

#: as tables.LongText: MySQL's TEXT stops at 64 KiB
LONG_TEXT = sa.Text().with_variant(sa.Text(length=2**32 - 1), "mysql", "mariadb")
#: rows read per round trip while moving the data
PAGE = 500

_FLOW_KEYS = ("retrying", "revert_scope", "revert_plan", "revert_failed", "revert_failures", "sweep_resends")
_ATOM_KEYS = ("worker_lost", "verdicts", "on_failure")

_flows = sa.table(
    "celeryflow_flows", sa.column("uuid", sa.String), sa.column("meta", sa.Text),
    sa.column("retry_scopes", sa.Text), sa.column("scope_retrying", sa.Boolean),
    sa.column("revert_scope", sa.Text), sa.column("revert_plan", sa.Text), sa.column("revert_failed", sa.Boolean),
    sa.column("resends", sa.Integer), sa.column("resend_progress_at", sa.DateTime),
)
_atoms = sa.table(
    "celeryflow_atoms", sa.column("flow_uuid", sa.String), sa.column("name", sa.String), sa.column("meta", sa.Text),
    sa.column("lost_execute", sa.Integer), sa.column("lost_revert", sa.Integer),
    sa.column("verdicts", sa.Text), sa.column("on_failure", sa.Text),
)


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN everywhere (SQLite too: a NULL or constant default needs no copy)
    for column in (
        sa.Column("retry_scopes", LONG_TEXT, nullable=True),
        sa.Column("revert_scope", LONG_TEXT, nullable=True),
        sa.Column("revert_plan", LONG_TEXT, nullable=True),
        sa.Column("revert_failed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("resends", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("resend_progress_at", sa.DateTime(), nullable=True),
    ):
        op.add_column("celeryflow_flows", column)
    for column in (
        sa.Column("lost_execute", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lost_revert", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("verdicts", LONG_TEXT, nullable=True),
        sa.Column("on_failure", LONG_TEXT, nullable=True),
    ):
        op.add_column("celeryflow_atoms", column)
    op.create_index("ix_celeryflow_flows_name_created", "celeryflow_flows", ["name", "created_at"])
    op.create_index("ix_celeryflow_atoms_name_flow", "celeryflow_atoms", ["name", "flow_uuid"])
    bind = op.get_bind()
    for keys, meta in _pages(bind, _flows, (_flows.c.uuid,), _FLOW_KEYS):
        moved = _flow_columns(meta)
        bind.execute(sa.update(_flows).where(_flows.c.uuid == keys[0]).values(meta=_dumps(meta), **moved))
    for keys, meta in _pages(bind, _atoms, (_atoms.c.flow_uuid, _atoms.c.name), _ATOM_KEYS):
        moved = _atom_columns(meta)
        bind.execute(sa.update(_atoms).where(_atoms.c.flow_uuid == keys[0], _atoms.c.name == keys[1])
                     .values(meta=_dumps(meta), **moved))


def downgrade() -> None:
    bind = op.get_bind()
    # the columns go back into the meta first: a flow in flight goes on under the older code
    flows = sa.or_(_flows.c.retry_scopes.is_not(None), _flows.c.revert_scope.is_not(None),
                   _flows.c.revert_plan.is_not(None), _flows.c.revert_failed.is_(True), _flows.c.resends > 0)
    for row in _rows(bind, _flows, (_flows.c.uuid,), flows):
        meta = _meta(row.meta)
        for key, column in (("retrying", "retry_scopes"), ("revert_scope", "revert_scope"),
                            ("revert_plan", "revert_plan")):
            if getattr(row, column) is not None:
                meta[key] = json.loads(getattr(row, column))
        if row.revert_failed:
            meta["revert_failed"] = True
        if row.resends:
            stamp = row.resend_progress_at
            meta["sweep_resends"] = {"count": row.resends, "progress_at": _iso(stamp), "by": None}
        bind.execute(sa.update(_flows).where(_flows.c.uuid == row.uuid).values(meta=_dumps(meta)))
    atoms = sa.or_(_atoms.c.lost_execute > 0, _atoms.c.lost_revert > 0, _atoms.c.verdicts.is_not(None),
                   _atoms.c.on_failure.is_not(None))
    for row in _rows(bind, _atoms, (_atoms.c.flow_uuid, _atoms.c.name), atoms):
        meta = _meta(row.meta)
        lost = {mode: n for mode, n in (("execute", row.lost_execute), ("revert", row.lost_revert)) if n}
        if lost:
            meta["worker_lost"] = lost
        for key in ("verdicts", "on_failure"):
            if getattr(row, key) is not None:
                meta[key] = json.loads(getattr(row, key))
        bind.execute(sa.update(_atoms).where(_atoms.c.flow_uuid == row.flow_uuid, _atoms.c.name == row.name)
                     .values(meta=_dumps(meta)))
    op.drop_index("ix_celeryflow_atoms_name_flow", table_name="celeryflow_atoms")
    op.drop_index("ix_celeryflow_flows_name_created", table_name="celeryflow_flows")
    flow_columns = ("retry_scopes", "revert_scope", "revert_plan", "revert_failed", "resends", "resend_progress_at")
    atom_columns = ("lost_execute", "lost_revert", "verdicts", "on_failure")
    if bind.dialect.name == "sqlite":
        # in place (SQLite >= 3.35): a batch copy would cascade-delete the atoms (see 0004)
        for table, columns in (("celeryflow_flows", flow_columns), ("celeryflow_atoms", atom_columns)):
            for name in columns:
                op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    else:
        for name in flow_columns:
            op.drop_column("celeryflow_flows", name)
        for name in atom_columns:
            op.drop_column("celeryflow_atoms", name)


# --------------------------------------------------------------------------- moving the data


def _flow_columns(meta: dict[str, Any]) -> dict[str, Any]:
    """Pop the scheduler's keys from a flow's meta; return the column values they become."""
    out: dict[str, Any] = {}
    retrying = meta.pop("retrying", None)
    if isinstance(retrying, dict) and retrying:
        out.update(retry_scopes=_dumps(retrying), scope_retrying=True)
    for key in ("revert_scope", "revert_plan"):
        value = meta.pop(key, None)
        if value is not None:
            out[key] = _dumps(value)
    if meta.pop("revert_failed", None):
        out["revert_failed"] = True
    meta.pop("revert_failures", None)  # each atom's revert_failure holds the same
    resends = meta.pop("sweep_resends", None)
    if isinstance(resends, dict):
        out["resends"] = int(resends.get("count") or 0)
        out["resend_progress_at"] = _parse(resends.get("progress_at"))
    return out


def _atom_columns(meta: dict[str, Any]) -> dict[str, Any]:
    """Pop the scheduler's keys from an atom's meta (only in the shapes it wrote them in)."""
    out: dict[str, Any] = {}
    lost = meta.get("worker_lost")
    if isinstance(lost, dict) and all(isinstance(v, int) for v in lost.values()):
        meta.pop("worker_lost")
        out.update(lost_execute=int(lost.get("execute", 0)), lost_revert=int(lost.get("revert", 0)))
    verdicts = meta.get("verdicts")
    if isinstance(verdicts, dict) and all(isinstance(v, list) and len(v) == 2 for v in verdicts.values()):
        out["verdicts"] = _dumps(meta.pop("verdicts"))
    recorded = meta.get("on_failure")
    if isinstance(recorded, list) and len(recorded) == 2 and isinstance(recorded[0], str):
        out["on_failure"] = _dumps(meta.pop("on_failure"))
    return out


def _pages(bind: Any, table: Any, keys: tuple[Any, ...], wanted: tuple[str, ...]) -> Iterator[tuple[Any, dict]]:
    """``(primary key, decoded meta)`` of the rows whose meta has one of the ``wanted`` keys."""
    # the LIKE only narrows the candidates; each meta is decoded and tested exactly
    narrow = sa.or_(*(table.c.meta.like(f'%"{key}"%') for key in wanted))
    for row in _rows(bind, table, keys, narrow):
        meta = _meta(row.meta)
        if any(key in meta for key in wanted):
            yield tuple(row[:len(keys)]), meta


def _rows(bind: Any, table: Any, keys: tuple[Any, ...], where: Any) -> Iterator[Any]:
    """Rows matching ``where``, read in primary-key order a page at a time (a big history fits)."""
    after: tuple[Any, ...] | None = None
    while True:
        named = {key.name for key in keys}
        query = sa.select(*keys, *(c for c in table.c if c.name not in named)).where(where)
        if after is not None:
            query = query.where(sa.tuple_(*keys) > sa.tuple_(*after) if len(keys) > 1 else keys[0] > after[0])
        page = bind.execute(query.order_by(*keys).limit(PAGE)).all()
        if not page:
            return
        yield from page
        after = tuple(page[-1][:len(keys)])


def _meta(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _iso(when: Any) -> str | None:
    if isinstance(when, str):
        return when
    return when.isoformat() if when is not None else None


def _parse(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
