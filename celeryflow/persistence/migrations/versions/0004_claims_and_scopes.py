"""Claim tokens, a typed retry-scope flag, and the logbook's liveness pulse.

* ``celeryflow_atoms.claim_token``: the fencing token of one claim (one execution
  or revert), checked by finish, progress reports and heartbeats; the worker id
  alone cannot tell two executions of one process apart.
* ``celeryflow_flows.scope_retrying``: replaces a substring test on the flow's
  ``meta`` JSON (where user options also live). Flows that are mid-retry when the
  schema is upgraded get it from their meta, decoded exactly.
* ``celeryflow_liveness``: facts every process shares about whether the logbook
  could be written (the ``"pulse"`` row: last write, last gap), so the outage grace
  period holds for any sweeper, not only one that saw the outage.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

#: flows whose retry bookkeeping may matter (terminal flows never look at it again)
_ACTIVE = ("RUNNING", "REVERTING", "SUSPENDING", "SUSPENDED")


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN everywhere (SQLite too: a NULL or constant default needs no copy)
    op.add_column("celeryflow_atoms", sa.Column("claim_token", sa.String(32), nullable=True))
    op.add_column(
        "celeryflow_flows", sa.Column("scope_retrying", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "celeryflow_liveness",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.Column("gap_at", sa.DateTime(), nullable=True),
    )
    op.execute("INSERT INTO celeryflow_liveness (name) VALUES ('pulse')")
    bind = op.get_bind()
    flows = sa.table("celeryflow_flows", sa.column("uuid", sa.String), sa.column("state", sa.String),
                     sa.column("meta", sa.Text), sa.column("scope_retrying", sa.Boolean))
    # the LIKE only narrows the candidates; each one's meta is decoded and tested exactly
    rows = bind.execute(
        sa.select(flows.c.uuid, flows.c.meta).where(flows.c.state.in_(_ACTIVE), flows.c.meta.like('%"retrying"%'))
    ).all()
    for uuid, meta in rows:
        try:
            decoded = json.loads(meta or "{}")
        except ValueError:
            continue
        if isinstance(decoded, dict) and decoded.get("retrying"):
            bind.execute(sa.update(flows).where(flows.c.uuid == uuid).values(scope_retrying=True))


def downgrade() -> None:
    op.drop_table("celeryflow_liveness")
    if op.get_bind().dialect.name == "sqlite":
        # In place (SQLite >= 3.35): batch mode would copy and drop the tables, and with foreign
        # keys on, dropping celeryflow_flows cascades to the atoms and events of every flow.
        op.execute("ALTER TABLE celeryflow_atoms DROP COLUMN claim_token")
        op.execute("ALTER TABLE celeryflow_flows DROP COLUMN scope_retrying")
    else:
        op.drop_column("celeryflow_atoms", "claim_token")
        op.drop_column("celeryflow_flows", "scope_retrying")
