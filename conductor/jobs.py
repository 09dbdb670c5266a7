"""The job conductor of ``python -m conductor``: claim jobs from a board and run them until stopped.

``conductor/__main__.py`` calls :func:`run_job_conductor` (in a thread beside the
recovery sweep, or as the main loop)::

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_job_conductor(board_conf_from_url(os.environ["CELERYFLOW_JOBBOARD_URL"]), name, 4, stop)

The logic lives in :mod:`celeryflow.conductors`; this module only wires it up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

LOG = logging.getLogger("conductor.jobs")

#: the board name (and default namespace) when the conf names none
DEFAULT_BOARD_NAME = "celeryflow"


def default_name() -> str:
    """A conductor name unique per process: ``conductor@<host>:<pid>``."""
    return f"conductor@{socket.gethostname()}:{os.getpid()}"


def board_conf_from_url(
    url: str, namespace: str | None = None, claim_expiry: float | None = None
) -> dict[str, Any]:
    """A board conf from a URL: ``redis://…`` is the Redis board, any database URL the SQL board."""
    conf: dict[str, Any] = {"board": "redis" if url.startswith(("redis://", "rediss://")) else "sql", "url": url}
    if namespace:
        conf["namespace"] = namespace
    if claim_expiry is not None:
        conf["claim_expiry"] = claim_expiry
    return conf


def run_job_conductor(
    board_conf: Mapping[str, Any] | str,
    name: str | None,
    concurrency: int,
    stop_event: threading.Event,
    *,
    app: Any = None,
    persistence: Any = None,
    max_dispatches: int | None = None,
    wait_timeout: float | None = None,
    on_event: Callable[[str, dict[str, Any]], Any] | None = None,
) -> int:
    """Run a job conductor until ``stop_event`` is set (or ``max_dispatches`` jobs were dispatched).

    Args:
        board_conf: the jobboard conf (``{"board": "sql"|"redis", "url": ..., "namespace": ...,
            "claim_expiry": ...}``; ``"name"`` names the board, default ``"celeryflow"``) or a URL.
        name: the conductor's name, unique among running conductors (None: ``conductor@host:pid``).
        concurrency: jobs in flight at once: 1 runs the blocking conductor, more the non-blocking one.
        stop_event: set it (e.g. from a SIGTERM handler) to stop: running flows are suspended
            cleanly and their jobs abandoned, so another conductor resumes them.
        app: the Celery app flows run on (default: the installed app, else the embedded one).
        persistence: the logbook URL (default: the board's database for the SQL board,
            else ``CELERYFLOW_BACKEND``).
        max_dispatches: return after that many jobs (tests).
        wait_timeout: seconds between looks at an empty board.
        on_event: ``on_event(event, details)`` for each ``job_consumed``/``job_abandoned``/
            ``job_trashed`` (details carry ``job``, ``state``, ``reason``).

    Returns:
        How many jobs were dispatched.
    """
    from celeryflow.conductors import backends as conductor_backends
    from celeryflow.install import default_app, import_worker_modules
    from celeryflow.jobs import backends as job_backends

    if isinstance(board_conf, str):
        board_conf = board_conf_from_url(board_conf)
    conf = dict(board_conf)
    board_name = str(conf.pop("name", None) or DEFAULT_BOARD_NAME)
    name = name or default_name()
    resolved = app if app is not None else default_app()
    import_worker_modules(resolved)  # the factories and atoms of CELERYFLOW_IMPORTS, as a worker does
    board = job_backends.fetch(board_name, conf, persistence=persistence)
    options: dict[str, Any] = {}
    if wait_timeout is not None:
        options["wait_timeout"] = wait_timeout
    if concurrency > 1:
        kind = "nonblocking"
        options["max_simultaneous_jobs"] = concurrency
    else:
        kind = "blocking"
    conductor = conductor_backends.fetch(kind, name, board, persistence=persistence, app=app, **options)
    if on_event is not None:
        conductor.notifier.register(conductor.notifier.ANY, on_event)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop_event.wait(0.2):
                conductor.stop()
                return

    watcher = threading.Thread(target=watch, name="job-conductor-stop", daemon=True)
    watcher.start()
    LOG.info("job conductor %s (%s, concurrency %d) on board %s", name, kind, max(1, concurrency), board)
    try:
        with board:
            return conductor.run(max_dispatches=max_dispatches)
    finally:
        done.set()
        watcher.join(5)
        LOG.info("job conductor %s stopped", name)


__all__ = ["DEFAULT_BOARD_NAME", "board_conf_from_url", "default_name", "run_job_conductor"]
