"""The jobboard contract (TaskFlow's ``taskflow.jobs.base.JobBoard``), shared by every board.

A board holds jobs. Posters ``post`` (or ``post_flow``) them; conductors
``claim`` one, run it, then ``consume`` it (done), ``abandon`` it (someone else
may take it) or ``trash`` it (it cannot run; kept with the reason for
inspection). Rules every board keeps:

* Order: higher priority first, FIFO within a priority.
* A claim is exclusive and **expires** (``claim_expiry`` seconds, default
  :data:`DEFAULT_CLAIM_EXPIRY`) unless its owner extends it
  (:meth:`JobBoard.extend_claim`; conductors do so from a keeper thread), so a
  crashed owner's job becomes claimable again. ``claim_expiry=0`` (or an
  ``expiry`` <= 0) makes claims that never expire.
* Claiming a claimed job raises :class:`UnclaimableJob`; consuming, abandoning,
  trashing or extending a job one does not own raises :class:`JobFailure`; a job
  that is no longer on the board raises :class:`NotFound`.
* ``find_owner`` is ``None`` for an unclaimed job (or one whose claim expired).
* A job whose stored record cannot be decoded is moved to the trash, with the
  reason, the first time a reader meets it: it never makes readers loop.

Encoding and decoding job records is in ``records``, the claim expiry setting in
``claim_expiry``; their public names are re-exported here.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import ConfigurationError, JobFailure, NotFound, UnclaimableJob
from celeryflow.jobs.backends.claim_expiry import DEFAULT_CLAIM_EXPIRY, claim_expiry_of, now_ms
from celeryflow.jobs.backends.records import CorruptJob, decode_record, job_fields
from celeryflow.jobs.backends.wakeups import Wakeups, wakeups_for
from celeryflow.jobs.job import Job, JobPriority, TrashedJob

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

#: first and longest pause between two looks at an idle SQL board in ``wait()`` (the back-off
#: carries over between calls, so an idle conductor settles at 2 queries a second).
MIN_WAIT_INTERVAL = 0.02
MAX_WAIT_INTERVAL = 0.5

JobRef = Job | str


class JobBoard(abc.ABC):
    """A board of jobs. Build it with :func:`celeryflow.jobs.backends.fetch`.

    Args:
        name: the board's name.
        conf: ``board`` (``"sql"``/``"redis"``), ``url``, ``namespace`` (default:
            derived from ``name``), ``claim_expiry`` (seconds; 0: never expire).
        persistence: the logbook (URL or backend) flows are persisted in by
            ``post_flow`` and read from by ``Job.book`` and conductors.
    """

    #: the ``board`` value of ``conf`` this class serves
    kind = ""
    #: where the board's jobs live within its storage (several boards may share a database or Redis)
    namespace: str

    def __init__(self, name: str, conf: Mapping[str, Any], persistence: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"A jobboard needs a non-empty name, not {name!r}")
        self.name = name
        self.conf = dict(conf)
        self.claim_expiry = claim_expiry_of(self.conf.get("claim_expiry"))
        self._persistence_conf = persistence
        self._persistence: Backend | None = None
        self._connected = False
        self._poll_interval = MIN_WAIT_INTERVAL

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected

    @abc.abstractmethod
    def connect(self) -> None:
        """Connect (and check the board is usable). Idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect. Idempotent; ``connect()`` may be called again."""

    def __enter__(self) -> JobBoard:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_connected(self) -> None:
        if not self._connected:
            raise JobFailure(f"The jobboard {self.name!r} is not connected: call connect() (or use it in a with block)")

    @property
    def persistence(self) -> Backend | None:
        """The logbook backend flows of this board's jobs live in (None: the app's default)."""
        if self._persistence is None and self._persistence_conf is not None:
            from celeryflow.persistence.backends import fetch

            self._persistence = fetch(self._persistence_conf)
        return self._persistence

    # ------------------------------------------------------------------ posting

    def post(
        self,
        name: str,
        book: Any = None,
        details: Mapping[str, Any] | None = None,
        priority: JobPriority | str | None = None,
    ) -> Job:
        """Post a job; return it.

        Args:
            name: a human-readable name.
            book: a logbook (``LogBook`` or its uuid) whose flows the job runs.
            details: a JSON dict; ``details['flow_uuid']`` names the flow to run and
                ``details['store']`` values are added to its store when it runs.
            priority: a :class:`JobPriority` or its name (default NORMAL).

        Raises:
            ConfigurationError: bad name or priority. SerializationError: details are not JSON.
        """
        self._check_connected()
        fields = self._job_fields(name, book, details, priority)
        job = self._insert(fields)
        self._posted()
        return job

    def post_flow(
        self,
        factory: Callable[..., Any],
        store: Mapping[str, Any] | None = None,
        name: str | None = None,
        backend: Any = None,
        factory_args: Any = None,
        factory_kwargs: Mapping[str, Any] | None = None,
        priority: JobPriority | str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        app: Any = None,
        **options: Any,
    ) -> Job:
        """Persist the flow a registered ``factory`` builds and post a job that runs it.

        The flow (spec, store) is written to the logbook first; conductors rebuild it
        from there (the factory must be registered in their processes: define it in a
        module listed in ``CELERYFLOW_IMPORTS`` or decorate it with
        ``@celeryflow.registry.register``). On the SQL board, when the logbook is the
        board's database, flow and job commit in one transaction.

        Args:
            factory: a module-level (or registered) function returning a flow.
            store: the flow's inputs.
            name: the job's name (default: the flow's name).
            backend: the logbook to persist the flow in (default: the board's persistence).
            factory_args, factory_kwargs: JSON arguments for the factory.
            priority: a :class:`JobPriority` or its name.
            details: extra JSON details for the job.
            app: the Celery app (default: the installed one or the embedded default).
            **options: engine options stored with the flow.

        Raises:
            NotRegistered: the factory cannot be rebuilt by name. MissingDependencies:
            the store lacks inputs. SerializationError: arguments or store are not JSON.
        """
        self._check_connected()
        from celeryflow import engines

        rank = JobPriority.convert(priority)
        if backend is None:
            backend = self.persistence
        engine = engines.load_from_factory(
            factory, factory_args=factory_args, factory_kwargs=factory_kwargs, store=store, app=app,
            backend=backend, **options,
        )
        engine.validate()
        flow_name = engine.compile().flow_name
        extra = dict(details or {})
        job = self._post_engine(engine, name or flow_name, extra, rank, flow_name)
        self._posted()
        return job

    def _post_engine(
        self, engine: CeleryEngine, name: str, details: dict[str, Any], priority: JobPriority, flow_name: str
    ) -> Job:
        """Persist the engine's flow, then post its job (boards that can, do both in one transaction)."""
        engine.prepare()
        details.update(flow_uuid=engine.flow_uuid, flow_name=flow_name)
        return self._insert(self._job_fields(name, None, details, priority))

    _job_fields = staticmethod(job_fields)

    def _make_job(self, fields: Mapping[str, Any], created_on: dt.datetime | None, sequence: int) -> Job:
        return Job(
            self, fields["uuid"], fields["name"], details=fields["details"], priority=fields["priority"],
            created_on=created_on, flow_uuid=fields["flow_uuid"], book_uuid=fields["book_uuid"],
            book_name=fields["book_name"], sequence=sequence,
        )

    def _posted(self) -> None:
        """Wake waiters of this process (backends may also notify other processes)."""
        self._wakeups().bump()

    def _wakeups(self) -> Wakeups:
        return wakeups_for(type(self).__name__, *self._identity())

    @abc.abstractmethod
    def _identity(self) -> tuple[str, ...]:
        """What identifies this board's storage (URL, namespace)."""

    @abc.abstractmethod
    def _insert(self, fields: Mapping[str, Any]) -> Job:
        """Store a new job."""

    # ------------------------------------------------------------------ reading

    def _decode(self, record: Mapping[str, Any]) -> Job:
        """A job from a stored record; CorruptJob (with the reason) if it cannot be decoded."""
        return decode_record(self, record)

    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False) -> Iterator[Job]:
        """The jobs on the board, highest priority first, FIFO within a priority.

        Args:
            only_unclaimed: skip jobs with a live claim (expired claims count as unclaimed).
            ensure_fresh: accepted for TaskFlow compatibility (reads are always fresh).
        """
        self._check_connected()
        for record in self._records(only_unclaimed):
            try:
                job = self._decode(record)
            except CorruptJob as exc:
                reason = f"corrupt job record: {exc}"
                LOG.warning("jobboard %s: trashing job %s: %s", self.name, record.get("uuid"), reason)
                self._trash_corrupt(record, reason)
                continue
            yield job

    @abc.abstractmethod
    def _records(self, only_unclaimed: bool) -> Iterator[Mapping[str, Any]]:
        """Stored job records in board order: uuid, name, details (text), priority (rank), flow_uuid,
        book_uuid, book_name, created_on, seq, plus whatever the backend needs to trash it."""

    @abc.abstractmethod
    def _trash_corrupt(self, record: Mapping[str, Any], reason: str) -> None:
        """Move an undecodable job to the trash."""

    def get_job(self, job: JobRef) -> Job:
        """The job with that id. Raises NotFound (also when its record is corrupt: it is trashed)."""
        self._check_connected()
        uuid = self._uuid(job)
        record = self._record(uuid)
        if record is None:
            raise NotFound(f"No job {uuid} on the board {self.name!r}")
        try:
            return self._decode(record)
        except CorruptJob as exc:
            self._trash_corrupt(record, f"corrupt job record: {exc}")
            raise NotFound(
                f"Job {uuid} on the board {self.name!r} was corrupt ({exc}) and is now in its trash"
            ) from None

    @abc.abstractmethod
    def _record(self, uuid: str) -> Mapping[str, Any] | None:
        """One stored record, or None."""

    @property
    @abc.abstractmethod
    def job_count(self) -> int:
        """How many jobs are on the board (claimed or not)."""

    @abc.abstractmethod
    def find_owner(self, job: JobRef) -> str | None:
        """The owner of a live claim on ``job``; None when unclaimed, expired or gone."""

    @abc.abstractmethod
    def state_of(self, job: JobRef) -> str:
        """UNCLAIMED, CLAIMED or COMPLETE (no longer on the board)."""

    @abc.abstractmethod
    def iter_trash(self) -> Iterator[TrashedJob]:
        """Trashed jobs, oldest first, with ``reason``."""

    # ------------------------------------------------------------------ ownership

    @abc.abstractmethod
    def claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        """Claim ``job`` for ``who``; the claim lasts ``expiry`` seconds (default: the board's ``claim_expiry``).

        Raises:
            UnclaimableJob: it has a live claim (by anyone, ``who`` included) or is gone.
        """

    @abc.abstractmethod
    def extend_claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        """Push ``who``'s claim's expiry to ``expiry`` seconds from now (a lapsed claim nobody took back
        is renewed).

        Raises:
            JobFailure: someone else holds it, or it is not claimed. NotFound: it is gone.
        """

    @abc.abstractmethod
    def abandon(self, job: JobRef, who: str) -> None:
        """Give up ``who``'s claim: the job is claimable again. JobFailure if not the owner; NotFound if gone."""

    @abc.abstractmethod
    def consume(self, job: JobRef, who: str) -> None:
        """The job is done: remove it. JobFailure if ``who`` is not the owner; NotFound if gone."""

    @abc.abstractmethod
    def trash(self, job: JobRef, who: str, reason: str | None = None) -> None:
        """Move a job ``who`` owns to the trash, with ``reason``. JobFailure if not the owner; NotFound if gone."""

    # ------------------------------------------------------------------ waiting

    def wait(self, timeout: float | None = None) -> Iterator[Job]:
        """Block until a claimable job is on the board; return an iterator over the unclaimed jobs.

        Raises:
            NotFound: none appeared within ``timeout`` seconds.
        """
        self._check_connected()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wait_for_claimable(deadline)
        return self.iterjobs(only_unclaimed=True)

    @abc.abstractmethod
    def _has_claimable(self) -> bool:
        """Whether some job is unclaimed (or its claim expired)."""

    def _wait_for_claimable(self, deadline: float | None) -> None:
        """Polling with back-off (SQL); Redis overrides it with pub/sub."""
        wake = self._wakeups()
        while True:
            generation = wake.generation()
            if self._has_claimable():
                self._poll_interval = MIN_WAIT_INTERVAL
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise NotFound(f"No job was posted on the board {self.name!r} within the timeout")
            pause = self._poll_interval if remaining is None else min(self._poll_interval, remaining)
            if wake.wait(generation, pause):
                self._poll_interval = MIN_WAIT_INTERVAL
            else:
                self._poll_interval = min(MAX_WAIT_INTERVAL, self._poll_interval * 1.5)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _uuid(job: JobRef) -> str:
        if isinstance(job, Job):
            return job.uuid
        if isinstance(job, str) and job:
            return job
        raise ConfigurationError(f"Expected a Job or a job id, not {job!r}")

    @staticmethod
    def _check_who(who: str) -> None:
        if not isinstance(who, str) or not who:
            raise ConfigurationError(f"An owner must be a non-empty string, not {who!r}")

    def _expiry(self, expiry: float | None) -> float | None:
        return self.claim_expiry if expiry is None else claim_expiry_of(expiry, "expiry")

    def _unclaimable(self, uuid: str, owner: str | None, who: str) -> UnclaimableJob:
        if owner is None:
            return UnclaimableJob(f"Job {uuid} is no longer on the board {self.name!r} (consumed or trashed)")
        mine = " (already by this owner: use extend_claim)" if owner == who else ""
        return UnclaimableJob(f"Job {uuid} is already claimed by {owner!r}{mine}")

    def _not_owner(self, uuid: str, owner: str | None, who: str, action: str) -> JobFailure:
        if owner is None:
            return JobFailure(f"Cannot {action} job {uuid}: it is not claimed (claim it first)")
        return JobFailure(f"Cannot {action} job {uuid} as {who!r}: it is claimed by {owner!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


__all__ = ["DEFAULT_CLAIM_EXPIRY", "CorruptJob", "JobBoard", "JobRef", "claim_expiry_of", "now_ms"]
