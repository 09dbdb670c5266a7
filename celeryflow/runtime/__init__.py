"""The execution runtime: logbook transitions, dispatch as Celery canvas, worker tasks.

Nothing here is public API; the engine (``celeryflow.engines``), ``submit`` and
``install`` are built on it.
"""
