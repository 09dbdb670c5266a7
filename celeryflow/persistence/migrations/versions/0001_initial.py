"""The initial logbook schema: logbooks, flows, atoms, events.

Revision ID: 0001
Revises:
Create Date: 2024-01-01

Migrations are frozen snapshots: types are defined here, never imported from
celeryflow.persistence.tables (that module moves on; this revision must not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# MySQL's TEXT is 64 KiB; results and specs can be larger.
LONG_TEXT = sa.Text().with_variant(sa.Text(length=2**32 - 1), "mysql", "mariadb")
UUID = sa.String(36)
NAME = sa.String(255)
STATE = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "celeryflow_logbooks",
        sa.Column("uuid", UUID, primary_key=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("meta", LONG_TEXT, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "celeryflow_flows",
        sa.Column("uuid", UUID, primary_key=True),
        sa.Column(
            "logbook_uuid",
            UUID,
            sa.ForeignKey("celeryflow_logbooks.uuid", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("name", NAME, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("spec", LONG_TEXT, nullable=True),
        sa.Column("store", LONG_TEXT, nullable=True),
        sa.Column("failures", LONG_TEXT, nullable=True),
        sa.Column("meta", LONG_TEXT, nullable=True),
        sa.Column("outstanding", sa.Integer(), nullable=False),
        sa.Column("owner", NAME, nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("progress_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_celeryflow_flows_state_progress", "celeryflow_flows", ["state", "progress_at"])
    op.create_index("ix_celeryflow_flows_logbook", "celeryflow_flows", ["logbook_uuid"])
    op.create_index("ix_celeryflow_flows_created", "celeryflow_flows", ["created_at"])
    op.create_table(
        "celeryflow_atoms",
        sa.Column(
            "flow_uuid",
            UUID,
            sa.ForeignKey("celeryflow_flows.uuid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", NAME, primary_key=True),
        sa.Column("uuid", UUID, nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("intention", sa.String(16), nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("rwaiting", sa.Integer(), nullable=False),
        sa.Column("result", LONG_TEXT, nullable=True),
        sa.Column("failure", LONG_TEXT, nullable=True),
        sa.Column("revert_result", LONG_TEXT, nullable=True),
        sa.Column("revert_failure", LONG_TEXT, nullable=True),
        sa.Column("history", LONG_TEXT, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("meta", LONG_TEXT, nullable=True),
        sa.Column("worker", NAME, nullable=True),
        sa.Column("queued_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_celeryflow_atoms_flow_state", "celeryflow_atoms", ["flow_uuid", "state"])
    op.create_index("ix_celeryflow_atoms_state_heartbeat", "celeryflow_atoms", ["state", "heartbeat_at"])
    op.create_table(
        "celeryflow_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "flow_uuid",
            UUID,
            sa.ForeignKey("celeryflow_flows.uuid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("atom_name", NAME, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("old_state", STATE, nullable=True),
        sa.Column("new_state", STATE, nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("worker", NAME, nullable=True),
        sa.Column("details", LONG_TEXT, nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_celeryflow_events_flow_id", "celeryflow_events", ["flow_uuid", "id"])


def downgrade() -> None:
    op.drop_table("celeryflow_events")
    op.drop_table("celeryflow_atoms")
    op.drop_table("celeryflow_flows")
    op.drop_table("celeryflow_logbooks")
