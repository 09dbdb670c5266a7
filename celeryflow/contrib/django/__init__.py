"""celeryflow for Django: settings from ``CELERYFLOW_*``, the logbook in your database, transactional submit.

::

    # settings.py
    INSTALLED_APPS = [..., "celeryflow.contrib.django"]
    CELERYFLOW_BACKEND = "django"            # the logbook lives in DATABASES["default"]
    CELERYFLOW_APP = "proj.celery:app"       # your Celery app (unset: embedded worker, for development)

    # proj/celery.py (workers)
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    from celeryflow.contrib.django import install
    install(app)                             # same logbook URL and settings as the web processes

    # views.py
    from celeryflow.contrib import django as cf

    @transaction.atomic
    def place_order(request):
        order = Order.objects.create(...)
        handle = cf.submit(order_flow, store={"order_id": order.pk}, on_commit=True)
        order.flow_id = handle.id
        order.save()
        return JsonResponse({"flow": handle.id}, status=202)

    # urls.py
    path("flows/", include("celeryflow.contrib.django.urls"))   # GET flows/<id>/ → JSON state

``manage.py migrate`` creates the logbook tables (Alembic, through celeryflow's own
migrations) when ``CELERYFLOW_BACKEND = "django"``; ``manage.py celeryflow …`` runs
the ``celeryflow`` CLI with the project's logbook (``manage.py celeryflow top``).
See docs/django.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeryflow.contrib.django.conf import backend, get_app, install, logbook_url, logbook_url_for

if TYPE_CHECKING:
    from celeryflow.handle import FlowHandle


def submit(flow_or_factory: Any, store: Any = None, **kwargs: Any) -> FlowHandle:
    """Submit a flow, tied to the view's transaction by default (see :mod:`.transaction`)."""
    from celeryflow.contrib.django.transaction import submit as _submit

    return _submit(flow_or_factory, store, **kwargs)


def handle(flow_id: str) -> FlowHandle:
    """Re-attach to a flow with the project's app and logbook."""
    from celeryflow.handle import FlowHandle

    return FlowHandle(flow_id, app=get_app(), backend=backend())


def status(flow_id: str, *, results: bool = False) -> dict[str, Any]:
    """The JSON status of a flow (what the ``flows/<id>/`` view returns).

    Raises:
        NotFound: no such flow.
    """
    from celeryflow.contrib import snapshot

    return snapshot.status(snapshot.load_flow(backend(), flow_id), results=results)



__all__ = ["backend", "get_app", "handle", "install", "logbook_url", "logbook_url_for", "status", "submit"]
