"""The general transactions' rows: read with Core, written back as guarded compare-and-set.

The scheduler's general path (failures, compensation, retry rounds, start, resume, suspend,
revert, the sweep's reclaim) and :class:`~celeryflow.engines.storage.Storage` read the flow row
(locked: :func:`lock_flow`) and the atom rows they need (:func:`load_atoms`) as tracked
objects, and change their attributes. Every change is written by one Core ``UPDATE`` per
row that names what it expects to find (the flow's state and epoch, the atom's state) and
must hit exactly one row: a miss raises :class:`~celeryflow.exceptions.StaleRow` instead of
overwriting what another writer did.

Pending changes go out before the session's next statement and before it commits (or, inside
a fast path's connection, when :func:`write_pending` is called), so reads in the same
transaction see them, as the ORM's autoflush did. No row is served from an identity map:
every load re-reads the database (a row loaded twice in one transaction is the same object,
refreshed in place).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Table, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.sql import ClauseElement

from celeryflow.exceptions import StaleRow
from celeryflow.persistence.tables import AtomRow, FlowRow

_KEY = "celeryflow.rows"

T = TypeVar("T", bound="_Tracked")


class _Tracked:
    """A row's values as loaded, its unwritten changes, and what its write expects."""

    TABLE: ClassVar[Table]
    KEY_COLUMNS: ClassVar[tuple[str, ...]]
    #: besides the key: the columns whose loaded values a write requires (someone else moved first otherwise)
    GUARD_COLUMNS: ClassVar[tuple[str, ...]]
    COLUMNS: ClassVar[frozenset[str]]
    #: the columns a load selects (the annotated ones, in order)
    SELECTED: ClassVar[tuple[Any, ...]]

    def __init__(self, pending: _Pending, values: Mapping[Any, Any]) -> None:
        object.__setattr__(self, "_pending", pending)
        object.__setattr__(self, "_changes", {})
        self._refresh(values)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [name for name in cls.__annotations__ if not name.isupper()]
        cls.COLUMNS = frozenset(names)
        cls.SELECTED = tuple(cls.TABLE.c[name] for name in names)

    def _refresh(self, values: Mapping[Any, Any]) -> None:
        self.__dict__.update(values)
        object.__setattr__(self, "_expected", {c: values[c] for c in (*self.KEY_COLUMNS, *self.GUARD_COLUMNS)})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.COLUMNS:
            raise AttributeError(f"{type(self).__name__} has no column {name!r}")
        self.__dict__[name] = value
        changes: dict[str, Any] = self.__dict__["_changes"]
        if not changes:
            self.__dict__["_pending"].dirty[id(self)] = self
        changes[name] = value

    def _where(self) -> list[Any]:
        expected: dict[str, Any] = self.__dict__["_expected"]
        return [self.TABLE.c[name] == value for name, value in expected.items()]

    def _write(self, session: Session) -> None:
        changes: dict[str, Any] = self.__dict__["_changes"]
        if not changes:
            return
        conn = session.connection()
        computed = [name for name, value in changes.items() if isinstance(value, ClauseElement)]
        stmt = update(self.TABLE).where(*self._where()).values(changes)
        returning = bool(computed) and conn.dialect.update_returning
        if returning:
            stmt = stmt.returning(*(self.TABLE.c[name] for name in computed))
        result = conn.execute(stmt)
        got = result.mappings().all() if returning else None
        count = len(got) if got is not None else result.rowcount
        if count != 1:
            raise StaleRow(
                f"{self.TABLE.name} row {self._describe()} was not as this transaction read it "
                f"(expected {self.__dict__['_expected']}); someone else moved first. "
                "This is a bug in celeryflow's locking: please report it with the log above")
        fresh = dict(changes)
        if computed:  # a SQL expression (the database's clock): read back what it wrote
            if got is None:
                keys = [self.TABLE.c[name] == self.__dict__["_expected"][name] for name in self.KEY_COLUMNS]
                got = conn.execute(select(*(self.TABLE.c[n] for n in computed)).where(*keys)).mappings().all()
            fresh.update(got[0])
        self.__dict__.update(fresh)
        expected: dict[str, Any] = self.__dict__["_expected"]
        for name in expected:
            if name in fresh:
                expected[name] = fresh[name]
        changes.clear()

    def _describe(self) -> str:
        return ", ".join(f"{name}={self.__dict__['_expected'][name]!r}" for name in self.KEY_COLUMNS)


class FlowState(_Tracked):
    """The flow row as the transaction read it (locked); attribute writes are guarded by state and epoch.

    Its columns are :class:`~celeryflow.persistence.tables.FlowRow`'s, less the deferred
    ``spec`` (it grows with the flow; read on its own).
    """

    TABLE = FlowRow.__table__  # type: ignore[assignment]
    KEY_COLUMNS = ("uuid",)
    GUARD_COLUMNS = ("state", "epoch")

    uuid: str
    logbook_uuid: str | None
    name: str
    state: str
    epoch: int
    store: str | None
    failures: str | None
    meta: str | None
    outstanding: int
    held: int
    scope_retrying: bool
    retry_scopes: str | None
    revert_scope: str | None
    revert_plan: str | None
    revert_failed: bool
    resends: int
    resend_progress_at: dt.datetime | None
    namespace: str
    owner: str | None
    heartbeat_at: dt.datetime | None
    progress_at: Any  # a datetime, or the database's clock (db_utcnow()) until written
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class AtomState(_Tracked):
    """An atom row as the transaction read it; attribute writes are guarded by its state.

    Its columns are :class:`~celeryflow.persistence.tables.AtomRow`'s, less the deferred
    ``verdicts``, ``on_failure`` and ``wait_reason`` (read by their own statements).
    """

    TABLE = AtomRow.__table__  # type: ignore[assignment]
    KEY_COLUMNS = ("flow_uuid", "name")
    GUARD_COLUMNS = ("state",)

    flow_uuid: str
    name: str
    uuid: str
    kind: str
    state: str
    intention: str
    queued: bool
    waiting: int
    rwaiting: int
    result: str | None
    failure: str | None
    revert_result: str | None
    revert_failure: str | None
    history: str | None
    attempts: int
    progress: float
    meta: str | None
    lost_execute: int
    lost_revert: int
    worker: str | None
    claim_token: str | None
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None


class _Pending:
    """One session's tracked rows (by key) and those with unwritten changes (in change order)."""

    __slots__ = ("dirty", "rows", "writing")

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], _Tracked] = {}
        self.dirty: dict[int, _Tracked] = {}
        self.writing = False


#: ``session.info`` key of sessions whose factory already listens (:func:`listen`)
_LISTENING = "celeryflow.rows.listening"


def listen(factory: sessionmaker[Any]) -> None:
    """Make the sessions ``factory`` creates write their pending rows (once, not per session).

    Sessions of other factories (a host application's, in a transactional submit; one made
    on a fast path's connection) get the same events on the session itself when they first
    load a tracked row.
    """
    _listen(factory)
    factory.kw.setdefault("info", {})[_LISTENING] = True


def _listen(target: Session | sessionmaker[Any]) -> None:
    event.listen(target, "do_orm_execute", _before_statement)
    event.listen(target, "before_commit", write_pending)


def _pending(session: Session) -> _Pending:
    pending = session.info.get(_KEY)
    if pending is None:
        pending = session.info[_KEY] = _Pending()
        if not session.info.get(_LISTENING):
            _listen(session)  # the session's own events: other sessions pay nothing
    return pending


def _before_statement(state: ORMExecuteState) -> None:
    write_pending(state.session)


def write_pending(session: Session) -> None:
    """Write the session's pending row changes now (each a guarded ``UPDATE``)."""
    pending: _Pending | None = session.info.get(_KEY)
    if pending is None or not pending.dirty or pending.writing:
        return
    pending.writing = True
    try:
        while pending.dirty:
            rows = list(pending.dirty.values())
            pending.dirty.clear()
            for row in rows:
                row._write(session)
    finally:
        pending.writing = False


def _track(session: Session, cls: type[T], values: Mapping[Any, Any]) -> T:
    pending = _pending(session)
    key = (cls, *(values[name] for name in cls.KEY_COLUMNS))
    row = pending.rows.get(key)
    if row is None:
        row = pending.rows[key] = cls(pending, values)
    else:
        row._refresh(values)  # its changes were written before the SELECT that read these values
    return row  # type: ignore[return-value]


def lock_flow(session: Session, flow_uuid: str, *, shared: bool = False) -> FlowState | None:
    """The flow row as the database has it now, row-locked for this transaction (None: no such flow).

    ``shared``: a share lock (claims, which only read it); SQLite has no row locks (its
    ``BEGIN IMMEDIATE`` made the transaction the only writer already).
    """
    stmt = select(*FlowState.SELECTED).where(FlowState.TABLE.c.uuid == flow_uuid)
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(read=shared)
    found = session.execute(stmt).mappings().one_or_none()
    return None if found is None else _track(session, FlowState, found)


def load_atoms(session: Session, flow_uuid: str, names: Iterable[str] | None = None) -> dict[str, AtomState]:
    """The atoms' rows (all of the flow's, or ``names``) as the database has them now."""
    stmt = select(*AtomState.SELECTED).where(AtomState.TABLE.c.flow_uuid == flow_uuid)
    if names is not None:
        wanted = list(names)
        if not wanted:
            return {}
        stmt = stmt.where(AtomState.TABLE.c.name.in_(wanted))
    return {values["name"]: _track(session, AtomState, values) for values in session.execute(stmt).mappings()}


__all__ = ["AtomState", "FlowState", "listen", "load_atoms", "lock_flow", "write_pending"]
