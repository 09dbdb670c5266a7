"""TaskFlow's keys in atom event details: ``task_uuid``, ``retry_name``/``retry_uuid``, ``result``.

TaskFlow's listeners pick task events by ``task_name`` *and* ``task_uuid`` and retry
events by ``retry_name`` and ``retry_uuid``; a finished atom's event carries its
``result`` (the execute result, the :class:`~celeryflow.types.failure.Failure`, or the
revert's outcome). The engine adds these keys here, reading each atom's uuid from the
logbook once per engine.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from celeryflow import states

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine

_uuids: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()

_REVERT_RESULT_STATES = (states.REVERTED, states.REVERT_FAILURE)


def _atom_uuid(engine: CeleryEngine, name: str) -> str | None:
    known = _uuids.get(engine)
    if known is None or name not in known:
        try:
            known = engine.storage.get_atom_uuids()
        except Exception:
            return None
        _uuids[engine] = known
    return known.get(name)


def add_taskflow_keys(engine: CeleryEngine, atom_name: str | None, state: str, details: dict[str, Any]) -> None:
    """Add TaskFlow's keys to the details of an atom event of ``atom_name`` moving to ``state``."""
    if atom_name is None:
        return
    uuid = _atom_uuid(engine, atom_name)
    atom = engine.compile().atoms.get(atom_name)
    if atom is not None and atom.kind == "retry":
        details.update(retry_name=atom_name, retry_uuid=uuid)
    else:
        details["task_uuid"] = uuid
    if "result" in details:
        return
    try:
        if state == states.FAILURE:
            details["result"] = engine.storage.get(atom_name)
        elif state in _REVERT_RESULT_STATES:
            details["result"] = engine.storage.get_revert_result(atom_name)
    except Exception:
        details["result"] = None


def atom_versions(flow: Any) -> dict[str, str]:
    """``{atom name: version string}`` (TaskFlow's ``atom.version``, ``(1, 0)`` -> ``"1.0"``) of a flow."""
    out: dict[str, str] = {}
    for atom in flow.iter_atoms():
        version = getattr(atom, "version", None)
        if isinstance(version, (list, tuple)):
            version = ".".join(str(part) for part in version)
        if version is not None and atom.name is not None:
            out[atom.name] = str(version)
    return out


__all__ = ["add_taskflow_keys", "atom_versions"]
