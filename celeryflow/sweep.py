"""The conductor's sweep: find stalled flows in the logbook and re-drive them.

Run it with ``python -m conductor`` (a standalone loop), with ``celery -A
conductor beat`` (beat sends the ``celeryflow.sweep`` task every
``CELERYFLOW_SWEEP_INTERVAL`` seconds and a worker runs it), or from your own
app: ``celeryflow.install(app)`` registers the task and adds the beat entry.
Several sweeps may run at once (several conductors, several beat-driven
workers): each stalled flow is claimed under its row lock and re-dispatched
once (see :mod:`celeryflow.runtime.reclaim`).

A sweep costs O(stalled flows), not O(history): two indexed queries find the
candidates,

* atoms RUNNING/REVERTING whose heartbeat is older than
  ``heartbeat_timeout`` (index ``(state, heartbeat_at)``): their worker died;
* flows RUNNING/REVERTING/SUSPENDING that made no progress for
  ``heartbeat_timeout`` (index ``(state, progress_at)``) and have queued atoms
  older than that (lost messages) or nothing queued and nothing running
  (stuck),

then each candidate flow is examined and re-driven in its own short
transaction. PENDING flows are not touched: a flow that was persisted but never
started (its submitter died before ``start()``) is its submitter's to run
(``FlowHandle(id).resume()``, ``celeryflow flows resume``), or a jobboard
conductor's when it was posted as a job. Terminal flows are never looked at.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, not_, or_, select
from sqlalchemy.orm import Session

from celeryflow.exceptions import CeleryflowError, StorageFailure
from celeryflow.persistence.tables import AtomRow, FlowRow, db_now
from celeryflow.runtime import backends as backend_keys
from celeryflow.runtime import context, outage, reclaim, steps
from celeryflow.runtime.dispatch import publish
from celeryflow.runtime.settings import Settings

if TYPE_CHECKING:
    from celery import Celery, Task

    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger("celeryflow.sweep")

SWEEP_TASK = "celeryflow.sweep"
#: candidate flows examined per sweep and per query (the next sweep continues)
DEFAULT_BATCH = 500


@dataclass
class SweepReport:
    """What one sweep found and did."""

    examined: int = 0
    reclaimed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)
    poisoned: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    publish_failures: int = 0
    skipped_heartbeats: bool = False
    seconds: float = 0.0

    @property
    def acted(self) -> int:
        return len(self.reclaimed) + len(self.resent) + len(self.redriven)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined, "reclaimed": list(self.reclaimed), "resent": list(self.resent),
            "redriven": list(self.redriven), "poisoned": [list(p) for p in self.poisoned],
            "errors": [list(e) for e in self.errors], "publish_failures": self.publish_failures,
            "skipped_heartbeats": self.skipped_heartbeats, "seconds": round(self.seconds, 4),
        }


def stale_atom_flows(
    session: Session, cutoff: dt.datetime, limit: int, only: Collection[str] | None = None,
    namespace: str | None = None,
) -> list[str]:
    """Flows with an atom in a worker's hands whose heartbeat is older than ``cutoff`` (indexed).

    ``only``: look at these flows alone (the embedded default sweeps the flows it runs).
    ``namespace``: only flows of this deployment (None: every flow).
    """
    query = select(AtomRow.flow_uuid).where(
        AtomRow.state.in_(reclaim.IN_HAND),
        AtomRow.heartbeat_at < cutoff,
        AtomRow.queued.is_(False),
    )
    if only is not None:
        query = query.where(AtomRow.flow_uuid.in_(list(only)))
    if namespace is not None:
        query = query.join(FlowRow, FlowRow.uuid == AtomRow.flow_uuid).where(FlowRow.namespace == namespace)
    rows = session.execute(query.distinct().limit(limit))
    return [r[0] for r in rows]


def stalled_flows(
    session: Session, cutoff: dt.datetime, limit: int, only: Collection[str] | None = None,
    namespace: str | None = None,
) -> list[str]:
    """Active flows without progress since ``cutoff`` that have lost messages or nothing in flight."""
    lost = exists().where(
        AtomRow.flow_uuid == FlowRow.uuid,
        AtomRow.queued.is_(True),
        or_(AtomRow.queued_at < cutoff, AtomRow.queued_at.is_(None)),
    )
    in_flight = exists().where(
        AtomRow.flow_uuid == FlowRow.uuid,
        or_(AtomRow.queued.is_(True), AtomRow.state.in_(reclaim.IN_HAND)),
    )
    query = select(FlowRow.uuid).where(
        FlowRow.state.in_(reclaim.ACTIVE),
        FlowRow.progress_at < cutoff,
        or_(lost, not_(in_flight)),
    )
    if only is not None:
        query = query.where(FlowRow.uuid.in_(list(only)))
    if namespace is not None:
        query = query.where(FlowRow.namespace == namespace)
    rows = session.execute(query.order_by(FlowRow.progress_at).limit(limit))
    return [r[0] for r in rows]


class Sweeper:
    """Sweeps one logbook and re-dispatches through one Celery app.

    Args:
        app: the Celery app to publish with (its ``celeryflow_*`` settings apply).
        backend: the logbook (URL or backend); default the app's ``celeryflow_backend``.
        settings: override the app's settings.
        name: who sweeps (recorded as the reclaimed flows' owner); default host:pid.
        batch: candidate flows examined per query per sweep.
        only: returns the flows this sweeper may look at (default: every flow of the logbook
            in the settings' ``namespace``); the embedded default sweeps only the flows its process runs.
    """

    def __init__(
        self,
        app: Celery,
        backend: Any = None,
        settings: Settings | None = None,
        name: str | None = None,
        batch: int = DEFAULT_BATCH,
        only: Callable[[], Collection[str]] | None = None,
    ) -> None:
        from celeryflow.persistence.backends import fetch

        self.app = app
        self.settings = settings or Settings.from_sources(app.conf)
        url = backend if backend is not None else (app.conf.get("celeryflow_backend") or self.settings.backend)
        if url is None:
            raise CeleryflowError("The sweep needs a logbook: set CELERYFLOW_BACKEND or pass backend=")
        self.backend: Backend = fetch(url) if isinstance(url, str) else url
        self.name = name or f"conductor:{socket.gethostname()}:{os.getpid()}"
        if self.settings.heartbeat_timeout < 3 * self.settings.heartbeat_interval:
            LOG.warning("heartbeat_timeout (%gs) is less than 3 x heartbeat_interval (%gs): live workers may be "
                        "taken for dead and their atoms run twice", self.settings.heartbeat_timeout,
                        self.settings.heartbeat_interval)
        self.batch = batch
        self.only = only
        self._lock = threading.Lock()
        self._db_failed = False
        self._grace_until = 0.0

    @property
    def backend_key(self) -> str:
        """The logbook's key in the messages this sweeper sends (its stored id)."""
        return backend_keys.remember(self.backend)

    # ------------------------------------------------------------------ one sweep
    def sweep(self) -> SweepReport:
        """One pass over the logbook. Never raises for a database or broker outage (it reports it)."""
        if not self._lock.acquire(blocking=False):
            LOG.debug("a sweep is already running in this process; skipping")
            return SweepReport()
        try:
            return self._sweep()
        finally:
            self._lock.release()

    def _sweep(self) -> SweepReport:
        started = time.monotonic()
        report = SweepReport()
        settings = self.settings
        try:
            gap_at = self.backend.run(self._pulse, attempts=2)
            now, candidates = self.backend.run(self._candidates, readonly=True, attempts=2)
        except StorageFailure as exc:
            report.errors.append(("*", str(exc)))
            # once per outage at WARNING (the loop keeps its interval: no tight retry loop)
            LOG.log(logging.DEBUG if self._db_failed else logging.WARNING,
                    "sweep: the logbook is unreachable; retrying every sweep until it is back: %s", exc)
            self._db_failed = True
            report.seconds = time.monotonic() - started
            return report
        if self._db_failed:
            # Right after a logbook outage every heartbeat is old (nobody could write one):
            # give live workers a couple of heartbeat intervals to refresh before judging them.
            self._db_failed = False
            self._grace_until = time.monotonic() + 2 * settings.heartbeat_interval + 1.0
            LOG.info("sweep: the logbook is back; heartbeats are judged again in %.1fs",
                     self._grace_until - time.monotonic())
        # The grace after an outage is the logbook's fact (outage.pulse): also when this process
        # never saw the outage (a beat-driven sweep that ran elsewhere while the logbook was down).
        grace = outage.grace_seconds(settings.heartbeat_interval)
        logbook_ok = gap_at is None or now >= gap_at + dt.timedelta(seconds=grace)
        if not logbook_ok:
            LOG.info("sweep: the logbook was not written to until %s (an outage?); heartbeats are judged "
                     "again %.1fs after that", gap_at, grace)
        stale_ok = time.monotonic() >= self._grace_until and logbook_ok
        report.skipped_heartbeats = not stale_ok
        for flow_uuid in candidates:
            report.examined += 1
            try:
                self._one(flow_uuid, now, stale_ok, report)
            except StorageFailure as exc:
                self._db_failed = True
                report.errors.append((flow_uuid, str(exc)))
                LOG.warning("sweep: the logbook failed while re-driving flow %s; stopping this sweep: %s",
                            flow_uuid, exc)
                break
            except Exception as exc:  # one bad flow must not stop the sweep of the others
                report.errors.append((flow_uuid, f"{type(exc).__name__}: {exc}"))
                LOG.exception("sweep: could not re-drive flow %s", flow_uuid)
        report.seconds = time.monotonic() - started
        if report.acted or report.errors:
            LOG.info("sweep: %s", report.as_dict())
        return report

    def _pulse(self, session: Session) -> dt.datetime | None:
        """Write the logbook's pulse (recording a gap if it was silent too long); the last gap."""
        settings = self.settings
        # Silent longer than a heartbeat can be old on a live worker, and longer than the sweeps'
        # own rhythm (else a logbook whose workers all died would stay in grace forever).
        silence = max(settings.heartbeat_timeout - settings.heartbeat_interval, settings.sweep_interval) + 1.0
        outage.pulse(session, silence, gap=self._db_failed)
        return outage.last_gap(session)[1]

    def _candidates(self, session: Session) -> tuple[dt.datetime, list[str]]:
        # "now" is the database's: heartbeats and queue times are written with its clock, and
        # this machine's may be off by more than the heartbeat timeout
        now = db_now(session)
        cutoff = now - dt.timedelta(seconds=self.settings.heartbeat_timeout)
        only = None if self.only is None else self.only()
        if only is not None and not only:
            return now, []
        # only this deployment's flows: another's run on another broker, with atoms this one lacks
        namespace = self.settings.namespace
        found = dict.fromkeys(stale_atom_flows(session, cutoff, self.batch, only, namespace))
        found.update(dict.fromkeys(stalled_flows(session, cutoff, self.batch, only, namespace)))
        return now, list(found)

    def _one(self, flow_uuid: str, now: dt.datetime, stale_ok: bool, report: SweepReport) -> None:
        settings = self.settings
        runtime = context.runtime_for(self.backend, flow_uuid)
        comp = runtime.comp
        decide = runtime.decide if any(a.deciders for a in comp.atoms.values()) else None
        outcome = reclaim.reclaim(
            self.backend, comp, flow_uuid, now=now, heartbeat_timeout=settings.heartbeat_timeout,
            max_deliveries=settings.max_deliveries, owner=self.name, decide=decide, stale_atoms=stale_ok,
            window=comp.window(settings.dispatch_window),
        )
        if outcome.action == "none":
            return
        getattr(report, outcome.action).append(flow_uuid)
        LOG.warning(
            "sweep: %s flow %s (%s): epoch %d, reset %s, resent %s, poison %s, dispatching %s",
            outcome.action, flow_uuid, outcome.reason, outcome.epoch, outcome.reset, outcome.resent,
            [p.name for p in outcome.poison],
            (outcome.dispatch.execute + outcome.dispatch.revert) if outcome.dispatch else [],
        )
        self._publish(comp, outcome.dispatch, report)
        if outcome.start:
            self._publish(comp, reclaim.redrive(self.backend, comp, flow_uuid, self.name, decide,
                                                comp.window(settings.dispatch_window)), report)
        for poison in outcome.poison:
            report.poisoned.append((flow_uuid, poison.name))
            LOG.error("sweep: atom %s of flow %s killed its worker %d time(s): failing it with WorkerLost",
                      poison.name, flow_uuid, poison.deaths)
            dispatch = steps.finish(
                self.backend, comp, flow_uuid, poison.name, outcome.epoch, poison.mode, poison.worker,
                failure=poison.failure(flow_uuid, settings.max_deliveries), decide=decide,
                window=comp.window(settings.dispatch_window),
            )
            self._publish(comp, dispatch, report)

    def _publish(self, comp: Any, dispatch: Any, report: SweepReport) -> None:
        if not dispatch:
            return
        try:
            publish(self.app, comp, dispatch, self.backend_key, self.settings.chain_max)
        except Exception as exc:
            # Committed, not sent: the atoms stay queued and a later sweep sends them again.
            report.publish_failures += 1
            LOG.warning("sweep: could not publish to the broker (flow %s); a later sweep retries: %s",
                        dispatch.flow_uuid, exc)

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, interval: float | None = None) -> None:
        """Sweep every ``interval`` seconds (default ``sweep_interval``) until ``stop`` is set."""
        every = float(interval if interval is not None else self.settings.sweep_interval)
        while not stop.is_set():
            began = time.monotonic()
            try:
                self.sweep()
            except Exception:  # the loop never dies
                LOG.exception("sweep failed")
            stop.wait(max(0.0, every - (time.monotonic() - began)))


# ---------------------------------------------------------------------- beat & task


def beat_entry(settings: Settings) -> dict[str, Any]:
    """The ``beat_schedule`` entry ``install()`` adds: the sweep task every ``sweep_interval`` s."""
    interval = float(settings.sweep_interval)
    return {
        "task": SWEEP_TASK,
        "schedule": interval,
        # a sweep nobody ran in time is superseded by the next one: don't let them pile up
        "options": {"expires": max(1.0, interval)},
    }


_sweepers: dict[tuple[int, int], Sweeper] = {}
_sweepers_lock = threading.Lock()


def sweeper_for(app: Celery) -> Sweeper:
    """The sweeper of ``app`` in this process (one per app and process)."""
    key = (id(app), os.getpid())
    with _sweepers_lock:
        found = _sweepers.get(key)
        if found is None:
            found = _sweepers[key] = Sweeper(app, name=f"sweep:{socket.gethostname()}:{os.getpid()}")
        return found


def register_task(app: Celery) -> None:
    """Register the ``celeryflow.sweep`` task on ``app`` (idempotent)."""
    if SWEEP_TASK in app.tasks:
        return

    @app.task(name=SWEEP_TASK, bind=True, ignore_result=True, acks_late=False, shared=False)
    def sweep_task(self: Task) -> dict[str, Any]:
        return sweeper_for(self.app).sweep().as_dict()


def sweep_once(app: Celery | None = None, backend: Any = None) -> SweepReport:
    """Run one sweep now (``app`` default: the installed app)."""
    if app is None:
        from celeryflow.install import default_app

        app = default_app()
    return Sweeper(app, backend=backend).sweep()


__all__ = [
    "SWEEP_TASK",
    "SweepReport",
    "Sweeper",
    "beat_entry",
    "register_task",
    "stale_atom_flows",
    "stalled_flows",
    "sweep_once",
    "sweeper_for",
]
