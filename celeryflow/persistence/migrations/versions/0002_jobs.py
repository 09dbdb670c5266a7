"""The SQL jobboard: jobs and trashed jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2024-01-02

A frozen snapshot of celeryflow.jobs.backends.sql_tables (never imported here).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

LONG_TEXT = sa.Text().with_variant(sa.Text(length=2**32 - 1), "mysql", "mariadb")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UUID = sa.String(36)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "celeryflow_jobs",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", UUID, nullable=False, unique=True),
        sa.Column("board", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("details", LONG_TEXT, nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("flow_uuid", UUID, nullable=True),
        sa.Column("book_uuid", UUID, nullable=True),
        sa.Column("book_name", NAME, nullable=True),
        sa.Column("owner", NAME, nullable=True),
        sa.Column("claim_expires", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_celeryflow_jobs_board_order", "celeryflow_jobs", ["board", "priority", "seq"])
    op.create_table(
        "celeryflow_jobs_trash",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", UUID, nullable=False),
        sa.Column("board", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("details", LONG_TEXT, nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("flow_uuid", UUID, nullable=True),
        sa.Column("book_uuid", UUID, nullable=True),
        sa.Column("book_name", NAME, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("trashed_at", sa.DateTime(), nullable=False),
        sa.Column("trashed_by", NAME, nullable=True),
        sa.Column("reason", LONG_TEXT, nullable=True),
    )
    op.create_index("ix_celeryflow_jobs_trash_board", "celeryflow_jobs_trash", ["board", "seq"])


def downgrade() -> None:
    op.drop_table("celeryflow_jobs_trash")
    op.drop_table("celeryflow_jobs")
