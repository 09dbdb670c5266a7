"""Per-process knowledge of flows: their compilation, atom objects and deciders.

A flow submitted from this process is known *live* (its own objects, so
lambdas work in the embedded default). Any other flow is rebuilt from the
logbook spec, through the registry only: nothing is imported because a row
names it.

Live flows are bounded, so a web process or conductor does not keep every flow
it ever submitted: a flow its engine saw finish is dropped, and at most
:data:`LIVE_SIZE` others are kept, least recently used dropped first. A flow
that an engine or handle still holds (one being followed, whose atoms' own
notifiers must keep firing in this process's workers) stays reachable whatever
the bound, through a weak reference: it goes when its last holder does.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from celeryflow import serialization, states
from celeryflow.compiler import Compilation
from celeryflow.exceptions import CorruptSpec, NotFound, NotRegistered
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.spec import STORED_VERSION, decode_stored

if TYPE_CHECKING:
    from celeryflow.atom import Atom
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

SPEC_VERSION = STORED_VERSION
_CACHE_SIZE = 512
#: live flows kept without a holder (submitted and not seen finishing: fire and forget)
LIVE_SIZE = 1024


@dataclass
class FlowRuntime:
    """What a process needs to run atoms of one flow."""

    uuid: str
    comp: Compilation
    spec: dict[str, Any]
    atoms: dict[str, Atom] | None = None
    deciders: list[Callable[..., Any]] | None = None
    error: NotRegistered | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def atom(self, name: str) -> Atom:
        """The atom object, rebuilding the flow from its spec on first use."""
        self._ensure_objects()
        if self.atoms is None:
            assert self.error is not None
            raise self.error
        try:
            return self.atoms[name]
        except KeyError:
            raise NotRegistered(f"Flow {self.uuid} has no atom {name!r} in this process's rebuild of it") from None

    def decide(self, link_id: int, history: dict[str, Any]) -> bool:
        self._ensure_objects()
        if self.deciders is None:
            assert self.error is not None
            raise self.error
        return bool(self.deciders[link_id](history))

    def _ensure_objects(self) -> None:
        if self.atoms is not None or self.error is not None:
            return
        with self.lock:
            if self.atoms is not None or self.error is not None:
                return
            try:
                flow = rebuild_flow(self.spec)
            except NotRegistered as exc:
                self.error = exc
                return
            from celeryflow import compiler

            self.deciders = list(compiler.deciders(flow))
            self.atoms = compiler.atoms_by_name(flow)


def rebuild_flow(spec: dict[str, Any]) -> Any:
    from celeryflow import spec as specmod

    if spec.get("factory"):
        return specmod.flow_from_factory_spec(spec["factory"])
    if spec.get("flow"):
        return specmod.flow_from_spec(spec["flow"])
    raise NotRegistered("The flow's spec names neither a flow structure nor a factory; it cannot be rebuilt here")


_lock = threading.Lock()
#: live flows, least recently used first (strong references, at most LIVE_SIZE)
_live: OrderedDict[str, FlowRuntime] = OrderedDict()
#: every live flow something in this process still holds (an engine, a handle)
_reachable: weakref.WeakValueDictionary[str, FlowRuntime] = weakref.WeakValueDictionary()
_cache: OrderedDict[str, FlowRuntime] = OrderedDict()


def register_live(runtime: FlowRuntime) -> None:
    """Know ``runtime`` (a flow submitted or run from this process, with its own objects)."""
    with _lock:
        _live[runtime.uuid] = runtime
        _live.move_to_end(runtime.uuid)
        _reachable[runtime.uuid] = runtime
        while len(_live) > LIVE_SIZE:
            _live.popitem(last=False)  # still found through _reachable while someone holds it


def finished_live(flow_uuid: str) -> None:
    """The flow was seen finishing: keep its objects only as long as someone holds them."""
    with _lock:
        _live.pop(flow_uuid, None)


def forget_live(flow_uuid: str) -> None:
    """Forget a live flow altogether (the next use rebuilds it from its spec)."""
    with _lock:
        _live.pop(flow_uuid, None)
        _reachable.pop(flow_uuid, None)


def runtime_for(backend: Backend, flow_uuid: str) -> FlowRuntime:
    """The runtime of a flow: live if this process submitted it, else rebuilt from the logbook."""
    with _lock:
        found = _live.get(flow_uuid)
        if found is not None:
            _live.move_to_end(flow_uuid)
            return found
        found = _reachable.get(flow_uuid) or _cache.get(flow_uuid)
        if found is not None:
            _cache.move_to_end(flow_uuid, last=True) if flow_uuid in _cache else None
            return found

    def read(session: Any) -> str | None:
        return session.scalar(select(FlowRow.spec).where(FlowRow.uuid == flow_uuid))

    spec_json = backend.run(read)
    if spec_json is None:
        raise NotFound(f"Flow {flow_uuid} is not in the logbook {backend!r}")
    try:
        spec, comp = decode_stored(spec_json, flow_uuid)
    except CorruptSpec as exc:
        # It can never run anywhere: fail it now, or every delivery and sweep meets it again.
        fail_corrupt(backend, flow_uuid, exc)
        raise
    runtime = FlowRuntime(flow_uuid, comp, spec)
    with _lock:
        _cache[flow_uuid] = runtime
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return runtime


def forget_cached(flow_uuid: str) -> None:
    """Drop a flow rebuilt from its spec (the next use reads the logbook again)."""
    with _lock:
        _cache.pop(flow_uuid, None)


#: an atom in a worker's hands when its flow is failed for a corrupt spec: where it ends
_ABANDONED = ((states.RUNNING, states.FAILURE, "failure"), (states.REVERTING, states.REVERT_FAILURE, "revert_failure"))


def fail_corrupt(backend: Backend, flow_uuid: str, error: CorruptSpec, who: str | None = None) -> bool:
    """End an active flow whose spec cannot be decoded as FAILURE, with ``error`` as its reason.

    Nothing of it can run (no process can rebuild it), so nothing is left for the sweep:
    queued atoms are taken off the books, atoms in a worker's hands end FAILURE /
    REVERT_FAILURE (a late result finds them moved on and is discarded). The reason is
    the flow's failure (``engine.run()`` raises it) and the details of its FAILURE event.
    Returns False when the flow was not active (already failed by someone else).
    """
    from celeryflow.runtime import bookkeeping
    from celeryflow.runtime.logbook import Events, cas_atom, decode_failures, set_flow_state
    from celeryflow.types.failure import Failure

    failure = Failure.from_exception(error).to_dict()
    failure_json = serialization.dumps(failure)
    reason = str(error)

    def txn(session: Any) -> bool:
        flow = backend.lock_flow(session, flow_uuid)
        if flow is None or flow.state not in _ACTIVE:
            return False
        events = Events(flow_uuid, flow.epoch, who)
        now = utcnow()
        for old, new, column in _ABANDONED:
            names = session.scalars(
                select(AtomRow.name).where(AtomRow.flow_uuid == flow_uuid, AtomRow.state == old)
            ).all()
            for name in names:
                cas_atom(session, flow_uuid, name, (old,), new, events, details={"reason": reason},
                         queued=False, finished_at=now, **{column: failure_json})
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.queued.is_(True))
            .values(queued=False)
            .execution_options(synchronize_session=False)
        )
        failures = decode_failures(flow)
        failures[flow.name] = failure
        flow.failures = serialization.dumps(failures)
        bookkeeping.set_in_flight(flow, 0, held=0)
        set_flow_state(flow, states.FAILURE, events, reason=reason)
        events.flush(session)
        return True

    failed = bool(backend.run(txn))
    if failed:
        LOG.error("flow %s failed: %s", flow_uuid, reason)
    return failed


_ACTIVE = frozenset(old for old in (states.RUNNING, states.REVERTING, states.SUSPENDING, states.RESUMING)
                    if states.flow_transition_allowed(old, states.FAILURE))
