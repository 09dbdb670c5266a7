"""A job conductor process for the crash tests: ``python -m tests.jobs.conductor_proc --board URL --name N``.

Uses ``conductor.jobs.run_job_conductor`` (what ``python -m conductor`` runs), with
``tests.jobs.flows`` imported so its factories are registered. Prints one line per
job event (``EVENT job_consumed <job uuid> <state>``) and ``READY`` once running.
SIGTERM stops it cleanly. ``--embedded`` runs the atoms in this process (the embedded app);
otherwise flows go to the stock app's broker (``CELERYFLOW_BROKER_URL``) and its workers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--board", required=True, help="board URL (sqlite:///..., postgresql://..., redis://...)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--claim-expiry", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--persistence", default=None, help="logbook URL (default: the SQL board's database)")
    parser.add_argument("--max-dispatches", type=int, default=None)
    parser.add_argument("--embedded", action="store_true", help="run atoms in-process (the embedded app)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s")

    import tests.jobs.flows  # noqa: F401  (registers the factories and atoms)
    from conductor.jobs import board_conf_from_url, run_job_conductor

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def on_event(event: str, details: dict[str, Any]) -> None:
        print(f"EVENT {event} {details['job'].uuid} {details.get('state')} {details.get('reason') or ''}", flush=True)

    app = None
    if args.embedded:
        from celeryflow.runtime.embedded import embedded_app

        app = embedded_app()
    print("READY", flush=True)
    conf = board_conf_from_url(args.board, namespace=args.namespace, claim_expiry=args.claim_expiry)
    count = run_job_conductor(conf, args.name, args.concurrency, stop, app=app, persistence=args.persistence,
                              max_dispatches=args.max_dispatches, wait_timeout=0.2, on_event=on_event)
    print(f"DISPATCHED {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
