"""The logbook schema: SQLAlchemy 2 typed ORM tables.

Alembic migrations (``celeryflow/persistence/migrations``) create and upgrade
this schema; every change here needs a new revision there.

Design notes (see docs/architecture.md):

* ``flow_details.epoch`` is the fencing token: bumped on every reclaim/resume;
  every write made on behalf of a message is guarded by ``epoch = :epoch``.
* ``flow_details.held`` counts ready atoms kept back by the dispatch window
  (a flow with 10,000 ready atoms does not put 10,000 messages on the broker
  at once); they are queued as the flow's outstanding count falls.
* ``flow_details.outstanding`` counts atoms dispatched (queued or running) and
  not yet finished; a flow whose phase is over and whose outstanding is zero is
  finished, or ready for compensation. It is only changed while the flow row
  is locked.
* ``atom_details.waiting`` counts predecessors not yet done (the logbook join
  counter); ``rwaiting`` counts executed successors not yet reverted.
* ``atom_details.queued`` marks an atom whose message is on the broker; the
  sweep re-dispatches queued atoms whose message was lost.
* ``atom_details.claim_token`` fences one claim (one execution or revert), not a
  process: ``begin`` writes a fresh token, and ``finish``, progress reports and
  heartbeats only touch the row while it still carries theirs. Two executions in
  one process (a thread or gevent pool, the embedded default, a retry round) are
  told apart; the worker id (``host:pid``) is only for display.
* The scheduler's bookkeeping has typed columns (``flow_details.retry_scopes``,
  ``revert_scope``, ``revert_plan``, ``revert_failed``, ``resends``; ``atom_details.lost_*``,
  ``verdicts``, ``on_failure``), read and written only through
  :mod:`celeryflow.runtime.bookkeeping`; the ``meta`` columns hold only what users,
  listeners and engine options put there. ``scope_retrying`` is derived from
  ``retry_scopes`` in that one place.
* Liveness timestamps (``heartbeat_at``, ``queued_at``, ``started_at``,
  ``progress_at``) are written with :func:`db_utcnow`, the database's clock, and the
  sweep compares them with the same clock: machines with skewed clocks never make
  a live worker look dead.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    literal,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# MySQL's TEXT is 64 KiB; results and specs can be larger.
LongText = Text().with_variant(Text(length=2**32 - 1), "mysql", "mariadb")
UUID_LEN = 36
NAME_LEN = 255
NAMESPACE_LEN = 64
#: the namespace of a deployment that sets none (CELERYFLOW_NAMESPACE)
DEFAULT_NAMESPACE = "default"
#: length of a claim token (uuid4 hex)
TOKEN_LEN = 32


def utcnow() -> dt.datetime:
    """This machine's clock (naive UTC): for display and records, never for liveness."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class db_utcnow(FunctionElement[dt.datetime]):
    """The database's clock, naive UTC, as a SQL expression (compiled per dialect).

    Liveness is judged by comparing timestamps written by many machines with the
    sweep's "now": only one clock, the database's, keeps that comparison honest.
    ``db_utcnow(seconds)`` is that clock plus ``seconds`` (a bound parameter).
    """

    type = DateTime()
    inherit_cache = True
    name = "db_utcnow"

    def __init__(self, seconds: float | None = None) -> None:
        args = () if seconds is None else (literal(float(seconds), Float()),)
        super().__init__(*args)


def _offset(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str | None:
    clauses = list(element.clauses)
    return compiler.process(clauses[0], **kw) if clauses else None


@compiles(db_utcnow)
def _db_utcnow_default(element: db_utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = _offset(element, compiler, **kw)
    return "CURRENT_TIMESTAMP" if seconds is None else f"(CURRENT_TIMESTAMP + {seconds} * INTERVAL '1' SECOND)"


@compiles(db_utcnow, "postgresql")
def _db_utcnow_postgresql(element: db_utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): a long transaction must not write a heartbeat from its start
    seconds = _offset(element, compiler, **kw)
    now = "timezone('utc', clock_timestamp())"
    return now if seconds is None else f"({now} + make_interval(secs => {seconds}))"


@compiles(db_utcnow, "mysql")
@compiles(db_utcnow, "mariadb")
def _db_utcnow_mysql(element: db_utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = _offset(element, compiler, **kw)
    now = "UTC_TIMESTAMP(6)"
    return now if seconds is None else f"({now} + INTERVAL ROUND({seconds} * 1000000) MICROSECOND)"


@compiles(db_utcnow, "sqlite")
def _db_utcnow_sqlite(element: db_utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores DateTime on SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' (text, compared as
    # text): %f gives SS.SSS, so pad to six digits to sort and parse exactly like the stored values.
    seconds = _offset(element, compiler, **kw)
    modifier = "" if seconds is None else f", ({seconds}) || ' seconds'"
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now'{modifier}) || '000')"


class db_epoch_ms(FunctionElement[int]):
    """The database's clock in epoch milliseconds (the jobboards' claim expiry), as SQL."""

    type = BigInteger()
    inherit_cache = True
    name = "db_epoch_ms"


@compiles(db_epoch_ms)
def _db_epoch_ms_default(element: db_epoch_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000 AS BIGINT)"


@compiles(db_epoch_ms, "postgresql")
def _db_epoch_ms_postgresql(element: db_epoch_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(floor(extract(epoch from clock_timestamp()) * 1000) AS BIGINT)"


@compiles(db_epoch_ms, "mysql")
@compiles(db_epoch_ms, "mariadb")
def _db_epoch_ms_mysql(element: db_epoch_ms, compiler: SQLCompiler, **kw: Any) -> str:
    # independent of the session's time zone (UNIX_TIMESTAMP(NOW()) is not, around DST changes)
    return "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)"


@compiles(db_epoch_ms, "sqlite")
def _db_epoch_ms_sqlite(element: db_epoch_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def db_now(session_or_connection: Any) -> dt.datetime:
    """Read the database's clock (naive UTC) in one round trip."""
    value = session_or_connection.execute(select(db_utcnow())).scalar()
    if isinstance(value, str):  # a driver that hands back text
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class LogBookRow(Base):
    __tablename__ = "celeryflow_logbooks"

    uuid: Mapped[str] = mapped_column(String(UUID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    meta: Mapped[str | None] = mapped_column(LongText, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class FlowRow(Base):
    __tablename__ = "celeryflow_flows"

    uuid: Mapped[str] = mapped_column(String(UUID_LEN), primary_key=True)
    logbook_uuid: Mapped[str | None] = mapped_column(
        String(UUID_LEN), ForeignKey("celeryflow_logbooks.uuid", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    state: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON: how to rebuild the flow (structure, atom classes, ctor args) and its compilation.
    #: Deferred: it grows with the flow, and the per-atom transactions must not read it.
    spec: Mapped[str | None] = mapped_column(LongText, nullable=True, deferred=True)
    #: JSON: the flow store (inputs).
    store: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: JSON: {atom name: failure dict} that started the current compensation.
    failures: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: JSON: engine options and free-form metadata (users' own: the scheduler keeps nothing here).
    meta: Mapped[str | None] = mapped_column(LongText, nullable=True)
    outstanding: Mapped[int] = mapped_column(Integer, default=0)
    #: ready atoms not yet queued because the dispatch window was full (CELERYFLOW_DISPATCH_WINDOW):
    #: queued as the flow's in-flight count falls (runtime.window.refill).
    held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: a retry scope of the flow is being retried (``retry_scopes`` is not empty): the cheap
    #: test every message makes (the fast path reads it, never ``retry_scopes``). Written only
    #: with ``retry_scopes`` (runtime.bookkeeping.set_retry_scopes).
    scope_retrying: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The scheduler's bookkeeping, in columns of its own (migration 0006; it used to share the
    # meta JSON with user options, and was searched as text): read and written through
    # runtime.bookkeeping.
    #: JSON ``{controller: {"countdown": s, "plan": {atom: [atoms reverted after it]}}}``: the
    #: retry scopes being reverted for a retry (NULL: none).
    retry_scopes: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: JSON list: the atoms the current compensation is restricted to (NULL: the whole flow).
    revert_scope: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: JSON ``{atom: [atoms reverted after it]}``: the current compensation's plan (NULL: not
    #: planned yet; a quiet REVERTING flow without one plans it).
    revert_plan: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: a revert of the current compensation failed: it ends FAILURE, and what the failed atom
    #: depends on is not reverted (unsafe under a failed compensation).
    revert_failed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: the sweep's resends of lost messages while the flow made no progress (back-off), and
    #: the flow's ``progress_at`` when it last resent: progress since then starts over.
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resend_progress_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: the deployment that started the flow (CELERYFLOW_NAMESPACE): only its sweeps and
    #: conductors re-drive it (two deployments may share one logbook database).
    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LEN), default=DEFAULT_NAMESPACE,
                                           server_default=DEFAULT_NAMESPACE)
    #: who last drove the flow (engine, conductor) and when it last showed life.
    owner: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: when the flow last made progress (any transition): the sweep's staleness clock.
    progress_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (
        # the sweep looks for active flows that stopped progressing: O(stalled), not O(history)
        Index("ix_celeryflow_flows_state_progress", "state", "progress_at"),
        Index("ix_celeryflow_flows_logbook", "logbook_uuid"),
        Index("ix_celeryflow_flows_created", "created_at"),
        Index("ix_celeryflow_flows_namespace_state", "namespace", "state"),
        # the web view's search by flow name, newest first (celeryflow.web.queries)
        Index("ix_celeryflow_flows_name_created", "name", "created_at"),
    )


class AtomRow(Base):
    __tablename__ = "celeryflow_atoms"

    flow_uuid: Mapped[str] = mapped_column(
        String(UUID_LEN), ForeignKey("celeryflow_flows.uuid", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "task" | "retry"
    state: Mapped[str] = mapped_column(String(32))
    intention: Mapped[str] = mapped_column(String(16))
    queued: Mapped[bool] = mapped_column(Boolean, default=False)
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    rwaiting: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(LongText, nullable=True)
    failure: Mapped[str | None] = mapped_column(LongText, nullable=True)
    revert_result: Mapped[str | None] = mapped_column(LongText, nullable=True)
    revert_failure: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: JSON list of [value, {atom: failure}] for retry controllers.
    history: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: how many times execution started (deliveries that reached the atom): poison detection.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    #: JSON: free-form metadata (users' and listeners'; the scheduler keeps nothing here).
    meta: Mapped[str | None] = mapped_column(LongText, nullable=True)
    #: worker deaths the sweep saw while the atom executed / reverted: at max_deliveries
    #: it fails with WorkerLost instead of killing one more worker (runtime.reclaim).
    lost_execute: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lost_revert: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: JSON ``{link id: [digest of the input, verdict]}``: the deciders on the atom's outgoing
    #: links, asked outside every lock and recorded here (runtime.verdicts). Deferred, as
    #: ``on_failure``: read by their own SELECTs, never with the loaded rows.
    verdicts: Mapped[str | None] = mapped_column(LongText, nullable=True, deferred=True)
    #: JSON ``[digest of the input, verdict]``: a retry controller's last ``on_failure``
    #: answer, reused for the same input (runtime.scope_decisions).
    on_failure: Mapped[str | None] = mapped_column(LongText, nullable=True, deferred=True)
    worker: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    #: the current claim (execute or revert): fresh at every ``begin``, required by finish,
    #: progress and heartbeats (see the module docstring).
    claim_token: Mapped[str | None] = mapped_column(String(TOKEN_LEN), nullable=True)
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: JSON: why the atom is waiting, queued, instead of running (a worker without its code:
    #: runtime.missing_code), since when and for which claim. Shown while it is queued.
    wait_reason: Mapped[str | None] = mapped_column(LongText, nullable=True, deferred=True)

    __table_args__ = (
        Index("ix_celeryflow_atoms_flow_state", "flow_uuid", "state"),
        # the sweep finds running atoms with a stale heartbeat
        Index("ix_celeryflow_atoms_state_heartbeat", "state", "heartbeat_at"),
        # the web view's search by atom name across flows (the primary key starts with the flow):
        # it reads the flow ids from the index alone
        Index("ix_celeryflow_atoms_name_flow", "name", "flow_uuid"),
    )


class LivenessRow(Base):
    """Facts about the logbook's liveness that every process shares (one row per fact).

    The row ``"pulse"`` is written by every heartbeat batch and every sweep: ``at`` is the
    last time anyone could write, ``gap_at`` the last time a writer found ``at`` older than
    its silence threshold (nobody could write for a while: an outage). Any sweeper then
    gives heartbeats a grace period after ``gap_at``, whether or not it saw the outage
    itself (see :mod:`celeryflow.runtime.outage`).
    """

    __tablename__ = "celeryflow_liveness"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    gap_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class IdentityRow(Base):
    """Facts about the logbook itself, written once with the schema (migration 0005).

    The row ``"logbook_id"`` identifies the database whatever URL spells it: messages
    carry it (see :mod:`celeryflow.runtime.backends`), never the URL or a hash of it.
    """

    __tablename__ = "celeryflow_identity"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class EventRow(Base):
    """The play-by-play: one row per transition or progress report, in commit order per flow."""

    __tablename__ = "celeryflow_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    flow_uuid: Mapped[str] = mapped_column(
        String(UUID_LEN), ForeignKey("celeryflow_flows.uuid", ondelete="CASCADE")
    )
    atom_name: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # "flow" | "atom" | "progress" | "retry"
    old_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    new_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    details: Mapped[str | None] = mapped_column(LongText, nullable=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_celeryflow_events_flow_id", "flow_uuid", "id"),)
