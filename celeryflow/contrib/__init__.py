"""Integrations: Django (:mod:`celeryflow.contrib.django`), Flask (:mod:`celeryflow.contrib.flask`)
and Flower/Celery events (:mod:`celeryflow.contrib.flower`).

Each is imported on demand; importing :mod:`celeryflow` never imports Django or Flask.
"""
