"""``python -m conductor``: the standalone conductor process.

It runs the recovery sweep (:mod:`celeryflow.sweep`) every
``CELERYFLOW_SWEEP_INTERVAL`` seconds against ``CELERYFLOW_BACKEND``,
re-dispatching through ``CELERYFLOW_BROKER_URL``. With ``--board`` it also runs
a job conductor that claims jobs from a jobboard and runs their flows. Stop it
with SIGTERM or Ctrl-C; several may run at once.

    python -m conductor                      # sweep forever
    python -m conductor --once               # one sweep, print its report (JSON), exit
    python -m conductor --board sql          # sweep + job conductor on the SQL board
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conductor",
        description="celeryflow conductor: the recovery sweep, and optionally a jobboard conductor.",
    )
    parser.add_argument("--once", action="store_true", help="run one sweep, print its report as JSON and exit")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between sweeps (default CELERYFLOW_SWEEP_INTERVAL)")
    parser.add_argument("--name", default=None, help="this conductor's name (default conductor:<host>:<pid>)")
    parser.add_argument("--no-sweep", action="store_true", help="do not sweep (job conductor only)")
    parser.add_argument("--loglevel", default=os.environ.get("CELERYFLOW_LOGLEVEL", "INFO"))
    jobs = parser.add_argument_group("job conductor (runs only when --board is given)")
    jobs.add_argument("--board", choices=("sql", "redis"), default=None, help="jobboard kind")
    jobs.add_argument("--board-url", default=None,
                      help="jobboard URL (default: the logbook for sql, the broker for redis)")
    jobs.add_argument("--namespace", default=None, help="jobboard namespace")
    jobs.add_argument("--concurrency", type=int, default=1, help="jobs run at once")
    jobs.add_argument("--claim-expiry", type=float, default=None, help="seconds a job claim lasts unless extended")
    return parser.parse_args(argv)


def board_conf(args: argparse.Namespace, app: Any) -> dict[str, Any]:
    url = args.board_url
    if url is None:
        url = app.conf.get("celeryflow_backend") if args.board == "sql" else app.conf.broker_url
    conf: dict[str, Any] = {"board": args.board, "url": url}
    if args.namespace:
        conf["namespace"] = args.namespace
    if args.claim_expiry is not None:
        conf["claim_expiry"] = args.claim_expiry
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.loglevel).upper(), logging.INFO),
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s",
    )
    log = logging.getLogger("conductor")
    from celeryflow.install import import_worker_modules
    from celeryflow.persistence.backends.base import mask_url
    from celeryflow.sweep import Sweeper
    from celeryflow_tasks.app import app

    name = args.name or f"conductor:{socket.gethostname()}:{os.getpid()}"
    try:
        # deciders of re-driven flows are evaluated here: the conductor imports what workers import
        import_worker_modules(app)
    except Exception:
        log.exception("could not import CELERYFLOW_IMPORTS; flows with deciders cannot be re-driven here")
    sweeper = Sweeper(app, name=name)
    if args.once:
        report = sweeper.sweep()
        print(json.dumps(report.as_dict()))
        return 1 if report.errors else 0

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("conductor %s: signal %d, stopping", name, signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    jobs_thread: threading.Thread | None = None
    if args.board:
        from conductor.jobs import run_job_conductor  # imported only when asked for

        conf = board_conf(args, app)
        jobs_thread = threading.Thread(
            target=run_job_conductor, args=(conf, name, args.concurrency, stop), kwargs={"app": app},
            name="job-conductor", daemon=True,
        )
        jobs_thread.start()
        log.info("conductor %s: job conductor on the %s board %s (concurrency %d)",
                 name, args.board, mask_url(str(conf["url"])), args.concurrency)

    interval = args.interval if args.interval is not None else sweeper.settings.sweep_interval
    if args.no_sweep:
        log.info("conductor %s ready (no sweep)", name)
        stop.wait()
    else:
        log.info("conductor %s ready: sweeping %s every %.3gs (heartbeat timeout %.3gs, max deliveries %d)",
                 name, sweeper.backend.url.masked, interval, sweeper.settings.heartbeat_timeout,
                 sweeper.settings.max_deliveries)
        sweeper.run(stop, interval)
    if jobs_thread is not None:
        jobs_thread.join(30)
    log.info("conductor %s stopped", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
