"""Conductors (TaskFlow's ``taskflow.conductors``): claim jobs, run their flows on Celery, settle them.

For each job a conductor claims:

1. **Load** (``loading``): the job's flow (``job.flow_uuid``, set by ``post_flow``; or every
   flow of ``job.book``) is re-attached from the logbook with
   ``engines.load_from_detail`` and rebuilt through the registry. A job that
   cannot be loaded (no flow, a flow missing from the logbook, an unregistered
   factory or atom class, corrupt details) is **trashed** with the reason.
2. **Run**: the engine starts (or resumes: a flow left RUNNING by a dead
   conductor re-runs its unfinished atoms; finished ones never re-run) and the
   conductor follows it in the logbook. Atoms run on the Celery workers of
   ``app`` (the embedded default runs them in this process).
3. **Settle**: SUCCESS or REVERTED → **consume**; SUSPENDED (``stop()``) →
   **abandon** (another conductor resumes it); FAILURE (a revert failed: the flow
   needs a human) → **trash** with the reason; the claim lost (this process
   stalled past the expiry and another conductor took the job) → stop following,
   event ``job_abandoned`` with ``reason``; an error (database or broker down) →
   abandon, and the job is retried later.

While a job runs, a keeper thread (``claim_keeper``) extends its claim every ``claim_expiry / 3``
seconds: a live conductor keeps its jobs, a dead one loses them after
``claim_expiry`` and another conductor takes over.

``notifier`` events: ``job_consumed``, ``job_abandoned``, ``job_trashed``; details
carry ``job``, ``conductor`` (the name), ``flow_uuids``, ``state`` (the flow's)
and, for abandoned/trashed jobs, ``reason``.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.conductors.claim_keeper import ClaimKeeper, RunningJob
from celeryflow.conductors.loading import Foreign, Unloadable, load_engines
from celeryflow.exceptions import ConfigurationError, JobFailure, NotFound, NotRegistered, Timeout, UnclaimableJob
from celeryflow.types.notifier import Notifier

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.jobs.backends.base import JobBoard
    from celeryflow.jobs.job import Job

LOG = logging.getLogger(__name__)

JOB_CONSUMED = "job_consumed"
JOB_ABANDONED = "job_abandoned"
JOB_TRASHED = "job_trashed"

#: seconds between looks at the board when it has nothing to claim
DEFAULT_WAIT_TIMEOUT = 0.5
#: seconds between checks of a running flow for stop requests and lost claims
FOLLOW_SLICE = 0.25
#: longest pause after failed dispatches in a row
MAX_ERROR_BACKOFF = 30.0

CONSUMED, ABANDONED, TRASHED, LOST = "consumed", "abandoned", "trashed", "lost"


class Conductor(abc.ABC):
    """Claims jobs from a board and runs them. Build one with :func:`celeryflow.conductors.backends.fetch`.

    Args:
        name: the conductor's name: the owner name of its claims (unique per process).
        jobboard: the board (connected by ``run()`` if it is not).
        persistence: the logbook (URL or backend) of the jobs' flows (default: the board's).
        engine: ``"celery"``.
        app: the Celery app the flows run on (default: the installed app, else the embedded one).
        wait_timeout: seconds between looks at an empty board (default 0.5).
        claim_expiry: seconds a claim lives between renewals (default: the board's).
        engine_options: extra ``load_from_detail`` options.
    """

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Any = None,
        engine: str = "celery",
        app: Any = None,
        *,
        wait_timeout: float | None = None,
        claim_expiry: float | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"A conductor needs a non-empty name, not {name!r}")
        from celeryflow.engines import _check_engine

        _check_engine(engine)
        self.name = name
        self.jobboard = jobboard
        self.engine = engine
        self.app = app
        self.wait_timeout = DEFAULT_WAIT_TIMEOUT if wait_timeout is None else float(wait_timeout)
        self.engine_options = dict(engine_options or {})
        self.notifier = Notifier()
        self._persistence_conf = persistence
        self._claim_expiry = claim_expiry
        self._stop = threading.Event()
        self._dead = threading.Event()
        self._dead.set()
        self._lock = threading.Lock()
        self._running: dict[str, RunningJob] = {}
        self._keeper = ClaimKeeper(name, jobboard, claim_expiry, self._running_jobs)
        self._errors = 0
        #: jobs whose flows belong to another deployment (namespace): left to its conductors
        self._foreign: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def dispatching(self) -> bool:
        """Whether ``run()`` is active and not asked to stop."""
        return not self._dead.is_set() and not self._stop.is_set()

    def connect(self) -> None:
        """Connect the jobboard (``run()`` does it if needed)."""
        if not self.jobboard.connected:
            self.jobboard.connect()

    def close(self) -> None:
        """Close the jobboard."""
        self.jobboard.close()

    def stop(self) -> None:
        """Stop claiming; running flows are suspended (their running atoms finish) and their jobs abandoned.

        Returns at once; ``wait()`` for ``run()`` to return.
        """
        self._stop.set()
        with self._lock:
            running = [engine for r in self._running.values() for engine in r.engines]
        for engine in running:
            self._suspend(engine)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for ``run()`` to return; False if still running after ``timeout`` seconds."""
        return self._dead.wait(timeout)

    @property
    def claim_expiry(self) -> float | None:
        if self._claim_expiry is not None:
            from celeryflow.jobs.backends.base import claim_expiry_of

            return claim_expiry_of(self._claim_expiry)
        return self.jobboard.claim_expiry

    def run(self, max_dispatches: int | None = None) -> int:
        """Claim and run jobs until ``stop()`` or, with ``max_dispatches``, until exactly that many
        jobs were dispatched (claimed and settled: consumed, abandoned or trashed).

        Returns:
            The number of jobs dispatched.
        """
        if max_dispatches is not None and max_dispatches < 0:
            raise ConfigurationError(f"max_dispatches must be >= 0 or None, not {max_dispatches!r}")
        if not self._dead.is_set():
            raise JobFailure(f"Conductor {self.name!r} is already running")
        self._dead.clear()
        self._stop.clear()
        try:
            self.connect()
            self._keeper.start(self.claim_expiry)
            return self._run(max_dispatches)
        finally:
            self._keeper.stop()
            self._dead.set()

    @abc.abstractmethod
    def _run(self, max_dispatches: int | None) -> int:
        """The dispatch loop; returns how many jobs were dispatched."""

    # ------------------------------------------------------------------ claiming

    def _running_jobs(self) -> list[RunningJob]:
        with self._lock:
            return list(self._running.values())

    def _claim_next(self) -> Job | None:
        """Claim the first claimable job in board order (None when there is none)."""
        for job in self.jobboard.iterjobs(only_unclaimed=True):
            if self._stop.is_set():
                return None
            if job.uuid in self._foreign:
                continue
            try:
                self.jobboard.claim(job, self.name, expiry=self._claim_expiry)
            except UnclaimableJob:
                continue  # another conductor was faster
            LOG.info("conductor %s claimed job %s (%s)", self.name, job.uuid, job.name)
            return job
        return None

    def _idle(self) -> None:
        """Wait for a claimable job (or wait_timeout, or stop)."""
        if self._stop.is_set():
            return
        try:
            self.jobboard.wait(timeout=self.wait_timeout)
        except NotFound:
            pass
        except Exception:
            LOG.warning("conductor %s: waiting on the jobboard failed", self.name, exc_info=True)
            self._stop.wait(self.wait_timeout)

    # ------------------------------------------------------------------ dispatching one job

    def _dispatch(self, job: Job) -> str:
        """Run a claimed job to an outcome and settle it; never raises. Returns the outcome."""
        item = RunningJob(job)
        with self._lock:
            self._running[job.uuid] = item
        try:
            return self._dispatch_claimed(item)
        except Exception as exc:  # pragma: no cover - _dispatch_claimed handles its errors
            LOG.exception("conductor %s: dispatching job %s failed", self.name, job.uuid)
            item.errored = True
            self._abandon(item, f"dispatch failed: {type(exc).__name__}: {exc}", [], None)
            return ABANDONED
        finally:
            with self._lock:
                self._running.pop(job.uuid, None)
            self._after(item)

    def _after(self, item: RunningJob) -> None:
        """Back off after a failed dispatch (the database or broker is down): no hot claim/abandon loop."""
        with self._lock:
            self._errors = self._errors + 1 if item.errored else 0
            errors = self._errors
        if errors:
            delay = min(MAX_ERROR_BACKOFF, self.wait_timeout * 2 ** min(errors, 10))
            LOG.warning("conductor %s: %d failed dispatch(es) in a row; pausing %.1fs", self.name, errors, delay)
            self._stop.wait(delay)

    def _dispatch_claimed(self, item: RunningJob) -> str:
        job = item.job
        if self._stop.is_set():
            return self._abandon(item, "the conductor is stopping", [], None)
        try:
            engines = self._load(job)
        except Unloadable as exc:
            return self._trash(item, str(exc), [], None)
        except Foreign as exc:
            self._foreign.add(job.uuid)
            return self._abandon(item, str(exc), [], None)
        except Exception as exc:  # database down, ...: retry later
            item.errored = True
            return self._abandon(item, f"loading failed: {type(exc).__name__}: {exc}", [], None)
        flow_uuids = [e.flow_uuid for e in engines]
        with self._lock:
            item.engines = engines
        final: list[str] = []
        try:
            for engine in engines:
                state = self._drive(item, engine)
                if state is None:  # claim lost
                    return self._lost(item, flow_uuids)
                final.append(state)
                if state not in (states.SUCCESS, states.REVERTED):
                    break
        except Unloadable as exc:
            return self._trash(item, str(exc), flow_uuids, None)
        except Exception as exc:
            LOG.warning("conductor %s: job %s failed while running", self.name, job.uuid, exc_info=True)
            item.errored = True
            return self._abandon(item, f"running failed: {type(exc).__name__}: {exc}", flow_uuids, None)
        last = final[-1]
        if last in (states.SUCCESS, states.REVERTED):
            return self._consume(item, flow_uuids, last)
        if last == states.FAILURE:
            return self._trash(item, self._failure_reason(engines[len(final) - 1]), flow_uuids, last)
        return self._abandon(item, f"the flow is {last}" + (" (conductor stopping)" if self._stop.is_set() else ""),
                             flow_uuids, last)

    def _load(self, job: Job) -> list[CeleryEngine]:
        """Engines for the job's flows, each checked to be rebuildable here."""
        return load_engines(
            job, engine=self.engine, persistence=self._persistence, app=self.app, engine_options=self.engine_options
        )

    def _persistence(self) -> Any:
        if self._persistence_conf is not None:
            return self._persistence_conf
        return self.jobboard.persistence

    def _drive(self, item: RunningJob, engine: CeleryEngine) -> str | None:
        """Start (or resume) the flow and follow it to a terminal state; None if the claim was lost."""
        from celeryflow.engines.waiter import Follower, last_event_id

        flow_uuid = engine.flow_uuid
        state = engine.storage.get_flow_state()
        if state in (states.SUCCESS, states.REVERTED, states.FAILURE):
            return state  # finished by an earlier owner that died before settling the job
        after = last_event_id(engine.backend, flow_uuid)
        try:
            engine.start()
        except NotRegistered as exc:
            raise Unloadable(f"its flow cannot be run here: {exc}") from None
        follower = Follower(engine.backend, flow_uuid, after)
        suspended = False
        while True:
            if item.lost.is_set():
                return None
            if self._stop.is_set() and not suspended:
                self._suspend(engine)
                suspended = True
            try:
                return follower.follow(_ignore, timeout=FOLLOW_SLICE)
            except Timeout:
                continue
            except NotFound as exc:
                raise Unloadable(f"its flow {flow_uuid} disappeared from the logbook ({exc})") from None

    def _suspend(self, engine: CeleryEngine) -> None:
        try:
            engine.suspend()
        except Exception:
            LOG.warning("conductor %s: suspending flow %s failed", self.name, engine.flow_uuid, exc_info=True)

    @staticmethod
    def _failure_reason(engine: CeleryEngine) -> str:
        try:
            failures = engine.storage.get_revert_failures()
            text = "; ".join(f"{name}: {f.exception_str}" for name, f in sorted(failures.items()))
        except Exception:
            text = ""
        return "the flow ended FAILURE (a revert failed; compensate it with FlowHandle.revert() once fixed)" + (
            f": {text}" if text else "")

    # ------------------------------------------------------------------ settling

    def _details(self, item: RunningJob, flow_uuids: list[str], state: str | None, **extra: Any) -> dict[str, Any]:
        details = {"job": item.job, "conductor": self.name, "flow_uuids": list(flow_uuids), "state": state}
        details.update(extra)
        return details

    def _consume(self, item: RunningJob, flow_uuids: list[str], state: str) -> str:
        if item.lost.is_set():
            return self._lost(item, flow_uuids)
        try:
            self.jobboard.consume(item.job, self.name)
        except (JobFailure, NotFound) as exc:
            item.lost_reason = f"the claim was lost before consuming: {exc}"
            return self._lost(item, flow_uuids)
        except Exception as exc:
            # the flow is finished in the logbook; whoever claims the job next settles it at once
            LOG.warning("conductor %s: consuming job %s failed", self.name, item.job.uuid, exc_info=True)
            item.errored = True
            return self._abandon(item, f"consume failed: {type(exc).__name__}: {exc}", flow_uuids, state)
        LOG.info("conductor %s consumed job %s (flow %s)", self.name, item.job.uuid, state)
        self.notifier.notify(JOB_CONSUMED, self._details(item, flow_uuids, state))
        return CONSUMED

    def _abandon(self, item: RunningJob, reason: str, flow_uuids: list[str], state: str | None) -> str:
        if item.lost.is_set():
            return self._lost(item, flow_uuids)
        try:
            self.jobboard.abandon(item.job, self.name)
        except Exception as exc:  # lost, or the board is down: the claim expires anyway
            LOG.warning("conductor %s: abandoning job %s failed: %s", self.name, item.job.uuid, exc)
        LOG.info("conductor %s abandoned job %s: %s", self.name, item.job.uuid, reason)
        self.notifier.notify(JOB_ABANDONED, self._details(item, flow_uuids, state, reason=reason))
        return ABANDONED

    def _trash(self, item: RunningJob, reason: str, flow_uuids: list[str], state: str | None) -> str:
        if item.lost.is_set():
            return self._lost(item, flow_uuids)
        try:
            self.jobboard.trash(item.job, self.name, reason=reason)
        except (JobFailure, NotFound) as exc:
            item.lost_reason = f"the claim was lost before trashing: {exc}"
            return self._lost(item, flow_uuids)
        except Exception as exc:
            LOG.warning("conductor %s: trashing job %s failed", self.name, item.job.uuid, exc_info=True)
            item.errored = True
            return self._abandon(item, f"trash failed ({exc}); it was to be trashed: {reason}", flow_uuids, state)
        LOG.warning("conductor %s trashed job %s: %s", self.name, item.job.uuid, reason)
        self.notifier.notify(JOB_TRASHED, self._details(item, flow_uuids, state, reason=reason))
        return TRASHED

    def _lost(self, item: RunningJob, flow_uuids: list[str]) -> str:
        reason = item.lost_reason or "the claim was lost"
        LOG.warning("conductor %s: job %s: %s", self.name, item.job.uuid, reason)
        self.notifier.notify(JOB_ABANDONED, self._details(item, flow_uuids, None, reason=reason, lost=True))
        return LOST

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.jobboard!r}>"


def _ignore(row: Any) -> None:
    return None


__all__ = ["JOB_ABANDONED", "JOB_CONSUMED", "JOB_TRASHED", "Conductor"]
