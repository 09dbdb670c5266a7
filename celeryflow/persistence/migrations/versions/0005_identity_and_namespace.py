"""The logbook's own identity, and the deployment (namespace) each flow belongs to.

* ``celeryflow_identity``: facts about the logbook written once, when this revision
  runs. Its ``"logbook_id"`` row is a random id: every process that opens the same
  database, whatever it calls it (``postgresql://`` or ``postgresql+psycopg://``, a
  host name or an address, with or without a password), reads the same id, and the
  id says nothing about the URL (messages carry it, see ``runtime.backends``).
* ``celeryflow_flows.namespace``: the deployment that started the flow
  (``CELERYFLOW_NAMESPACE``, default ``"default"``). Sweeps and conductors re-drive
  only their own deployment's flows: two deployments may share one logbook
  database, each with its own broker and workers. Existing flows get ``"default"``.
* ``celeryflow_atoms.wait_reason``: why a queued atom is not running (a worker lacks its
  code: ``runtime.missing_code``), shown by ``flows show`` and ``top``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


#: as tables.LongText: MySQL's TEXT stops at 64 KiB
LONG_TEXT = sa.Text().with_variant(sa.Text(length=2**32 - 1), "mysql", "mariadb")


def upgrade() -> None:
    identity = op.create_table(
        "celeryflow_identity",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.bulk_insert(identity, [{"name": "logbook_id", "value": uuid.uuid4().hex}])
    op.add_column(
        "celeryflow_flows",
        sa.Column("namespace", sa.String(64), nullable=False, server_default="default"),
    )
    op.create_index("ix_celeryflow_flows_namespace_state", "celeryflow_flows", ["namespace", "state"])
    op.add_column("celeryflow_atoms", sa.Column("wait_reason", LONG_TEXT, nullable=True))


def downgrade() -> None:
    op.drop_index("ix_celeryflow_flows_namespace_state", table_name="celeryflow_flows")
    if op.get_bind().dialect.name == "sqlite":
        # in place (SQLite >= 3.35): a batch copy would cascade-delete the atoms (see 0004)
        op.execute("ALTER TABLE celeryflow_flows DROP COLUMN namespace")
        op.execute("ALTER TABLE celeryflow_atoms DROP COLUMN wait_reason")
    else:
        op.drop_column("celeryflow_flows", "namespace")
        op.drop_column("celeryflow_atoms", "wait_reason")
    op.drop_table("celeryflow_identity")
