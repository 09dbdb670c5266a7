"""Transactional submit for Flask-SQLAlchemy sessions (what ``on_commit`` is for Django).

::

    from celeryflow.contrib.flask import CeleryFlow

    db = SQLAlchemy(app)
    flows = CeleryFlow(app)

    @app.post("/orders")
    def place_order():
        order = Order(...)
        db.session.add(order)
        handle = flows.submit(order_flow, store={"order_id": 42}, session=db.session)
        order.flow_id = handle.id
        db.session.commit()          # the flow's first messages are sent right after this
        return {"flow": handle.id}, 202

* **Logbook in the session's database** (the same database and schema, recognised by
  the logbook's own id, ``celeryflow_identity``): the flow, its atoms and spec are
  written through the session's connection, in its transaction, already started
  (RUNNING, first atoms queued). After ``commit()`` its messages are published; after a
  rollback (or a request that never commits) nothing is left and nothing is sent. If the
  process dies between the commit and the send, the conductor's sweep sends them.
* **Logbook elsewhere**: the flow is written and started right after the commit (a
  rollback leaves nothing; the id is known at once).

Without ``session=``, ``CeleryFlow.submit`` is plain :func:`celeryflow.submit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celeryflow.contrib import transactional

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from celeryflow.handle import FlowHandle
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

#: ``session.info`` key: what to do after this session's next commit
_PENDING = "celeryflow_after_commit"


def submit(
    flow_or_factory: Any,
    store: Mapping[str, Any] | None = None,
    *,
    session: Any,
    app: Any = None,
    backend: Any = None,
    factory_args: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> FlowHandle:
    """Submit a flow that starts only if ``session``'s transaction commits.

    Args:
        flow_or_factory: a flow, or a registered flow factory (what workers can rebuild).
        store: the flow's inputs.
        session: a SQLAlchemy session (Flask-SQLAlchemy's ``db.session``, a ``scoped_session``, works).
        app, backend: the Celery app and the logbook (default: as ``celeryflow.submit``).

    Returns:
        A :class:`~celeryflow.FlowHandle`; ``handle.id`` is final at once.

    Raises:
        BrokerUnavailable: the broker is down: nothing was written.
        MissingDependencies, SerializationError, NotRegistered: bad input, nothing written.
    """
    from sqlalchemy.orm import scoped_session

    from celeryflow.handle import FlowHandle
    from celeryflow.install import default_app
    from celeryflow.persistence.backends import fetch
    from celeryflow.runtime.settings import Settings, default_logbook_url

    real_session: Session = session() if isinstance(session, scoped_session) else session  # db.session
    app = app or default_app()
    if backend is None:
        backend = app.conf.get("celeryflow_backend") or Settings.from_sources(app.conf).backend
    real: Backend = fetch(backend or default_logbook_url())
    engine = transactional.build(flow_or_factory, store, app, real, factory_args, factory_kwargs, options)
    engine.validate()  # missing inputs: raise before anything is written
    transactional.check_broker(engine)
    real.validate()  # the logbook's schema exists before the session's transaction holds locks

    if same_database(real, real_session):
        from sqlalchemy.orm import Session as SASession

        # a session on the application session's own connection joins its transaction
        inner = SASession(bind=real_session.connection(), autoflush=True, expire_on_commit=False)
        bridged: Any = transactional.InSession(real, inner)
        engine.backend = bridged
        try:
            engine.prepare()
            what = transactional.start_in(engine, bridged)
            inner.flush()
        finally:
            engine.backend = real
            inner.close()
        _after_commit(real_session, lambda: transactional.send_after_commit(engine, what))
    else:
        recorder: Any = transactional.Recorder(real)
        engine.backend = recorder
        try:
            engine.prepare()  # builds the spec and the id; the write is kept for after the commit
        finally:
            engine.backend = real
        writes = recorder.writes
        _after_commit(real_session, lambda: transactional.persist_and_start(engine, writes))
    return FlowHandle(engine.flow_uuid, app=engine.app, backend=real, _engine=engine)


def same_database(backend: Backend, session: Session) -> bool:
    """Does ``backend``'s logbook live where ``session`` writes (same database, same schema)?

    Compared by the logbook's stored id, read through the session's own connection, so
    URL spellings, drivers and host aliases do not matter.
    """
    from sqlalchemy import inspect, text

    connection = session.connection()
    if not inspect(connection).has_table("celeryflow_identity"):
        return False
    found = connection.execute(text("SELECT value FROM celeryflow_identity WHERE name = 'logbook_id'")).scalar()
    return bool(found) and found == backend.logbook_id


def _after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` after ``session``'s next commit; forget it on rollback."""
    from sqlalchemy import event

    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []

        def committed(sess: Session) -> None:
            actions = list(sess.info.get(_PENDING) or [])
            sess.info[_PENDING] = []
            for run in actions:
                try:
                    run()
                except Exception:  # logged by the action; the commit itself stands
                    pass

        def rolled_back(sess: Session, *args: Any) -> None:
            if sess.info.get(_PENDING):
                LOG.info("celeryflow: the session rolled back; %d flow(s) submitted in it are dropped",
                         len(sess.info[_PENDING]))
            sess.info[_PENDING] = []

        event.listen(session, "after_commit", committed)
        event.listen(session, "after_rollback", rolled_back)
    pending.append(action)


__all__ = ["same_database", "submit"]
