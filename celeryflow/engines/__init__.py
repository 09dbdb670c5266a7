"""Engines (TaskFlow's ``taskflow.engines``): load a flow and run it on Celery."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celeryflow.engines import options as engine_options
from celeryflow.engines.engine import EVENT_UPDATE_PROGRESS, CeleryEngine
from celeryflow.engines.factories import flow_from_empty_detail, save_factory_details
from celeryflow.exceptions import NotRegistered

#: TaskFlow-style alias
Engine = CeleryEngine

_ENGINES = engine_options.ENGINES


def _check_engine(engine: str) -> None:
    engine_options.check_engine(engine)


def _engine_setup(engine: str, app: Any, backend: Any, options: dict[str, Any]) -> Any:
    """Check ``engine`` (and its options); the app of a worker-based engine (its options taken out)."""
    _check_engine(engine)
    if engine in engine_options.WORKER_BASED:
        from celeryflow.engines import worker_based

        broker = worker_based.split_options(options)
        if app is None:
            app = worker_based.app_for(**broker, backend=backend)
    return app


def load(
    flow: Any,
    store: Mapping[str, Any] | None = None,
    engine: str = "celery",
    app: Any = None,
    backend: Any = None,
    book: Any = None,
    flow_detail: Any = None,
    **options: Any,
) -> CeleryEngine:
    """Build an engine for ``flow`` (nothing runs until ``run()``).

    With ``flow_detail`` (a FlowDetail or a flow id): a detail a flow already ran in is
    resumed (as :func:`load_from_detail`); a FlowDetail that is new or empty (made by the
    caller, perhaps saved with ``save_logbook``) gets ``flow`` run into it, keeping its
    uuid, name, logbook and metadata, as TaskFlow does.

    ``engine`` is ``"celery"`` (also ``"default"``, ``"parallel"``), ``"serial"`` or
    ``"worker-based"``: see :mod:`celeryflow.engines.options` for what they and
    ``max_workers=`` / ``executor=`` mean.
    """
    if flow_detail is not None:
        _check_engine(engine)
        if flow is None or isinstance(flow_detail, str):
            return load_from_detail(flow_detail, store=store, engine=engine, backend=backend, app=app, book=book,
                                    **options)
        from celeryflow.engines.engine import resolve_app, resolve_backend
        from celeryflow.runtime.adopt import is_empty_detail

        resolved_app = resolve_app(_engine_setup(engine, app, backend, options))
        resolved = resolve_backend(backend, resolved_app)
        uuid = str(flow_detail.uuid)
        if resolved.run(lambda session: is_empty_detail(session, uuid), readonly=True) is False:
            return load_from_detail(flow_detail, store=store, backend=resolved, app=resolved_app, book=book,
                                    **options)
        return CeleryEngine(flow, store=store, app=resolved_app, backend=resolved, book=book, options=options,
                            into_detail=flow_detail, engine=engine)
    app = _engine_setup(engine, app, backend, options)
    return CeleryEngine(flow, store=store, app=app, backend=backend, book=book, options=options, engine=engine)


def run(flow: Any, store: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Load and run ``flow``; return ``engine.storage.fetch_all()``."""
    eng = load(flow, store=store, **kwargs)
    eng.run()
    return eng.storage.fetch_all()


def load_from_factory(
    flow_factory: Callable[..., Any],
    factory_args: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    store: Mapping[str, Any] | None = None,
    engine: str = "celery",
    app: Any = None,
    backend: Any = None,
    book: Any = None,
    **options: Any,
) -> CeleryEngine:
    """Build the flow with a (registered) factory; workers and conductors rebuild it by name."""
    app = _engine_setup(engine, app, backend, options)
    from celeryflow import spec

    args = list(factory_args or ())
    kwargs = dict(factory_kwargs or {})
    try:
        factory_spec: dict[str, Any] | None = spec.factory_spec(flow_factory, args, kwargs)
    except NotRegistered:
        # A factory in __main__ (or a closure) cannot be rebuilt elsewhere; the embedded
        # default runs the live flow in this process, so only remote apps need the name.
        from celeryflow.engines.engine import resolve_app
        from celeryflow.runtime.embedded import is_embedded

        if not is_embedded(resolve_app(app)):
            raise
        factory_spec = None
    flow = flow_factory(*args, **kwargs)
    return CeleryEngine(
        flow, store=store, app=app, backend=backend, book=book, factory_spec=factory_spec, options=options,
        engine=engine,
    )


def load_from_detail(
    flow_detail: Any,
    store: Mapping[str, Any] | None = None,
    engine: str = "celery",
    backend: Any = None,
    app: Any = None,
    **options: Any,
) -> CeleryEngine:
    """Re-attach to a flow in the logbook (a FlowDetail or a flow id) to resume it.

    A detail no flow ran in yet, whose metadata names a flow factory
    (:func:`save_factory_details`), gets that factory's flow run into it; the factory
    must be registered here (celeryflow never imports a module a row names).

    A flow keeps the limit of atoms at once it was started with; ``engine="worker-based"``
    with ``url=``/``exchange=`` resumes it on the workers of that broker.
    """
    app = _engine_setup(engine, app, backend, options)
    flow_uuid = flow_detail if isinstance(flow_detail, str) else str(flow_detail.uuid)
    fresh = flow_from_empty_detail(flow_uuid, backend=backend, app=app)
    if fresh is not None:
        flow, detail, resolved = fresh
        into = detail if isinstance(flow_detail, str) else flow_detail
        return load(flow, store=store, backend=resolved, app=app, flow_detail=into, **options)
    book = options.pop("book", None)  # a LogBook to keep current (as ``load(..., book=)``)
    eng = CeleryEngine(None, app=app, backend=backend, flow_uuid=flow_uuid, book=book, options=options)
    if not isinstance(flow_detail, str):
        eng._caller_detail = flow_detail  # brought up to date in place after run(), as TaskFlow's is
    if store:
        eng.storage.inject(store)
    return eng


__all__ = [
    "EVENT_UPDATE_PROGRESS",
    "CeleryEngine",
    "Engine",
    "load",
    "load_from_detail",
    "load_from_factory",
    "run",
    "save_factory_details",
]
