"""TaskFlow's ``engines.save_factory_details`` and loading a detail that names its factory.

``save_factory_details(fd, factory, args, kwargs, backend=...)`` writes
``fd.meta["factory"] = {"name": ..., "args": ..., "kwargs": ...}`` (TaskFlow's layout)
and, with a backend, saves the detail. ``load_from_detail`` of such a detail, before
any flow ran in it, calls that factory and runs its flow into the detail. The factory
is found by name without importing anything: it is registered
(``@celeryflow.registry.register``), defined in a module workers import, or was passed
to ``save_factory_details`` in this very process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celeryflow import registry, serialization
from celeryflow.exceptions import NotFound, NotRegistered

_saved: dict[str, Callable[..., Any]] = {}
_saved_lock = threading.Lock()


def _ref(factory: Callable[..., Any] | str) -> str:
    if isinstance(factory, str):
        if ":" in factory:
            return factory
        module, _, name = factory.rpartition(".")  # TaskFlow's "package.module.function"
        if not module:
            raise NotRegistered(f"{factory!r} is not a flow factory name such as 'package.module:make_flow'")
        return f"{module}:{name}"
    ref = registry.ref_of(factory)
    if ref is None:
        raise NotRegistered(
            f"The flow factory {factory!r} has no name to be found by: define it at module level "
            "(not a lambda or a nested function)"
        )
    with _saved_lock:
        _saved[ref] = factory
    return ref


def save_factory_details(
    flow_detail: Any,
    flow_factory: Callable[..., Any] | str,
    factory_args: Sequence[Any] | None,
    factory_kwargs: Mapping[str, Any] | None,
    backend: Any = None,
) -> None:
    """Record in ``flow_detail.meta`` which factory (and arguments) builds its flow.

    Args:
        flow_detail: the FlowDetail (already saved, if ``backend`` is given).
        flow_factory: the factory function, or its name (``"pkg.module:make_flow"`` or TaskFlow's
            ``"pkg.module.make_flow"``).
        factory_args: positional arguments (JSON values).
        factory_kwargs: keyword arguments (JSON values).
        backend: a backend or URL: the detail is saved there (``update_flow_details``).

    Raises:
        NotRegistered: the factory has no module-level name.
        SerializationError: an argument is not JSON.
        NotFound: ``backend`` is given and the detail was not saved there.
    """
    data = {
        "factory": {
            "name": _ref(flow_factory),
            "args": serialization.roundtrip(list(factory_args or []), "factory args"),
            "kwargs": serialization.roundtrip(dict(factory_kwargs or {}), "factory kwargs"),
        }
    }
    if not flow_detail.meta:
        flow_detail.meta = data
    else:
        flow_detail.meta.update(data)
    if backend is not None:
        from celeryflow.persistence.backends import fetch

        fetch(backend).update_flow_details(flow_detail)


def _lookup(ref: str) -> Callable[..., Any]:
    with _saved_lock:
        factory = _saved.get(ref)
    return factory if factory is not None else registry.lookup(ref, "factory")


def flow_from_empty_detail(flow_uuid: str, backend: Any = None, app: Any = None) -> tuple[Any, Any, Any] | None:
    """``(flow, detail, backend)`` for a detail no flow ran in that names its factory, else None."""
    from celeryflow.engines.engine import resolve_app, resolve_backend

    resolved = resolve_backend(backend, resolve_app(app))
    try:
        detail = resolved.get_flow_details(flow_uuid, lazy=True)
    except NotFound:
        return None
    factory = (detail.meta or {}).get("factory")
    if detail.spec is not None or not isinstance(factory, Mapping) or not factory.get("name"):
        return None
    flow = _lookup(str(factory["name"]))(*(factory.get("args") or []), **dict(factory.get("kwargs") or {}))
    return flow, detail, resolved


__all__ = ["flow_from_empty_detail", "save_factory_details"]
