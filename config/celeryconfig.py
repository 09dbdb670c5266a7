"""Sample Celery configuration for a celeryflow deployment.

Copy it into your project, or point Celery at it:

    CELERY_CONFIG_MODULE=celeryconfig PYTHONPATH=config celery -A celeryflow_tasks worker

Every value comes from a ``CELERYFLOW_*`` environment variable (see
docs/configuration.md); the defaults suit a local Redis. This directory is **not** a
Python package on purpose (a top-level ``config`` package would shadow a Django
project's ``config``).
"""

import os


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# --- transport --------------------------------------------------------------------
broker_url = _env("CELERYFLOW_BROKER_URL", "redis://127.0.0.1:6379/0")
# None/empty = no result backend: celeryflow keeps results in its logbook, not here.
result_backend = os.environ.get("CELERYFLOW_RESULT_BACKEND", "").strip() or None
broker_connection_retry_on_startup = True
broker_transport_options = {
    # Redis/SQS: an unacknowledged message is redelivered after this many seconds.
    # Must exceed the longest atom; celeryflow's heartbeat sweep recovers a dead
    # worker's atom long before this (CELERYFLOW_HEARTBEAT_TIMEOUT).
    "visibility_timeout": _int("CELERYFLOW_VISIBILITY_TIMEOUT", 3600),
}

# --- serialization: JSON only, never pickle -----------------------------------------
accept_content = ["json"]
result_accept_content = ["json"]
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"

# --- reliability ------------------------------------------------------------------
task_acks_late = True                  # ack after the atom ran: a dead worker's atom is redelivered
task_reject_on_worker_lost = True      # a killed pool child requeues its message at once
worker_prefetch_multiplier = 1         # do not hoard messages a dying worker would sit on
task_track_started = True
worker_send_task_events = True         # Flower
task_send_sent_event = True

# --- what the worker imports: the modules that define your atoms and flow factories --
imports = _list("CELERYFLOW_IMPORTS")

# --- celeryflow's own settings (read by celeryflow.install / celeryflow_tasks) -------
# Uncomment to set them here instead of in the environment:
# celeryflow_backend = "postgresql://celeryflow@db/celeryflow"
# celeryflow_heartbeat_timeout = 60
# celeryflow_sweep_interval = 15

timezone = "UTC"
enable_utc = True
