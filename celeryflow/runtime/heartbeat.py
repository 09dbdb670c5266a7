"""Per-process heartbeats for the atoms this process is running.

Each worker process (a prefork pool child, or a thread-pool worker) has at most
one heartbeat thread. :func:`beating` registers an atom for the duration of its
execute or revert; every ``heartbeat_interval`` seconds the thread refreshes
``atoms.heartbeat_at`` of *all* atoms the process is running with **one**
``UPDATE`` per logbook (not one write per atom per tick)::

    UPDATE celeryflow_atoms SET heartbeat_at = <the database's clock>
     WHERE worker IN (:me) AND claim_token IN (:tokens) AND state IN ('RUNNING', 'REVERTING')
       AND flow_uuid IN (...) AND name IN (...)

The claim tokens (one per claim, see :func:`celeryflow.runtime.steps.begin`) and
the state guard mean a heartbeat never revives an atom that the conductor's
sweep has reset and handed to someone else, even to another execution in this
same process (a thread pool, the embedded default): a fenced-off execution
refreshes nobody's claim. The time written is the database's (``db_utcnow``),
the clock the sweep judges it by. The conductor
treats an atom whose heartbeat is older than ``heartbeat_timeout`` as orphaned
(its worker died) and runs it again (see :mod:`celeryflow.sweep`).

The thread is a daemon, started lazily in the process that runs atoms (after a
prefork fork, the child starts its own) and idles without writing when nothing
runs. A failing database is logged (at most once per minute) and retried at the
next tick; it never raises into the worker.

A progress report (:func:`record_progress`, ``update_progress`` in an atom) is the other
liveness write a running claim makes: it refreshes the claim's heartbeat with its progress,
under the same token guard.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.exceptions import BackendClosed
from celeryflow.persistence.tables import AtomRow, db_utcnow
from celeryflow.runtime import outage
from celeryflow.runtime.logbook import Events

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

#: seconds between two warnings about a failing heartbeat write
WARN_EVERY = 60.0

#: one registration: (flow uuid, atom name, worker id, claim token or None)
Key = tuple[str, str, str, str | None]


class Heartbeat:
    """The heartbeat thread of one process."""

    def __init__(self, interval: float) -> None:
        self.interval = max(0.05, float(interval))
        self._lock = threading.Lock()
        #: backend id -> (backend, {(flow_uuid, atom name, worker, claim token): registrations})
        self._running: dict[int, tuple[Backend, dict[Key, int]]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0
        self.beats = 0  # statements issued (for tests and statistics)

    # -- registration ------------------------------------------------------------------
    def register(self, backend: Backend, flow_uuid: str, name: str, worker: str, token: str | None = None) -> None:
        """Heartbeat the claim ``token`` (None: whatever claim ``worker`` holds) on an atom."""
        with self._lock:
            _, atoms = self._running.setdefault(id(backend), (backend, {}))
            key = (flow_uuid, name, worker, token)
            atoms[key] = atoms.get(key, 0) + 1
            self._ensure_thread()

    def unregister(self, backend: Backend, flow_uuid: str, name: str, worker: str, token: str | None = None) -> None:
        with self._lock:
            entry = self._running.get(id(backend))
            if entry is None:
                return
            atoms = entry[1]
            key = (flow_uuid, name, worker, token)
            count = atoms.get(key, 0) - 1
            if count > 0:
                atoms[key] = count
            else:
                atoms.pop(key, None)
            if not atoms:
                self._running.pop(id(backend), None)

    def running(self) -> list[Key]:
        with self._lock:
            return [key for _, atoms in self._running.values() for key in atoms]

    # -- the thread ----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="celeryflow-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.beat()

    def beat(self) -> int:
        """Refresh the heartbeat of every atom this process runs; return the rows touched."""
        with self._lock:
            snapshot = [(backend, list(atoms)) for backend, atoms in self._running.values()]
        touched = 0
        for backend, keys in snapshot:
            if not keys:
                continue
            try:
                touched += backend.run(partial(_touch, keys=keys, silence=outage.grace_seconds(self.interval)),
                                       attempts=2)
                self.beats += 1
            except BackendClosed:
                # closed by this process: its atoms' claims go stale and the sweep re-runs them;
                # beating on would only warn for ever and keep the backend alive
                with self._lock:
                    self._running.pop(id(backend), None)
            except Exception as exc:  # never kill the thread: the next tick retries
                now = time.monotonic()
                if now - self._last_warning >= WARN_EVERY:
                    self._last_warning = now
                    LOG.warning("celeryflow heartbeat of %d running atom(s) failed (retrying every %.1fs): %s",
                                len(keys), self.interval, exc)
        return touched


def _touch(session: Session, keys: list[Key], silence: float) -> int:
    flows = sorted({k[0] for k in keys})
    names = sorted({k[1] for k in keys})
    workers = sorted({k[2] for k in keys})
    # A token is unique to one claim, so "token IN (...)" matches exactly our claims, whatever
    # the cross product of flows and names; a registration without one (callers driving the
    # scheduler by hand) keeps the older per-worker guard.
    tokens = sorted({k[3] for k in keys if k[3] is not None})
    untokened = sorted({k[2] for k in keys if k[3] is None})
    claims = []
    if tokens:
        claims.append(AtomRow.claim_token.in_(tokens))
    if untokened:
        claims.append(AtomRow.worker.in_(untokened))
    result = session.execute(
        update(AtomRow)
        .where(
            AtomRow.worker.in_(workers),
            or_(*claims),
            AtomRow.state.in_((states.RUNNING, states.REVERTING)),
            AtomRow.flow_uuid.in_(flows),
            AtomRow.name.in_(names),
        )
        .values(heartbeat_at=db_utcnow())
        .execution_options(synchronize_session=False)
    )
    # last in the transaction (after the atom rows): the logbook could be written now
    outage.pulse(session, silence)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


_lock = threading.Lock()
_instance: Heartbeat | None = None
_pid: int | None = None


def get(interval: float = 10.0) -> Heartbeat:
    """This process's heartbeat (created on first use; a forked child gets its own)."""
    global _instance, _pid
    with _lock:
        if _instance is None or _pid != os.getpid():
            _instance = Heartbeat(interval)
            _pid = os.getpid()
        elif interval and abs(_instance.interval - max(0.05, interval)) > 1e-9:
            _instance.interval = max(0.05, float(interval))
        return _instance


def _after_fork_in_child() -> None:
    global _instance, _pid
    _instance = None
    _pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def beating(backend: Backend, flow_uuid: str, name: str, worker: str, interval: float,
            token: str | None = None) -> Iterator[Heartbeat]:
    """Heartbeat the claim ``token`` on atom ``name`` of ``flow_uuid`` (run by ``worker``) while the block runs."""
    hb = get(interval)
    hb.register(backend, flow_uuid, name, worker, token)
    try:
        yield hb
    finally:
        hb.unregister(backend, flow_uuid, name, worker, token)


# ---------------------------------------------------------------------- progress reports


def record_progress(backend: Backend, flow_uuid: str, name: str, epoch: int, progress: float,
                    details: dict[str, Any] | None, worker: str, *, token: str | None = None) -> None:
    """Store an atom's progress and add a progress event (one short transaction).

    Only the claim ``token`` (else: ``worker``'s claim) reports progress: a fenced-off
    execution refreshes nobody's heartbeat and adds no event.
    """
    claim = [AtomRow.worker == worker] if token is None else [AtomRow.worker == worker, AtomRow.claim_token == token]

    def txn(session: Session) -> None:
        touched = session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name, AtomRow.state == states.RUNNING, *claim)
            .values(progress=progress, heartbeat_at=db_utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if touched != 1:
            LOG.debug("progress of %s/%s from a claim that is no longer current: dropped", flow_uuid, name)
            return
        events = Events(flow_uuid, epoch, worker)
        events.add("progress", None, None, atom=name, details={"progress": progress, **(details or {})})
        events.flush(session)

    backend.run(txn)
