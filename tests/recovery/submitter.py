"""A submitting process for the recovery tests: ``python -m tests.recovery.submitter``.

Submits ``tests.recovery.atoms.<factory>`` with JSON keyword arguments, writes the
flow id to ``--id-file``, then, depending on ``--die``:

* ``after-submit``: SIGKILLs itself right after ``submit()`` returned;
* ``before-publish``: SIGKILLs itself inside the publish that follows the commit
  (the flow is RUNNING with queued atoms in the logbook, nothing is on the broker);
* ``never``: exits normally.

Configured by the ``CELERYFLOW_*`` environment (stock app).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factory", required=True)
    parser.add_argument("--kwargs", default="{}")
    parser.add_argument("--id-file", required=True)
    parser.add_argument("--die", choices=("after-submit", "before-publish", "never"), default="never")
    args = parser.parse_args()

    from celeryflow.handle import submit
    from celeryflow.runtime import dispatch
    from celeryflow_tasks.app import app
    from tests.recovery import atoms

    factory = getattr(atoms, args.factory)
    kwargs = json.loads(args.kwargs)
    if args.die == "before-publish":

        def publish(_app: Any, _comp: Any, what: Any, *_args: Any, **_kwargs: Any) -> None:
            with open(args.id_file, "w") as fh:  # committed: the flow is RUNNING, atoms queued
                fh.write(what.flow_uuid)
            os.kill(os.getpid(), signal.SIGKILL)

        dispatch.publish = publish  # type: ignore[assignment]
    handle = submit(factory, app=app, factory_kwargs=kwargs)
    with open(args.id_file, "w") as fh:
        fh.write(handle.id)
    if args.die == "after-submit":
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
