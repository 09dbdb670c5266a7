"""Read-only views of flows in the logbook: for the CLI (``flows``, ``top``, ``graph``) and web status views.

Everything here reads; nothing writes. A :class:`FlowView` is one flow with its
atoms in execution order (from the compiled spec stored with the flow), their
states, timings, workers, failures and retry history; :func:`list_flows` and
:func:`worker_views` are cheap summaries (no specs, no results) for listings and
``celeryflow top``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, undefer

from celeryflow import serialization, states
from celeryflow.exceptions import NotFound
from celeryflow.masking import mask_value
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from celeryflow.runtime import missing_code
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend

#: flow states in which something may still happen on its own.
ACTIVE_STATES = (states.PENDING, states.RUNNING, states.REVERTING, states.SUSPENDING, states.RESUMING)
MASK = "***"


def _failure(text: str | None) -> Failure | None:
    data = serialization.loads(text) if text else None
    return Failure.from_dict(data) if data else None


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass
class AtomView:
    """One atom of a flow as the logbook has it."""

    name: str
    kind: str
    state: str
    intention: str
    attempts: int = 0
    worker: str | None = None
    queued: bool = False
    progress: float = 0.0
    queued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    result: Any = None
    failure: Failure | None = None
    revert_failure: Failure | None = None
    #: retry controllers: ``[(value, {atom: Failure}), ...]`` oldest first.
    history: list[tuple[Any, dict[str, Failure]]] = field(default_factory=list)
    index: int = 0
    preds: tuple[str, ...] = ()
    succs: tuple[str, ...] = ()
    flow: str = ""
    retry: str | None = None
    #: how many times its execution started, over every retry round and redelivery (the
    #: ``attempts`` column counts claims of the current round, reverts included)
    starts: int = 0
    #: why it is queued and not running (a worker without its code), while that lasts
    waiting: str | None = None

    @property
    def seconds(self) -> float | None:
        """How long the last execute/revert took (or has been running, if still running)."""
        if self.started_at is None:
            return None
        return _seconds(self.started_at, self.finished_at or utcnow())


@dataclass
class FlowView:
    """One flow with its atoms (execution order), store and failures."""

    uuid: str
    name: str
    state: str
    epoch: int
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress_at: dt.datetime | None
    owner: str | None
    outstanding: int
    logbook_uuid: str | None
    store: dict[str, Any]
    failures: dict[str, Failure]
    meta: dict[str, Any]
    atoms: dict[str, AtomView]
    compilation: Compilation | None
    reverted_order: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.atoms)

    @property
    def done(self) -> int:
        return sum(1 for a in self.atoms.values() if a.state in (states.SUCCESS, states.IGNORE))

    @property
    def seconds(self) -> float | None:
        return _seconds(self.created_at, self.finished_at or (None if self.state in states.FLOW_TERMINAL
                                                               else utcnow()))

    def masked_store(self, is_masked: Any = None) -> dict[str, Any]:
        """The store with secret-looking keys (settings ``mask_keys``) replaced by ``***``."""
        check = is_masked or _default_masker()
        masked: dict[str, Any] = mask_value(self.store, check, MASK)  # nested dicts too
        return masked

    def masked_result(self, name: str, is_masked: Any = None) -> Any:
        """Atom ``name``'s result, masked whole if a name it provides looks secret (its own name
        when the flow's compilation is unknown, as in :meth:`results`), else with its
        secret-looking keys masked at any depth."""
        check = is_masked or _default_masker()
        atom = self.atoms[name]
        if self.compilation is not None and name in self.compilation.atoms:
            provided: Iterable[str] = self.compilation.atoms[name].save_as
        else:
            provided = (name,)
        if any(check(symbol) for symbol in provided):
            return MASK
        return mask_value(atom.result, check, MASK)

    def results(self) -> dict[str, Any]:
        """What the atoms that succeeded provided, by provided name (``storage.fetch_all()`` minus the store)."""
        from celeryflow.runtime.args import extract

        out: dict[str, Any] = {}
        for name, atom in self.atoms.items():
            if atom.state != states.SUCCESS:
                continue
            if self.compilation is None or name not in self.compilation.atoms:
                out[name] = atom.result
                continue
            for symbol, index in self.compilation.atoms[name].save_as.items():
                try:
                    out[symbol] = extract(atom.result, index, name, symbol)
                except NotFound:
                    continue
        return out


def _default_masker() -> Any:
    from celeryflow.runtime.settings import Settings

    return Settings.from_sources().is_masked


def load_flow(backend: Backend, flow_uuid: str, *, compilations: MutableMapping[str, Any] | None = None) -> FlowView:
    """The flow ``flow_uuid`` with its atoms and the order its atoms were reverted in.

    Args:
        compilations: a cache of compiled specs by flow id (a flow's spec never changes):
            a long-lived reader (the web view) skips reading and decoding it again.

    Raises:
        NotFound: no such flow in this logbook.
    """
    cached = compilations.get(flow_uuid) if compilations is not None else None

    def read(session: Session) -> FlowView:
        query = select(FlowRow) if cached is not None else select(FlowRow).options(undefer(FlowRow.spec))
        row = session.scalars(query.where(FlowRow.uuid == flow_uuid)).first()
        if row is None:
            raise NotFound(f"No flow {flow_uuid!r} in the logbook {backend.url.masked}; check the id and --backend")
        atoms = session.scalars(
            select(AtomRow).options(undefer(AtomRow.wait_reason)).where(AtomRow.flow_uuid == flow_uuid)
        ).all()
        # every execution that started left RUNNING (finished, failed, reclaimed) or is running now
        ended = dict(session.execute(
            select(EventRow.atom_name, func.count())
            .where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "atom", EventRow.old_state == states.RUNNING)
            .group_by(EventRow.atom_name)
        ).all())
        reverted = session.execute(
            select(EventRow.atom_name)
            .where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "atom",
                   EventRow.new_state.in_([states.REVERTED, states.REVERT_FAILURE]))
            .order_by(EventRow.id)
        ).scalars().all()
        view = _build(row, atoms, [name for name in reverted if name], compilation=cached)
        if compilations is not None and cached is None and view.compilation is not None:
            compilations[flow_uuid] = view.compilation
        for atom in view.atoms.values():
            atom.starts = int(ended.get(atom.name, 0)) + (1 if atom.state == states.RUNNING else 0)
        return view

    return backend.run(read, readonly=True)


def _build(row: FlowRow, atom_rows: Iterable[AtomRow], reverted: list[str],
           compilation: Compilation | None = None) -> FlowView:
    comp = compilation if compilation is not None else _compilation(row.spec)
    views: dict[str, AtomView] = {}
    for a in atom_rows:
        history_raw = serialization.loads(a.history) or [] if a.kind == "retry" else []
        history = [
            (value, {n: Failure.from_dict(f) for n, f in (fails or {}).items()}) for value, fails in history_raw
        ]
        view = AtomView(
            name=a.name, kind=a.kind, state=a.state, intention=a.intention, attempts=a.attempts or 0,
            worker=a.worker, queued=bool(a.queued), progress=a.progress or 0.0, queued_at=a.queued_at,
            started_at=a.started_at, finished_at=a.finished_at, heartbeat_at=a.heartbeat_at,
            result=serialization.loads(a.result), failure=_failure(a.failure),
            revert_failure=_failure(a.revert_failure), history=history,
            waiting=missing_code.reason_of(a.wait_reason) if a.queued else None,
        )
        if comp is not None and a.name in comp.atoms:
            compiled = comp.atoms[a.name]
            view.index, view.preds, view.succs = compiled.index, compiled.preds, compiled.succs
            view.flow, view.retry = compiled.flow, compiled.retry
        views[a.name] = view
    order = [n for n in comp.order if n in views] if comp is not None else sorted(views)
    placed = set(order)  # a set: 10,000-atom flows
    order += [n for n in views if n not in placed]
    raw_failures = serialization.loads(row.failures) or {}
    return FlowView(
        uuid=row.uuid, name=row.name, state=row.state, epoch=row.epoch or 0, created_at=row.created_at,
        updated_at=row.updated_at, finished_at=row.finished_at, progress_at=row.progress_at, owner=row.owner,
        outstanding=row.outstanding or 0, logbook_uuid=row.logbook_uuid,
        store=dict(serialization.loads(row.store) or {}),
        failures={name: Failure.from_dict(data) for name, data in raw_failures.items()},
        meta=dict(serialization.loads(row.meta) or {}),
        atoms={n: views[n] for n in order}, compilation=comp, reverted_order=reverted,
    )


def _compilation(spec_text: str | None) -> Compilation | None:
    from celeryflow.compiler import Compilation

    try:
        spec = serialization.loads(spec_text) if spec_text else None
    except ValueError:  # a corrupt spec: the flow's failures say so; show what the rows hold
        spec = None
    data = spec.get("compilation") if isinstance(spec, Mapping) else None
    if not data:
        return None
    try:
        return Compilation.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class FlowSummary:
    """A row of ``celeryflow flows list`` / ``top``: no spec, no store, no results."""

    uuid: str
    name: str
    state: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress_at: dt.datetime | None
    total: int = 0
    done: int = 0
    running: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: queued atoms waiting for a worker that has their code (runtime.missing_code)
    waiting: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        end = self.finished_at or (None if self.state in states.FLOW_TERMINAL else utcnow())
        return _seconds(self.created_at, end)


def list_flows(
    backend: Backend,
    state: str | Iterable[str] | None = None,
    older_than: dt.timedelta | None = None,
    newer_than: dt.timedelta | None = None,
    limit: int | None = 50,
    name: str | None = None,
) -> list[FlowSummary]:
    """Flows newest first, with atom counts (done / total) and the names of running atoms."""
    now = utcnow()

    def read(session: Session) -> list[FlowSummary]:
        query = select(
            FlowRow.uuid, FlowRow.name, FlowRow.state, FlowRow.created_at, FlowRow.finished_at, FlowRow.progress_at
        )
        if state is not None:
            query = query.where(FlowRow.state.in_([state] if isinstance(state, str) else list(state)))
        if older_than is not None:
            query = query.where(FlowRow.created_at < now - older_than)
        if newer_than is not None:
            query = query.where(FlowRow.created_at > now - newer_than)
        if name is not None:
            query = query.where(FlowRow.name == name)
        query = query.order_by(FlowRow.created_at.desc(), FlowRow.uuid).limit(limit)
        out = {r.uuid: FlowSummary(r.uuid, r.name, r.state, r.created_at, r.finished_at, r.progress_at)
               for r in session.execute(query)}
        _add_counts(session, out)
        return list(out.values())

    return backend.run(read, readonly=True)


def _add_counts(session: Session, flows: dict[str, FlowSummary]) -> None:
    ids = list(flows)
    done_states = (states.SUCCESS, states.IGNORE)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        counts = session.execute(
            select(
                AtomRow.flow_uuid,
                func.count(),
                func.sum(case((AtomRow.state.in_(done_states), 1), else_=0)),
            )
            .where(AtomRow.flow_uuid.in_(chunk))
            .group_by(AtomRow.flow_uuid)
        )
        for flow_uuid, total, done in counts:
            flows[flow_uuid].total, flows[flow_uuid].done = int(total), int(done or 0)
        # an atom that failed keeps its failure after it was compensated (state REVERTED), so a
        # REVERTED flow still names the atom that failed
        has_failure = AtomRow.failure.is_not(None) | AtomRow.revert_failure.is_not(None)
        busy = session.execute(
            select(AtomRow.flow_uuid, AtomRow.name, AtomRow.state, has_failure.label("has_failure"))
            .where(AtomRow.flow_uuid.in_(chunk),
                   AtomRow.state.in_([states.RUNNING, states.REVERTING, states.FAILURE, states.REVERT_FAILURE])
                   | has_failure)
            .order_by(AtomRow.name)
        )
        waiting = session.execute(
            select(AtomRow.flow_uuid, AtomRow.name)
            .where(AtomRow.flow_uuid.in_(chunk), AtomRow.queued.is_(True), AtomRow.wait_reason.is_not(None))
            .order_by(AtomRow.name)
        )
        for flow_uuid, atom in waiting:
            flows[flow_uuid].waiting.append(atom)
        for flow_uuid, atom, atom_state, failed in busy:
            if atom_state in (states.RUNNING, states.REVERTING):
                flows[flow_uuid].running.append(atom)
            if failed or atom_state in (states.FAILURE, states.REVERT_FAILURE):
                flows[flow_uuid].failed.append(atom)


def count_by_state(backend: Backend, newer_than: dt.timedelta | None = None) -> dict[str, int]:
    """How many flows are in each state (created within ``newer_than``, if given)."""

    def read(session: Session) -> dict[str, int]:
        query = select(FlowRow.state, func.count()).group_by(FlowRow.state)
        if newer_than is not None:
            query = query.where(FlowRow.created_at > utcnow() - newer_than)
        return {s: int(n) for s, n in session.execute(query)}

    return backend.run(read, readonly=True)


@dataclass
class WorkerView:
    """A worker process as the logbook saw it (``host:pid``)."""

    worker: str
    running: list[str] = field(default_factory=list)  # "flow name / atom"
    finished: int = 0
    last_seen: dt.datetime | None = None

    @property
    def host(self) -> str:
        return self.worker.rsplit(":", 1)[0]


def worker_views(backend: Backend, since: dt.timedelta = dt.timedelta(minutes=10)) -> list[WorkerView]:
    """Workers that ran atoms recently: what they run now, how many they finished, when last seen.

    Read from the atoms table (each atom records the worker process that ran it and
    its heartbeat), so it needs no broker; ``celeryflow top`` adds Celery's own view
    when a broker is configured.
    """
    cutoff = utcnow() - since

    def read(session: Session) -> list[WorkerView]:
        found: dict[str, WorkerView] = {}
        rows = session.execute(
            select(AtomRow.worker, AtomRow.name, AtomRow.state, AtomRow.heartbeat_at, AtomRow.finished_at,
                   AtomRow.started_at, FlowRow.name)
            .join(FlowRow, FlowRow.uuid == AtomRow.flow_uuid)
            .where(AtomRow.worker.is_not(None))
            .where(
                AtomRow.state.in_([states.RUNNING, states.REVERTING])
                | (AtomRow.finished_at > cutoff)
            )
        )
        for worker, atom, atom_state, beat, finished, started, flow_name in rows:
            if worker is None:
                continue
            view = found.setdefault(worker, WorkerView(worker))
            if atom_state in (states.RUNNING, states.REVERTING):
                verb = "" if atom_state == states.RUNNING else " (revert)"
                view.running.append(f"{flow_name} / {atom}{verb}")
            else:
                view.finished += 1
            seen = max((t for t in (beat, finished, started) if t is not None), default=None)
            if seen is not None and (view.last_seen is None or seen > view.last_seen):
                view.last_seen = seen
        return sorted(found.values(), key=lambda w: w.worker)

    return backend.run(read, readonly=True)


def plain(value: Any) -> Any:
    """``value`` as plain JSON types (datetimes, UUIDs, decimals become strings)."""
    return json.loads(json.dumps(value, default=str))


def status(view: FlowView, *, results: bool = False, is_masked: Any = None) -> dict[str, Any]:
    """A JSON-able status document for web views (``/flows/<id>``).

    ``results=True`` adds what the atoms provided, with secret-looking names masked.
    """
    check = is_masked or _default_masker()
    doc: dict[str, Any] = {
        "id": view.uuid,
        "name": view.name,
        "state": view.state,
        "done": view.state in states.FLOW_TERMINAL,
        "progress": {"done": view.done, "total": view.total},
        "atoms": {name: atom.state for name, atom in view.atoms.items()},
        "failures": {name: f.pformat() for name, f in view.failures.items()},
        "created_at": view.created_at.isoformat() if view.created_at else None,
        "finished_at": view.finished_at.isoformat() if view.finished_at else None,
    }
    if results:
        doc["results"] = {
            name: (MASK if check(name) else mask_value(plain(value), check, MASK))
            for name, value in view.results().items()
        }
    return doc


__all__ = [
    "ACTIVE_STATES",
    "AtomView",
    "FlowSummary",
    "FlowView",
    "WorkerView",
    "count_by_state",
    "list_flows",
    "load_flow",
    "plain",
    "status",
    "worker_views",
]
