"""Read-only views of flows in the logbook: for the CLI (``flows``, ``top``, ``graph``) and web status views.

Everything here reads; nothing writes. A :class:`FlowView` is one flow with its
atoms in execution order (from the compiled spec stored with the flow), their
states, timings, workers, failures and retry history; :func:`list_flows` and
:func:`worker_views` are cheap summaries (no specs, no results) for listings and
``celeryflow top``, written in ``listings`` and re-exported here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from celeryflow import serialization, states
from celeryflow.contrib.listings import (
    FlowSummary,
    WorkerView,
    count_by_state,
    list_flows,
    seconds_between,
    worker_views,
)
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
        return seconds_between(self.started_at, self.finished_at or utcnow())


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
        return seconds_between(self.created_at, self.finished_at or (None if self.state in states.FLOW_TERMINAL
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
