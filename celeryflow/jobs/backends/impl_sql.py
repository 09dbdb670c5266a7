"""The SQL jobboard: jobs in the logbook database (SQLite, PostgreSQL, MySQL/MariaDB).

* Every ownership change is one compare-and-set statement: a claim is
  ``UPDATE … SET owner = :who WHERE uuid = :job AND (owner IS NULL OR
  claim_expires <= :now)``; the row count says who won. Consume, abandon and
  trash are guarded by ``owner = :who`` the same way.
* ``post_flow`` writes the flow (through the engine's persist step) and the job in
  one transaction when the flow's logbook is the board's database.
* ``wait()`` polls with back-off (20 ms growing to 1 s); a post from the same
  process wakes waiters at once.
* Claim expiry is judged by the database's clock (epoch milliseconds,
  ``db_epoch_ms``), written and compared in SQL: conductors on hosts whose clocks
  disagree never take a live claim for an expired one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.exceptions import ConfigurationError, NotFound
from celeryflow.jobs.backends.base import JobBoard, JobRef
from celeryflow.jobs.backends.sql_tables import JobRow, TrashedJobRow
from celeryflow.jobs.job import Job, JobPriority, TrashedJob
from celeryflow.persistence.tables import db_epoch_ms, utcnow

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.persistence.backends.base import Backend

PAGE = 500


class SQLJobBoard(JobBoard):
    """Jobs in a SQL database (normally the logbook's).

    ``conf``: ``url`` (default: ``persistence``'s database, then ``CELERYFLOW_BACKEND``),
    ``namespace`` (default: the board's name; several boards share one database),
    ``claim_expiry``.
    """

    kind = "sql"

    def __init__(self, name: str, conf: Mapping[str, Any], persistence: Any = None) -> None:
        super().__init__(name, conf, persistence)
        self.namespace = str(self.conf.get("namespace") or name)
        url = self.conf.get("url") or self.conf.get("connection")
        if url is None and persistence is not None:
            url = persistence
        if url is None:
            from celeryflow.runtime.settings import Settings

            url = Settings.from_sources().backend
        if url is None:
            raise ConfigurationError(
                f"The SQL jobboard {name!r} needs a database: conf={{'board': 'sql', 'url': 'postgresql://...'}} "
                "(normally the logbook's), a persistence backend, or CELERYFLOW_BACKEND"
            )
        self._url = url
        self._backend: Backend | None = None

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        if self._connected:
            return
        from celeryflow.persistence.backends import fetch

        backend = fetch(self._url)
        backend.run(lambda session: None, readonly=True)  # creates/upgrades the schema, or says why not
        self._backend = backend
        self._connected = True

    def close(self) -> None:
        # the backend (engine, pool) is shared by the process: leave it to its owner
        self._connected = False

    @property
    def backend(self) -> Backend:
        """The database backend of the board."""
        self._check_connected()
        assert self._backend is not None
        return self._backend

    @property
    def persistence(self) -> Backend | None:
        found = super().persistence
        if found is None and self._backend is not None:
            return self._backend
        return found

    def _identity(self) -> tuple[str, ...]:
        return (str(self._url if isinstance(self._url, str) else getattr(self._url, "url", self._url)), self.namespace)

    # ------------------------------------------------------------------ posting

    def _row_values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        priority: JobPriority = fields["priority"]
        return {
            "uuid": fields["uuid"],
            "board": self.namespace,
            "name": fields["name"],
            "details": fields["details_text"],
            "priority": priority.rank,
            "flow_uuid": fields["flow_uuid"],
            "book_uuid": fields["book_uuid"],
            "book_name": fields["book_name"],
            "claims": 0,
            "created_at": utcnow(),
        }

    def _add(self, session: Session, fields: Mapping[str, Any]) -> Job:
        row = JobRow(**self._row_values(fields))
        session.add(row)
        session.flush()
        return self._make_job(fields, row.created_at, row.seq)

    def _insert(self, fields: Mapping[str, Any]) -> Job:
        return self.backend.run(lambda session: self._add(session, fields))

    def _post_engine(
        self, engine: CeleryEngine, name: str, details: dict[str, Any], priority: JobPriority, flow_name: str
    ) -> Job:
        if engine.backend is not self.backend:
            return super()._post_engine(engine, name, details, priority, flow_name)
        posted: list[Job] = []

        def also(session: Session, flow_uuid: str) -> None:
            posted.clear()  # the transaction may be retried
            fields = self._job_fields(name, None, {**details, "flow_uuid": flow_uuid, "flow_name": flow_name}, priority)
            posted.append(self._add(session, fields))

        engine.prepare(also=also)
        return posted[-1]

    # ------------------------------------------------------------------ reading

    def _mine(self) -> Any:
        return JobRow.board == self.namespace

    @staticmethod
    def _claimable() -> Any:
        return or_(JobRow.owner.is_(None), JobRow.claim_expires <= db_epoch_ms())

    @staticmethod
    def _as_record(row: JobRow) -> dict[str, Any]:
        return {
            "uuid": row.uuid, "name": row.name, "details": row.details, "priority": row.priority,
            "flow_uuid": row.flow_uuid, "book_uuid": row.book_uuid, "book_name": row.book_name,
            "created_on": row.created_at, "seq": row.seq,
        }

    def _records(self, only_unclaimed: bool) -> Iterator[Mapping[str, Any]]:
        last: tuple[int, int] | None = None
        while True:
            def page(session: Session, after: tuple[int, int] | None = last) -> list[dict[str, Any]]:
                query = select(JobRow).where(self._mine())
                if only_unclaimed:
                    query = query.where(self._claimable())
                if after is not None:
                    query = query.where(
                        or_(JobRow.priority > after[0], and_(JobRow.priority == after[0], JobRow.seq > after[1]))
                    )
                query = query.order_by(JobRow.priority, JobRow.seq).limit(PAGE)
                return [self._as_record(row) for row in session.scalars(query)]

            records = self.backend.run(page, readonly=True)
            yield from records
            if len(records) < PAGE:
                return
            last = (int(records[-1]["priority"]), int(records[-1]["seq"]))

    def _record(self, uuid: str) -> Mapping[str, Any] | None:
        def read(session: Session) -> dict[str, Any] | None:
            row = session.scalars(select(JobRow).where(self._mine(), JobRow.uuid == uuid)).one_or_none()
            return None if row is None else self._as_record(row)

        return self.backend.run(read, readonly=True)

    def _trash_corrupt(self, record: Mapping[str, Any], reason: str) -> None:
        def txn(session: Session) -> None:
            query = select(JobRow).where(self._mine(), JobRow.uuid == record["uuid"]).with_for_update()
            row = session.scalars(query).one_or_none()
            if row is not None:
                self._to_trash(session, row, None, reason)

        self.backend.run(txn)

    def _to_trash(self, session: Session, row: JobRow, who: str | None, reason: str | None) -> None:
        session.add(
            TrashedJobRow(
                uuid=row.uuid, board=row.board, name=row.name or "?", details=row.details, priority=row.priority,
                flow_uuid=row.flow_uuid, book_uuid=row.book_uuid, book_name=row.book_name,
                created_at=row.created_at, trashed_at=utcnow(), trashed_by=who, reason=reason,
            )
        )
        session.execute(delete(JobRow).where(JobRow.seq == row.seq))

    def _owner_row(self, session: Session, uuid: str) -> tuple[str | None, int | None, int] | None:
        """(owner, claim expiry, the database's clock), all in epoch milliseconds."""
        found = session.execute(
            select(JobRow.owner, JobRow.claim_expires, db_epoch_ms()).where(self._mine(), JobRow.uuid == uuid)
        ).first()
        return None if found is None else (found[0], found[1], int(found[2]))

    @staticmethod
    def _live_owner(owner: str | None, expires: int | None, now: int) -> str | None:
        if owner is None or (expires is not None and expires <= now):
            return None
        return owner

    def find_owner(self, job: JobRef) -> str | None:
        self._check_connected()
        uuid = self._uuid(job)
        found = self.backend.run(lambda session: self._owner_row(session, uuid), readonly=True)
        if found is None:
            return None
        return self._live_owner(*found)

    def state_of(self, job: JobRef) -> str:
        self._check_connected()
        uuid = self._uuid(job)
        found = self.backend.run(lambda session: self._owner_row(session, uuid), readonly=True)
        if found is None:
            return states.COMPLETE
        return states.CLAIMED if self._live_owner(*found) else states.UNCLAIMED

    @property
    def job_count(self) -> int:
        self._check_connected()
        return int(
            self.backend.run(lambda s: s.scalar(select(func.count()).select_from(JobRow).where(self._mine())),
                             readonly=True)
            or 0
        )

    def _has_claimable(self) -> bool:
        def read(session: Session) -> bool:
            query = select(JobRow.seq).where(self._mine(), self._claimable()).limit(1)
            return session.execute(query).first() is not None

        return bool(self.backend.run(read, readonly=True))

    def iter_trash(self) -> Iterator[TrashedJob]:
        self._check_connected()
        from celeryflow import serialization

        def read(session: Session) -> list[TrashedJobRow]:
            rows = list(
                session.scalars(select(TrashedJobRow).where(TrashedJobRow.board == self.namespace)
                                .order_by(TrashedJobRow.seq))
            )
            for row in rows:
                session.expunge(row)
            return rows

        for row in self.backend.run(read, readonly=True):
            raw: str | None = None
            try:
                details = serialization.loads(row.details)
            except Exception:
                details, raw = None, row.details
            try:
                priority: JobPriority | None = JobPriority.from_rank(row.priority)
            except ValueError:
                priority = None
            yield TrashedJob(
                row.uuid, row.name, reason=row.reason, trashed_by=row.trashed_by, trashed_on=row.trashed_at,
                details=details, priority=priority, created_on=row.created_at, flow_uuid=row.flow_uuid,
                raw_details=raw,
            )

    # ------------------------------------------------------------------ ownership

    def claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        self._check_connected()
        self._check_who(who)
        uuid = self._uuid(job)
        seconds = self._expiry(expiry)

        def txn(session: Session) -> tuple[bool, str | None]:
            expires = None if seconds is None else db_epoch_ms() + int(seconds * 1000)
            result = cast(CursorResult[Any], session.execute(
                update(JobRow)
                .where(self._mine(), JobRow.uuid == uuid, self._claimable())
                .values(owner=who, claim_expires=expires, claimed_at=utcnow(), claims=JobRow.claims + 1)
                .execution_options(synchronize_session=False)
            ))
            if result.rowcount == 1:
                return True, None
            found = self._owner_row(session, uuid)
            return False, None if found is None else (found[0] or "?")

        won, owner = self.backend.run(txn)
        if not won:
            raise self._unclaimable(uuid, owner, who)

    def _guarded(self, job: JobRef, who: str, action: str, statement: Any) -> None:
        """Run ``statement`` (guarded by owner = who); diagnose a zero row count."""
        self._check_connected()
        self._check_who(who)
        uuid = self._uuid(job)

        def txn(session: Session) -> tuple[bool, tuple[str | None, int | None, int] | None]:
            result = cast(CursorResult[Any], session.execute(statement(uuid, session)))
            if result.rowcount >= 1:
                return True, None
            return False, self._owner_row(session, uuid)

        done, found = self.backend.run(txn)
        if done:
            return
        if found is None:
            raise NotFound(f"Job {uuid} is not on the board {self.name!r} (consumed or trashed)")
        raise self._not_owner(uuid, self._live_owner(*found) or found[0], who, action)

    def _where_owned(self, uuid: str, who: str) -> Any:
        return and_(self._mine(), JobRow.uuid == uuid, JobRow.owner == who)

    def extend_claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        seconds = self._expiry(expiry)

        def statement(uuid: str, session: Session) -> Any:
            expires = None if seconds is None else db_epoch_ms() + int(seconds * 1000)
            return (update(JobRow).where(self._where_owned(uuid, who)).values(claim_expires=expires)
                    .execution_options(synchronize_session=False))

        self._guarded(job, who, "extend the claim on", statement)

    def abandon(self, job: JobRef, who: str) -> None:
        def statement(uuid: str, session: Session) -> Any:
            return (update(JobRow).where(self._where_owned(uuid, who))
                    .values(owner=None, claim_expires=None, claimed_at=None)
                    .execution_options(synchronize_session=False))

        self._guarded(job, who, "abandon", statement)
        self._posted()  # claimable again: wake local waiters

    def consume(self, job: JobRef, who: str) -> None:
        def statement(uuid: str, session: Session) -> Any:
            return delete(JobRow).where(self._where_owned(uuid, who)).execution_options(synchronize_session=False)

        self._guarded(job, who, "consume", statement)

    def trash(self, job: JobRef, who: str, reason: str | None = None) -> None:
        self._check_connected()
        self._check_who(who)
        uuid = self._uuid(job)

        def txn(session: Session) -> tuple[bool, tuple[str | None, int | None, int] | None]:
            row = session.scalars(select(JobRow).where(self._where_owned(uuid, who)).with_for_update()).one_or_none()
            if row is None:
                return False, self._owner_row(session, uuid)
            self._to_trash(session, row, who, reason)
            return True, None

        done, found = self.backend.run(txn)
        if done:
            return
        if found is None:
            raise NotFound(f"Job {uuid} is not on the board {self.name!r} (consumed or trashed)")
        raise self._not_owner(uuid, found[0], who, "trash")


__all__ = ["SQLJobBoard"]
