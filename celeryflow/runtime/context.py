"""Per-process knowledge of flows: their compilation, atom objects and deciders.

A flow submitted from this process is known *live* (its own objects, so
lambdas work in the embedded default). Any other flow is rebuilt from the
logbook spec, through the registry only: nothing is imported because a row
names it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from celeryflow import serialization
from celeryflow.compiler import Compilation
from celeryflow.exceptions import NotFound, NotRegistered
from celeryflow.persistence.tables import FlowRow

if TYPE_CHECKING:
    from celeryflow.atom import Atom
    from celeryflow.persistence.backends.base import Backend

SPEC_VERSION = 1
_CACHE_SIZE = 512


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
_live: dict[str, FlowRuntime] = {}
_cache: OrderedDict[str, FlowRuntime] = OrderedDict()


def register_live(runtime: FlowRuntime) -> None:
    with _lock:
        _live[runtime.uuid] = runtime


def forget_live(flow_uuid: str) -> None:
    with _lock:
        _live.pop(flow_uuid, None)


def runtime_for(backend: Backend, flow_uuid: str) -> FlowRuntime:
    """The runtime of a flow: live if this process submitted it, else rebuilt from the logbook."""
    with _lock:
        found = _live.get(flow_uuid) or _cache.get(flow_uuid)
        if found is not None:
            _cache.move_to_end(flow_uuid, last=True) if flow_uuid in _cache else None
            return found

    def read(session: Any) -> str | None:
        return session.scalar(select(FlowRow.spec).where(FlowRow.uuid == flow_uuid))

    spec_json = backend.run(read)
    if spec_json is None:
        raise NotFound(f"Flow {flow_uuid} is not in the logbook {backend!r}")
    spec = serialization.loads(spec_json)
    runtime = FlowRuntime(flow_uuid, Compilation.from_dict(spec["compilation"]), spec)
    with _lock:
        _cache[flow_uuid] = runtime
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return runtime
