"""The SQL jobboard's tables, in the logbook database (same ``Base`` as the logbook schema).

Alembic revision ``0002_jobs`` creates them; every change here needs a new revision.

* ``celeryflow_jobs``: the jobs on every board of the database (``board`` is the
  board's namespace). ``seq`` (autoincrement) gives FIFO order within a
  priority; ``priority`` is 0 (VERY_HIGH) … 4 (VERY_LOW), so
  ``ORDER BY priority, seq`` is the board's order. A claim is ``owner`` plus
  ``claim_expires`` (epoch milliseconds; ``NULL`` = never expires), taken with a
  compare-and-set ``UPDATE … WHERE owner IS NULL OR claim_expires <= :now``.
* ``celeryflow_jobs_trash``: jobs trashed by a conductor or found corrupt, with
  the reason, kept for inspection.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from celeryflow.persistence.tables import NAME_LEN, UUID_LEN, Base, LongText, utcnow

_SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class JobRow(Base):
    __tablename__ = "celeryflow_jobs"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN), unique=True)
    board: Mapped[str] = mapped_column(String(NAME_LEN))
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    #: JSON (celeryflow.serialization); kept as text so a corrupt value can be trashed, not crash a read.
    details: Mapped[str | None] = mapped_column(LongText, nullable=True)
    priority: Mapped[int] = mapped_column(SmallInteger, default=2)
    flow_uuid: Mapped[str | None] = mapped_column(String(UUID_LEN), nullable=True)
    book_uuid: Mapped[str | None] = mapped_column(String(UUID_LEN), nullable=True)
    book_name: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    #: epoch milliseconds (the claimer's clock); NULL while unclaimed or for a claim that never expires.
    claim_expires: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: how many times the job was claimed (a job claimed over and over is worth a look).
    claims: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_celeryflow_jobs_board_order", "board", "priority", "seq"),)


class TrashedJobRow(Base):
    __tablename__ = "celeryflow_jobs_trash"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN))
    board: Mapped[str] = mapped_column(String(NAME_LEN))
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    details: Mapped[str | None] = mapped_column(LongText, nullable=True)
    priority: Mapped[int] = mapped_column(SmallInteger, default=2)
    flow_uuid: Mapped[str | None] = mapped_column(String(UUID_LEN), nullable=True)
    book_uuid: Mapped[str | None] = mapped_column(String(UUID_LEN), nullable=True)
    book_name: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    trashed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    trashed_by: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    reason: Mapped[str | None] = mapped_column(LongText, nullable=True)

    __table_args__ = (Index("ix_celeryflow_jobs_trash_board", "board", "seq"),)


__all__ = ["JobRow", "TrashedJobRow"]
