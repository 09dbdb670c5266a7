"""Flows: the count of ready atoms held back by the dispatch window.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a plain ALTER TABLE ... ADD COLUMN everywhere (SQLite too: a constant default needs no copy)
    op.add_column("celeryflow_flows", sa.Column("held", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place. Alembic's batch mode would copy the table and
        # drop the old one, and with foreign keys on, dropping celeryflow_flows cascades to the
        # atoms and events of every flow.
        op.execute("ALTER TABLE celeryflow_flows DROP COLUMN held")
    else:
        op.drop_column("celeryflow_flows", "held")
