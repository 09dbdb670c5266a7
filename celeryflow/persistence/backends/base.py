"""The persistence backend contract, and the TaskFlow-style logbook API built on it.

A :class:`Backend` owns an engine and its pool for one database URL. Everything
else in celeryflow reads and writes the logbook through :meth:`Backend.run`
(a retried transaction) or :meth:`Backend.transaction`, with
:meth:`Backend.lock_flow` to serialize work on one flow.

The logbook methods (``save_logbook``, ``get_flow_details``, ``prune`` ...)
are written once here against ``run()`` and the ORM tables (their row-level
work is in ``detail_rows``): every backend is SQL underneath (``memory://`` is
in-memory SQLite). TaskFlow's connection object is in ``connection`` and the
masked URL type in ``urls``; their names are re-exported here.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, delete, exists, select, true
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.orm import Session

from celeryflow.exceptions import NotFound, StorageFailure
from celeryflow.persistence import migrate
from celeryflow.persistence.backends.connection import Connection
from celeryflow.persistence.backends.detail_rows import CHUNK, chunks, load_flows, load_logbook, merge_atom, merge_flow
from celeryflow.persistence.backends.urls import BackendURL, mask_url
from celeryflow.persistence.models import AtomDetail, FlowDetail, LogBook
from celeryflow.persistence.rows import FlowState, write_pending
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, IdentityRow, LogBookRow, utcnow
from celeryflow.states import FLOW_TERMINAL

T = TypeVar("T")


def _read_logbook_id(session: Session) -> str:
    value = session.scalar(select(IdentityRow.value).where(IdentityRow.name == "logbook_id"))
    if not value:
        raise StorageFailure(
            "The logbook has no identity row (celeryflow_identity 'logbook_id'): its schema was not "
            "created by celeryflow's migrations; run `celeryflow db upgrade`"
        )
    return str(value)


class Backend(abc.ABC):
    """A logbook database (one engine and pool per URL per process; see ``backends.fetch``).

    Attributes:
        url: the URL as configured (``repr`` masks the password).
        auto_migrate: whether first use upgrades the schema (else it only checks it).
    """

    url: BackendURL
    auto_migrate: bool

    @property
    @abc.abstractmethod
    def engine(self) -> Engine:
        """The SQLAlchemy engine."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the backend refuses all work from then on)."""
        return False

    @abc.abstractmethod
    def connect(self, *, readonly: bool = False) -> AbstractContextManager[SAConnection]:
        """A raw connection for administration (migrations); no schema check, no retries.

        Args:
            readonly: its transactions will not write (SQLite: no write lock).

        Raises:
            StorageFailure: the database failed (the driver error is chained).
        """

    @abc.abstractmethod
    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Session]:
        """A session in a transaction: committed on exit, rolled back on error.

        Args:
            readonly: the block will not write (SQLite then begins a deferred
                transaction, which does not take the write lock).

        Raises:
            StorageFailure: the database failed (the driver error is chained).
        """

    @abc.abstractmethod
    def run(self, fn: Callable[[Session], T], *, attempts: int = 5, readonly: bool = False) -> T:
        """Run ``fn(session)`` in a transaction, retrying transient failures.

        ``fn`` may run several times: it must be safe to re-run (no side effects
        outside the session). It may even run again after its transaction committed:
        a connection that dies during COMMIT (a restart, a failover, a dropped socket)
        leaves the outcome unknown, and the retry on a fresh connection may find the
        earlier attempt's writes. So every ``fn`` must be idempotent: recognise its own
        earlier commit (a compare-and-set that lost to exactly its own outcome, a row
        that is already there as it would write it) and answer as that attempt would have.

        Raises:
            StorageFailure: a non-transient failure, or ``attempts`` transient ones.
        """

    def run_core(self, fn: Callable[[SAConnection], T], *, attempts: int = 5, readonly: bool = False) -> T:
        """Run ``fn(connection)`` in a transaction (SQLAlchemy Core, no ORM session), retrying like :meth:`run`.

        For the hottest transactions, whose statements are built once; ``fn`` can hand
        the connection to :func:`on_connection` for ORM work in the same transaction.
        """
        return self.run(lambda session: fn(session.connection()), attempts=attempts, readonly=readonly)

    def run_autocommit(self, fn: Callable[[SAConnection], T], *, attempts: int = 5) -> T:
        """Run ``fn(connection)`` with every statement its own transaction (no BEGIN/COMMIT).

        For single-statement transactions on databases that can guard, write and read in
        one statement (PostgreSQL's data-modifying CTEs). By default a plain transaction.
        """
        return self.run_core(fn, attempts=attempts)

    @abc.abstractmethod
    def lock_flow(self, session: Session, flow_uuid: str, *, shared: bool = False) -> FlowState | None:
        r"""Select the flow row, locked until the transaction ends (``None`` if absent).

        Its attribute writes are guarded Core ``UPDATE``\ s (:mod:`celeryflow.persistence.rows`),
        written before the session's next statement and at commit.

        Args:
            session: the session of the current transaction.
            flow_uuid: the flow to lock.
            shared: a shared (read) lock instead of an exclusive one.
        """

    @abc.abstractmethod
    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest revision (safe from several processes)."""

    @property
    def logbook_id(self) -> str:
        """The logbook's own id, stored in the database when its schema was created.

        The same database has the same id whatever URL reaches it (another driver
        name, host alias or password), and the id reveals nothing about the URL:
        messages carry it to tell workers which logbook they belong to. Read once
        per backend (it never changes).

        Raises:
            StorageFailure: the database failed or lacks the identity row.
        """
        found: str | None = self.__dict__.get("_logbook_id")
        if found is None:
            found = self.run(_read_logbook_id, readonly=True)
            self.__dict__["_logbook_id"] = found
        return found

    @abc.abstractmethod
    def dispose(self) -> None:
        """Close pooled connections; the backend stays usable (it reconnects on demand)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Dispose and forget this backend; ``fetch`` of the same URL then builds a new one."""

    def after_fork(self) -> None:
        """Called in a forked child process (Celery prefork): drop inherited connections."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.masked}>"

    # -- TaskFlow-compatible logbook API -------------------------------------------------

    def get_connection(self) -> Connection:
        """A TaskFlow-style connection object (closing it leaves the shared pool alone)."""
        return Connection(self)

    def validate(self) -> None:
        """Check the database is reachable and its schema is current (upgrading it if allowed)."""
        self.run(lambda session: None, readonly=True)
        migrate.check(self)

    def save_logbook(self, book: LogBook) -> LogBook:
        """Create or update ``book``, its flow details and their atom details; return it as stored."""

        def save(session: Session) -> LogBook:
            now = utcnow()
            values = book.to_row_values()
            row = session.get(LogBookRow, book.uuid)
            if row is None:
                session.add(LogBookRow(**values, created_at=now, updated_at=now))
            else:
                row.name, row.meta, row.updated_at = values["name"], values["meta"], now
            session.flush()
            for fd in book:
                fd.logbook_uuid = book.uuid
                merge_flow(session, fd, now)
            return load_logbook(session, book.uuid, lazy=False)

        return self.run(save)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> LogBook:
        """The logbook with that uuid (``lazy``: without its flow details).

        Raises:
            NotFound: no such logbook.
        """
        return self.run(lambda session: load_logbook(session, book_uuid, lazy=lazy), readonly=True)

    def get_logbooks(self, lazy: bool = False) -> list[LogBook]:
        """Every logbook, oldest first."""

        def load(session: Session) -> list[LogBook]:
            rows = session.scalars(select(LogBookRow).order_by(LogBookRow.created_at)).all()
            flows: dict[str | None, list[FlowDetail]] = defaultdict(list)
            if not lazy:
                for chunk in chunks([r.uuid for r in rows]):
                    for fd in load_flows(session, FlowRow.logbook_uuid.in_(chunk), lazy=False):
                        flows[fd.logbook_uuid].append(fd)
            return [LogBook.from_row(row, flows[row.uuid]) for row in rows]

        return self.run(load, readonly=True)

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a logbook with its flows, atoms and events.

        Raises:
            NotFound: no such logbook.
        """

        def destroy(session: Session) -> None:
            result = cast(
                CursorResult[Any], session.execute(delete(LogBookRow).where(LogBookRow.uuid == book_uuid))
            )
            if result.rowcount == 0:
                raise NotFound(f"No logbook {book_uuid!r} in {self.url.masked}")

        self.run(destroy)

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> FlowDetail:
        """The flow detail with that uuid (``lazy``: without atom details).

        Raises:
            NotFound: no such flow.
        """

        def load(session: Session) -> FlowDetail:
            found = load_flows(session, FlowRow.uuid == flow_uuid, lazy=lazy)
            if not found:
                raise NotFound(f"No flow {flow_uuid!r} in {self.url.masked}")
            return found[0]

        return self.run(load, readonly=True)

    def get_atom_details(self, atom_uuid: str) -> AtomDetail:
        """The atom detail with that uuid.

        Raises:
            NotFound: no such atom.
        """
        return self.run(lambda s: AtomDetail.from_row(self._atom_row(s, atom_uuid)), readonly=True)

    def update_flow_details(self, fd: FlowDetail) -> FlowDetail:
        """Write an existing flow detail and its atom details; return it as stored.

        Raises:
            NotFound: the flow is not in the logbook.
        """

        def update(session: Session) -> FlowDetail:
            if session.get(FlowRow, fd.uuid) is None:
                raise NotFound(f"No flow {fd.uuid!r} in {self.url.masked}: save its logbook first")
            merge_flow(session, fd, utcnow())
            return load_flows(session, FlowRow.uuid == fd.uuid, lazy=False)[0]

        return self.run(update)

    def update_atom_details(self, ad: AtomDetail) -> AtomDetail:
        """Write an existing atom detail; return it as stored.

        Raises:
            NotFound: the atom is not in the logbook.
        """

        def update(session: Session) -> AtomDetail:
            row = self._atom_row(session, ad.uuid)
            merge_atom(session, row.flow_uuid, ad, row)
            return AtomDetail.from_row(row)

        return self.run(update)

    def clear_all(self) -> None:
        """Delete every logbook, flow, atom and event."""

        def clear(session: Session) -> None:
            for table in (EventRow, AtomRow, FlowRow, LogBookRow):
                session.execute(delete(table))

        self.run(clear)

    def list_flows(
        self,
        state: str | Iterable[str] | None = None,
        older_than: dt.timedelta | None = None,
        newer_than: dt.timedelta | None = None,
        limit: int | None = 100,
        lazy: bool = True,
    ) -> list[FlowDetail]:
        """Flow details, newest first.

        Args:
            state: only flows in this state (or any of these states).
            older_than: only flows created longer ago than this.
            newer_than: only flows created more recently than this.
            limit: at most this many (``None``: all).
            lazy: skip loading atom details.
        """
        now = utcnow()
        where: list[ColumnElement[bool]] = [true()]
        if state is not None:
            where.append(FlowRow.state.in_([state] if isinstance(state, str) else list(state)))
        if older_than is not None:
            where.append(FlowRow.created_at < now - older_than)
        if newer_than is not None:
            where.append(FlowRow.created_at > now - newer_than)

        def load(session: Session) -> list[FlowDetail]:
            return load_flows(session, *where, lazy=lazy, newest_first=True, limit=limit)

        return self.run(load, readonly=True)

    def prune(
        self, older_than: dt.timedelta, states: Collection[str] = FLOW_TERMINAL, *, batch_size: int = CHUNK
    ) -> int:
        """Delete flows in ``states`` whose last progress is older than ``older_than``.

        Their atoms and events go with them (foreign-key cascade), and so do
        their logbooks once empty. Works in batches of ``batch_size`` flows, one
        short transaction each, so a big backlog never holds locks for long.

        Returns:
            how many flows were deleted.
        """
        cutoff = utcnow() - older_than
        wanted = sorted(states)
        total = 0
        while True:
            deleted = self.run(lambda session: self._prune_batch(session, cutoff, wanted, batch_size))
            total += deleted
            if deleted < batch_size:
                return total

    def _prune_batch(self, session: Session, cutoff: dt.datetime, wanted: Sequence[str], limit: int) -> int:
        query = (
            select(FlowRow.uuid, FlowRow.logbook_uuid)
            .where(FlowRow.state.in_(wanted), FlowRow.progress_at < cutoff)
            .order_by(FlowRow.progress_at)
            .limit(limit)
        )
        if self.engine.dialect.name != "sqlite":
            # a flow being resumed right now is locked: leave it, it is no longer finished
            query = query.with_for_update(skip_locked=True)
        victims = session.execute(query).all()
        if not victims:
            return 0
        session.execute(delete(FlowRow).where(FlowRow.uuid.in_([v.uuid for v in victims])))
        books = {v.logbook_uuid for v in victims if v.logbook_uuid is not None}
        if books:
            has_flows = exists().where(FlowRow.logbook_uuid == LogBookRow.uuid)
            session.execute(delete(LogBookRow).where(LogBookRow.uuid.in_(books), ~has_flows))
        return len(victims)

    def _atom_row(self, session: Session, atom_uuid: str) -> AtomRow:
        row = session.scalars(select(AtomRow).where(AtomRow.uuid == atom_uuid)).one_or_none()
        if row is None:
            raise NotFound(f"No atom {atom_uuid!r} in {self.url.masked}")
        return row


def on_connection(conn: SAConnection, fn: Callable[[Session], T]) -> T:
    """Run ``fn(session)`` with an ORM session inside ``conn``'s transaction (flushed, not committed)."""
    session = Session(bind=conn, join_transaction_mode="rollback_only", expire_on_commit=False)
    try:
        out = fn(session)
        write_pending(session)
        session.flush()
        return out
    finally:
        session.close()


__all__ = ["Backend", "BackendURL", "Connection", "mask_url", "on_connection"]
